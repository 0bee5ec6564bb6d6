"""Pausing Python's cyclic garbage collector while a batch of steps is recorded, safely across threads.

A batch keeps every step's tensors alive until it is stacked, so the collector's youngest
generation fills with objects that are not garbage: each collection scans them and promotes
them to the older generations, whose full collections then grow with every batch (tens of
milliseconds each once a training script holds a replay buffer and a model). tdrl's stepping
creates no reference cycles; those an env or a policy creates are collected once the batch is
done.

``gc.disable()`` is process-wide, so the pause is counted: with collectors (or rollouts) in
several threads, the first to enter disables the collector and the last to leave restores the
state the first one saw. A program that turned the collector off itself keeps it off.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

# reentrant: a collection that runs while this thread holds it (an allocation before gc.disable())
# may call finalizers that pause again in the same thread; a plain Lock would wait for itself
_lock = threading.RLock()
_depth = 0  # pauses in progress, all threads together
_restore = False  # whether the last pause to end turns the collector back on
_epoch = 0  # bumped in a forked child: pauses begun before the fork do not count there


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block (restored after, also on error).

    Reentrant, within a thread and across threads: the collector stays off until the last
    pause in progress ends, and is then turned back on only if it was on when the first
    began.

    Examples:
        >>> import gc
        >>> before = gc.isenabled()
        >>> with gc_paused():
        ...     with gc_paused():
        ...         inner = gc.isenabled()
        ...     still_paused = not gc.isenabled()
        >>> inner, still_paused, gc.isenabled() == before
        (False, True, True)
    """
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
        epoch = _epoch
    try:
        yield
    finally:
        with _lock:
            if epoch == _epoch:  # (a pause begun before a fork ends in the child: the child reset the count)
                _depth -= 1
                if _depth == 0 and _restore:
                    _restore = False
                    gc.enable()


def _after_fork_in_child() -> None:
    """Start a forked child with no pause in progress, and the collector on if a pause turned it off.

    The pauses of the parent's other threads never end in the child (those threads are not
    there), and a worker process started during a pause runs its own loop: without this, it
    would run with the collector off for good.
    """
    global _lock, _depth, _restore, _epoch
    _lock = threading.RLock()  # another thread may have held it at the fork
    if _depth and _restore:
        gc.enable()
    _depth, _restore, _epoch = 0, False, _epoch + 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
