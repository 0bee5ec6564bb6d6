"""Ray as an optional dependency: the lazy import, who started the runtime, and waits that end.

- :func:`import_ray` imports Ray on first use, with a one-line fix when it is missing.
- :func:`acquire_runtime` / :func:`release_runtime`: connect to the running Ray runtime, or
  start one; a runtime started here is shut down when the last object that needed it is
  closed, and one started by the user is never shut down.
- :func:`call` / :func:`wait`: an actor call and ``ray.get`` with a timeout, whose failures say what was waited for: a
  :class:`TimeoutError` when the actor does not answer, a :class:`RuntimeError` when it died.
"""

from __future__ import annotations

import threading
from typing import Any

RAY_MISSING = 'Ray is not installed, and {what} runs on Ray: pip install "tdrl[ray]"'

_lock = threading.Lock()
_owners = 0  # live objects sharing a runtime that acquire_runtime started


def import_ray(what: str) -> Any:
    """The ``ray`` module; ``ImportError`` naming the ``ray`` extra when it is not installed."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(RAY_MISSING.format(what=what)) from err
    return ray


def acquire_runtime(init_config: dict[str, Any]) -> bool:
    """Connects to the Ray runtime of this process, or starts one with ``ray.init(**init_config)``.

    Returns whether the caller shares a runtime started here (and so must call
    :func:`release_runtime`).
    """
    global _owners
    ray = import_ray("this object")
    with _lock:
        if ray.is_initialized():
            if _owners:
                _owners += 1
                return True
            return False
        ray.init(**init_config)
        _owners = 1
        return True


def release_runtime(owned: bool) -> None:
    """Shuts Ray down when the last owner of a runtime started by :func:`acquire_runtime` lets go."""
    global _owners
    if not owned:
        return
    ray = import_ray("this object")
    with _lock:
        _owners = max(_owners - 1, 0)
        if _owners == 0 and ray.is_initialized():
            ray.shutdown()


def call(actor: Any, method: str, args: tuple[Any, ...], timeout: float | None, what: str) -> Any:
    """``actor.method.remote(*args)`` and its result: see :func:`wait`.

    Refuses before Ray is touched when no runtime runs in this process: a call on an actor
    handle would start a new runtime (or join another cluster) where that actor does not exist.
    """
    ray = import_ray("this object")
    if not ray.is_initialized():
        raise RuntimeError(
            f"{what}: Ray is not running in this process (it was shut down, or this handle was "
            "unpickled outside the cluster); the actor cannot be reached"
        )
    return wait(getattr(actor, method).remote(*args), timeout, what)


def wait(ref: Any, timeout: float | None, what: str) -> Any:
    """``ray.get(ref, timeout=timeout)``; a dead actor or a timeout raise with ``what`` in the message.

    An error raised by the actor's own code comes out as Ray raises it: an exception that is
    an instance of the original type (``ValueError``, ``KeyError``...), with the actor's traceback.
    """
    ray = import_ray("this object")
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(
            f"{what}: no answer within timeout={timeout} s; the actor may be busy or its node overloaded. "
            "Pass a larger timeout= to the constructor, or check the cluster (ray status)"
        ) from None
    except ray.exceptions.RayActorError as err:
        cause = str(err).strip().splitlines()
        detail = cause[0] if cause else type(err).__name__
        raise RuntimeError(
            f"{what}: the actor is dead ({detail}); what it held is lost. Create a new one "
            "(and restore it with loads() from a dumps() checkpoint)"
        ) from err
