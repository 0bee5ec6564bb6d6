"""Worker processes that answer requests over sockets: start, exchange, failures, shutdown.

:class:`~tdrl.envs.ParallelEnv` and the multi-process collectors run their workers through
a :class:`WorkerPool`; this module is the one place that knows the protocol.

The exchange protocol
---------------------

Each worker has a socket to its parent. A message is one frame: a header (the payload's
length and the request's sequence number) and a pickled payload. A worker answers its
requests one at a time, in order; the parent files each reply under the request it
answers, so a reply is only ever handed to the request it belongs to.

An exception in the parent (Ctrl-C, a ``TimeoutError``) can land at any instant of an
exchange, and never costs the pool its footing:

- a request is recorded before it is written, and written whole by one non-blocking send
  that the socket has room for (the parent counts the bytes its workers have not answered
  yet), so it went out whole or not at all: if an exception leaves that unknown, the next
  use sends a ``sync`` request and reads up to its reply, which settles it;
- a reply is peeked before it is consumed, and consumed by one copy of bytes already
  there; if an exception lands meanwhile, the next use tells from the sequence number
  whether the frame was consumed, and files it from the copy it kept;
- the replies an interrupted exchange was owed stay owed. Their owner either claims them
  later (the collectors resume an interrupted batch request: no frame lost, none handed
  out twice) or drains them (:meth:`WorkerPool.drain`: ``ParallelEnv`` waits, up to its
  timeout, for what its interrupted call was owed before it touches its shared buffers).

Requests sent every step whose data already lives in shared memory (``ParallelEnv``'s
steps) may go through a :class:`Lane` instead: shared-memory counters and one eventfd
wake-up, nothing pickled (see :mod:`tdrl._workers.lane`).

A request that settles as never sent gets the result :data:`VOID`; its owner asks again.
Replies hold their tensors by value (requests may hold shared-memory handles: the parent
serves those itself), so reading one needs nothing from the worker, which may since have
stopped or died.

The pool refuses further use (every call raises ``RuntimeError`` saying why, and that its
owner must be closed and built again) when a worker died (its exit code is in the
message), missed its deadline twice in a row (a first ``TimeoutError`` leaves its reply
owed, in case it was only slow), when its owner declared it failed (:meth:`WorkerPool.fail`:
a collector whose worker raised), or when an exception cut a message that did not fit the
socket's buffer (a message of hundreds of kilobytes; none of tdrl's messages is).

Cleanup: workers are daemonic children (the interpreter stops them at exit), stopped by
:meth:`WorkerPool.close` and by garbage collection; each one may start workers of its own
(a ``ParallelEnv`` inside a collector worker), and exits by itself within about a second
of its parent's death (its parent pid changes, or its socket reaches EOF). Workers ignore
``SIGINT``: Ctrl-C is the parent's to handle.

:class:`ProcessLock` is a lock shared by processes however they were started (fork,
spawn, forkserver), which travels with pickled objects (``VecNorm``'s shared statistics).
"""

from __future__ import annotations

from tdrl._workers.lane import LANE_AVAILABLE, Lane, WorkerLane
from tdrl._workers.lock import ProcessLock
from tdrl._workers.pool import SPAWN_HINT, STARTUP_TIMEOUT, VOID, StartMethod, WorkerPool
from tdrl._workers.worker import report_start, serve, setup_worker

__all__ = [
    "WorkerPool",
    "VOID",
    "StartMethod",
    "ProcessLock",
    "Lane",
    "WorkerLane",
    "LANE_AVAILABLE",
    "serve",
    "setup_worker",
    "report_start",
    "STARTUP_TIMEOUT",
    "SPAWN_HINT",
]
