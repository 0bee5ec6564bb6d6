"""A light lane for a pool's per-step requests: shared-memory counters and eventfd wake-ups.

The socket protocol (:mod:`tdrl._workers.pool`) pickles, frames and files every message:
right for rare requests, heavy for the one a ``ParallelEnv`` sends every step, whose data
already lives in shared memory. A :class:`Lane` carries such requests instead:

- each worker has a row of a shared ``int64`` tensor: ``[request, reply]``. A request word
  is ``seq << 4 | command``, a reply word ``seq << 4 | outcome`` (``OK``, ``TRUE``,
  ``ERROR``): one aligned 64-bit store each, so a reader never sees half of one;
- the parent writes the request words, then wakes every worker with one write to one
  eventfd, which each worker watches edge-triggered (``epoll``): one system call per step
  however many workers, and no token that one worker could take from another;
- each worker writes its reply word, then writes to the parent's eventfd; the parent
  sleeps in ``poll`` on that eventfd and on the workers' process sentinels. On x86 (whose
  stores are seen in order) a worker that sees another worker's request still open leaves
  the ringing to the last one: the parent wakes once per round, not once per worker (each
  wake-up costs both sides a context switch and, across cores, an interrupt). Two workers
  that finish at the same instant may each miss the other's reply and neither ring; the
  parent's sleep is therefore cut into slices of :data:`RECHECK_S`, after each of which it
  reads the words again;
- before sleeping, each side checks the words for :data:`SPIN_S` (x86), yielding its core
  between checks: while steps follow each other, neither side sleeps, and the rings find
  no one asleep to wake.

Nothing is pickled per step. Every wait has a deadline (the pool's timeout: a first miss
raises ``TimeoutError`` and leaves the reply owed, a second breaks the pool, as for socket
requests) and notices a worker that died. A worker that raised answers ``ERROR`` and keeps
its traceback, which the parent fetches over the socket (``"lane_error"``). The sequence
numbers make an interrupted wait harmless: what is still owed is ``sent > replied``, and
the next use waits for it (:meth:`Lane.drain`) before touching the shared buffers.

Linux only (eventfd, epoll): elsewhere :data:`LANE_AVAILABLE` is ``False`` and the owner
keeps the socket protocol.
"""

from __future__ import annotations

import math
import os
import platform
import select
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.reduction import DupFd
from typing import Any

import torch

LANE_AVAILABLE = hasattr(os, "eventfd") and hasattr(select, "epoll")

SPIN_S = float(os.environ.get("TDRL_LANE_SPIN_US", "500")) * 1e-6
"""Seconds a side checks the shared words before it sleeps (x86 only): the parent for the
replies, a worker for its next request. Between two checks it yields its core
(``sched_yield``), so a process that has work on the same core runs instead. A request or
reply seen while checking costs no wake-up: no system call, no interrupt across cores,
which on a virtual machine are the largest part of a round trip. Default 500 us, about
what the collector's own work between two steps takes; ``TDRL_LANE_SPIN_US`` sets it
(0: sleep at once). Measured with ``benchmarks/bench_parallel.py`` on 2 cores: without
the yield, checking took the core that the awaited process needed and made steps slower;
with it, ``ParallelEnv(2)`` with a policy in the loop went from ~1.2x to ~1.6x ``SerialEnv(2)``."""

# Spinning reads a word and then the data written before it: safe where stores are seen in order (x86's
# TSO); elsewhere only the wake-up's system call orders them, so the lane never spins there.
_SPIN_OK = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_LAST_RINGS = _SPIN_OK and os.environ.get("TDRL_LANE_EVERY_RING", "") != "1"  # set to 1: every worker rings

RECHECK_S = 0.002
"""Where workers leave the ringing to the last one (x86): the longest the parent sleeps before it
reads the reply words again (bounds the delay when two workers that finish together both miss
the other's reply and neither rings)."""

_RECHECK_MS = max(1, round(RECHECK_S * 1000))

OK, TRUE, ERROR = 0, 1, 2  # outcomes: the handler returned something other than True, True, or raised
_BITS = 4


class EventFd:
    """An eventfd that travels with pickled requests (a duplicate of its descriptor, as a lock's does)."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if fd is None else fd
        self._closer = weakref.finalize(self, os.close, self.fd)

    def ring(self) -> None:
        os.eventfd_write(self.fd, 1)

    def clear(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def __reduce__(self) -> tuple:
        return (_rebuild_eventfd, (DupFd(self.fd),))


def _rebuild_eventfd(dup: Any) -> EventFd:
    return EventFd(dup.detach())


class Lane:
    """The parent's side of a lane to ``num_workers`` workers, for the commands ``commands``.

    Args:
        num_workers: how many workers (one row each).
        commands: the command names the lane carries (at most 16), in a fixed order.
        spin: seconds each side checks the shared words before it sleeps (the parent for the
            replies, a worker for its next request). Default :data:`SPIN_S`.
        last_rings: whether only the last worker of a round rings the parent (see
            :data:`RECHECK_S`). Default: on x86, unless ``TDRL_LANE_EVERY_RING=1``; never elsewhere.

    Examples:
        >>> lane = Lane(2, ("step", "step_reset"))
        >>> lane.send([1], "step")  # worker 1's word now asks for a step; no worker answers here
        >>> lane.owed()
        [1]
        >>> lane.restart()
        >>> lane.owed()
        []
    """

    def __init__(
        self, num_workers: int, commands: Sequence[str], spin: float | None = None, last_rings: bool | None = None
    ) -> None:
        if len(commands) > 1 << _BITS:
            raise ValueError(f"Lane: at most {1 << _BITS} commands, got {len(commands)}.")
        self.commands = tuple(commands)
        self.spin = (SPIN_S if spin is None else float(spin)) if _SPIN_OK else 0.0
        self.last_rings = (_LAST_RINGS if last_rings is None else bool(last_rings)) and _SPIN_OK
        self.ctl = torch.zeros((num_workers, 2), dtype=torch.int64).share_memory_()
        self._words = self.ctl.numpy()  # a view: reading a word costs no tensor op
        self.bell, self.answer = EventFd(), EventFd()
        self.last = [""] * num_workers  # per worker: the command of its last request
        self._poller: tuple[Any, Any, dict[int, int]] | None = None  # (pool, poll object, sentinel -> worker)

    def handles(self, i: int) -> tuple:
        """What worker ``i``'s :class:`WorkerLane` attaches: its row, the bell, the answer eventfd, the commands."""
        return self.ctl, i, self.bell, self.answer, self.commands, self.spin, self.last_rings

    def restart(self) -> None:
        """Forget every request (new workers, whose rows start at zero)."""
        self.ctl.zero_()
        self.answer.clear()

    def owed(self) -> list[int]:
        """The workers whose last request has no reply yet."""
        words = self._words
        return [i for i in range(len(words)) if int(words[i, 1]) >> _BITS < int(words[i, 0]) >> _BITS]

    def send(self, workers: Sequence[int], cmd: str) -> None:
        """Ask each of ``workers`` to run ``cmd`` (one wake-up for all)."""
        code = self.commands.index(cmd)
        words = self._words
        for i in workers:
            self.last[i] = cmd
            # the shared word is the only record of what was sent: an interrupt leaves no other to disagree
            words[i, 0] = ((int(words[i, 0]) >> _BITS) + 1) << _BITS | code
        self.bell.ring()

    def wait(self, pool: Any, workers: Sequence[int], cmd: str, timeout: float | None = None) -> list[int]:
        """The outcomes of ``workers``' last requests, once all are in.

        Raises ``TimeoutError`` (the replies stay owed) when a worker misses ``timeout``
        (default: the pool's), ``RuntimeError`` when one died or the pool is broken, and
        ``RuntimeError`` with the tracebacks when any raised.
        """
        limit = pool.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        words = self._words
        sent = {i: int(words[i, 0]) >> _BITS for i in workers}
        poll, sentinels = self._poll_for(pool)
        answer = self.answer.fd
        if self.spin > 0:
            until = time.perf_counter() + self.spin
            while time.perf_counter() < until and any(int(words[i, 1]) >> _BITS < sent[i] for i in workers):
                os.sched_yield()
        while True:
            pending = [i for i in workers if int(words[i, 1]) >> _BITS < sent[i]]
            if not pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pool.timed_out(pending[0], cmd, limit)
            ms = max(math.ceil(remaining * 1000), 0)
            if self.last_rings:
                ms = min(ms, _RECHECK_MS)  # a round whose last two replies crossed rings no one
            for fd, _ in poll(ms):
                if fd == answer:
                    self.answer.clear()
                elif sentinels[fd] in pending and int(words[sentinels[fd], 1]) >> _BITS < sent[sentinels[fd]]:
                    pool.died(sentinels[fd], cmd)
        outcomes = []
        for i in workers:
            pool.answered(i)
            outcomes.append(int(words[i, 1]) & ((1 << _BITS) - 1))
        failed = [i for i, out in zip(workers, outcomes) if out == ERROR]
        if failed:
            tracebacks = pool.call(failed, "lane_error")
            raise RuntimeError(
                "\n".join(f"{pool.owner} worker {i} raised while {cmd!r}:\n{tb}" for i, tb in zip(failed, tracebacks))
            )
        return outcomes

    def drain(self, pool: Any) -> None:
        """Wait for what an interrupted call was owed (each worker gets the pool's timeout from now)."""
        owed = self.owed()
        if owed:
            self.bell.ring()  # the interrupt may have come before the bell rang (a spare ring wakes no one twice)
            self.wait(pool, owed, self.last[owed[0]])

    def _poll_for(self, pool: Any) -> tuple[Callable, dict[int, int]]:
        if self._poller is None or self._poller[0] is not pool:
            poller = select.poll()
            poller.register(self.answer.fd, select.POLLIN)
            sentinels = {}
            for i, proc in enumerate(pool.procs):
                poller.register(proc.sentinel, select.POLLIN)
                sentinels[proc.sentinel] = i
            self._poller = (pool, poller, sentinels)
        return self._poller[1].poll, self._poller[2]


class WorkerLane:
    """A worker's side of a lane: attached by its owner's handler, served by :func:`~tdrl._workers.serve`."""

    def __init__(self) -> None:
        self.fd: int | None = None  # the bell's descriptor, once attached
        self.error = ""
        self._done = 0

    def attach(self, handles: tuple) -> None:
        ctl, i, bell, answer, commands, self._spin, last_rings = handles
        self._keep = (ctl, bell, answer)  # the descriptors live as long as these objects
        self._row = ctl[i].numpy()
        words = ctl.numpy()
        # the other workers' rows: the last of a round to answer rings the parent (see RECHECK_S)
        self._others = [words[j] for j in range(len(words)) if j != i] if last_rings else []
        self._answer, self._commands = answer, commands
        self._done = int(self._row[1]) >> _BITS
        self.fd = bell.fd

    def run(self, handle: Callable[[str, Any], Any]) -> None:
        """Answer the request waiting in this worker's row, if a new one is there."""
        row = self._row
        word = int(row[0])
        seq = word >> _BITS
        if seq <= self._done:
            return
        while True:
            seq = self._answer_one(handle, word)
            until = time.perf_counter() + self._spin
            while time.perf_counter() < until and int(row[0]) >> _BITS <= seq:
                os.sched_yield()
            word = int(row[0])
            if word >> _BITS <= seq:
                return

    def _answer_one(self, handle: Callable[[str, Any], Any], word: int) -> int:
        row, seq = self._row, word >> _BITS
        try:
            outcome = TRUE if handle(self._commands[word & ((1 << _BITS) - 1)], None) is True else OK
        except BaseException:
            self.error, outcome = traceback.format_exc(), ERROR
        self._done = seq
        row[1] = seq << _BITS | outcome
        for other in self._others:
            if int(other[1]) >> _BITS < int(other[0]) >> _BITS:  # still working: it will ring
                return seq
        self._answer.ring()
        return seq
