"""Worker processes that answer requests over pipes: start, exchange, failures, shutdown.

:class:`~tdrl.envs.ParallelEnv` and the multi-process collectors run their workers through
a :class:`WorkerPool`; this module is the one place that knows the protocol.

The exchange protocol
---------------------

Every request carries a sequence number, and a worker answers its requests one at a time,
in order, with ``(seq, status, payload)``. The parent records a request before its bytes go
out and files each reply it reads under the request it answers, so a reply is only ever
handed to the request it belongs to. An exchange interrupted while the parent waits
(``KeyboardInterrupt``, a ``TimeoutError``: nearly all of an exchange's time) leaves the
pipes in step and the replies owed; the owner then either

- claims them later (the collectors resume an interrupted batch request: no frame lost,
  none handed out twice), or
- drains them (:meth:`WorkerPool.drain`: ``ParallelEnv`` waits, up to its timeout, for
  the replies its interrupted step was owed, before it touches the shared buffers again).

The pool refuses further use (every call raises ``RuntimeError`` saying why, and that
the owner must be closed and built again) when

- an exception escaped while a message was being written or read (a few microseconds of
  an exchange): half a message may be left in the pipe, so no later reply can be trusted;
- a worker died (its exit code is in the message), or missed its deadline twice in a row
  (a first ``TimeoutError`` leaves its reply owed, in case it was only slow);
- the owner declared it failed (:meth:`WorkerPool.fail`: a collector whose worker raised).

Cleanup: workers are daemonic children (the interpreter stops them at exit), stopped by
:meth:`WorkerPool.close` and by garbage collection; each one may start workers of its own
(a ``ParallelEnv`` inside a collector worker), and exits by itself within about a second
of its parent's death (its parent pid changes, or its pipe reaches EOF). Workers ignore
``SIGINT``: Ctrl-C is the parent's to handle.

:class:`ProcessLock` is a lock shared by processes however they were started (fork,
spawn, forkserver), which travels with pickled objects (``VecNorm``'s shared statistics).
"""

from __future__ import annotations

import math
import os
import select
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing import connection as mp_connection
from multiprocessing import current_process
from multiprocessing.connection import Connection
from multiprocessing.reduction import DupFd, ForkingPickler
from typing import Any, ClassVar, Literal

import torch
from torch import multiprocessing as mp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no fcntl, and so no ProcessLock
    fcntl = None  # type: ignore[assignment]

__all__ = ["WorkerPool", "StartMethod", "ProcessLock", "serve", "setup_worker", "report_start"]

StartMethod = Literal["fork", "spawn", "forkserver"] | None  # None: the platform's default

STARTUP_TIMEOUT = 300.0
"""Seconds a worker may take to start (importing torch under "spawn", building an env)."""

SPAWN_HINT = (
    "Workers started with 'spawn' or 'forkserver' re-import the main script: guard its entry point with "
    '`if __name__ == "__main__":`, and make create_env_fn importable or a lambda (it is sent with cloudpickle).'
)
_BROKEN = "{owner} cannot be used any more: {why}. Call {close} and build a new one."
_CLOSED = "{owner} was {closed} (its workers are stopped); build a new one."
_TORN = (
    "an exception (e.g. KeyboardInterrupt) interrupted a message to or from worker {i} half-way, so its pipe may "
    "hold part of a message and no later reply can be trusted"
)
_RAISED = "{owner} worker {i} raised while {cmd!r}:\n{tb}"
_DIED = (
    "{owner} worker {i} died while {cmd!r} (exit code {code}); it did not report an exception "
    "(killed, or crashed in native code)."
)
_TIMEOUT = (
    "{owner} worker {i} did not answer {cmd!r} within {timeout} s (it is {state}). Its reply stays owed: "
    "the next call waits for it once more. Raise {owner}(timeout=...) for slow work."
)
_HUNG = "worker {i} did not answer {cmd!r} within {timeout} s twice in a row ({state})"
_IDLE = -1  # WorkerPool._io when no message is being written or read


def _dumps(obj: Any) -> bytes:
    return bytes(ForkingPickler.dumps(obj))


def _loads(data: bytes) -> Any:
    return ForkingPickler.loads(data)


class _Poller:
    """A ``select.poll`` object watching a worker's pipe and its process sentinel."""

    def __init__(self, conn: Connection, sentinel: int) -> None:
        self.conn_fd = conn.fileno()
        self._poll = select.poll()
        for fd in (self.conn_fd, sentinel):
            self._poll.register(fd, select.POLLIN)
        self.poll = self._poll.poll


def _poller(conn: Connection, sentinel: int) -> _Poller | None:
    return _Poller(conn, sentinel) if hasattr(select, "poll") else None


def _state(proc: Any) -> str:
    """'alive', 'stopped (SIGSTOP)' or 'dead (exit code N)', for error messages."""
    if not proc.is_alive():
        return f"dead (exit code {proc.exitcode})"
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return "stopped (SIGSTOP)"
    except (OSError, IndexError):
        pass
    return "alive: hung, or slower than the timeout"


class WorkerPool:
    """``n`` worker processes, one duplex pipe each, and the bookkeeping of their exchanges.

    Args:
        owner: the owner's name, for messages (``"ParallelEnv"``).
        target: the worker's main function, called as
            ``target(idx, conn, inherited, payload, parent_pid)``; it must call
            :func:`setup_worker`, :func:`report_start`, then :func:`serve`.
        payloads: one picklable argument per worker (e.g. a cloudpickled factory).
        start_method: the multiprocessing start method (``None``: the platform's).
        timeout: seconds a worker may take to answer a request.
        close: how the owner is closed, for messages (``"close()"``, ``"shutdown()"``).

    The constructor only starts the processes; :meth:`started` waits for each worker's
    start report.
    """

    def __init__(
        self,
        owner: str,
        target: Callable[..., None],
        payloads: Sequence[Any],
        start_method: StartMethod = None,
        timeout: float = 300.0,
        close: str = "close()",
    ) -> None:
        self.owner, self.timeout, self._close_name = owner, float(timeout), close
        ctx = mp.get_context(start_method)
        self.start_method = ctx.get_start_method()
        fork = self.start_method == "fork"
        self.procs: list = []
        self.conns: list[Connection] = []
        # what close() reads: a dict, so that the finalizer sees later changes
        self._stop_state: dict[str, Any] = {"grace": 5.0, "late": set(), "torn": set()}
        self._finalizer = weakref.finalize(self, _stop, self.procs, self.conns, self._stop_state)
        self._requests: dict[int, tuple[int, str]] = {}  # seq -> (worker, cmd): sent, result not taken yet
        self._replies: dict[int, tuple[str, Any]] = {}  # seq -> (status, payload): read, not taken yet
        self._since: list[float] = []  # per worker: since when it owes a reply without giving one
        self._late: list[bool] = []  # per worker: its last wait timed out and it has not answered since
        self._unread: list[int] = []  # per worker: requests sent whose reply was not read yet
        self._seq = 0
        self._io = _IDLE  # the worker whose message is being written or read, if any
        self._broken: str | None = None
        self._closed: str | None = None
        # per worker, a poll object on its pipe and its process sentinel, made once (a step waits on it)
        self._pollers: list[Any] = []
        try:
            for i, payload in enumerate(payloads):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(
                    target=target,
                    args=(i, child_end, parent_end if fork else None, payload, os.getpid()),
                    daemon=True,
                    name=f"tdrl-{owner}-worker-{i}",
                )
                self.conns.append(parent_end)
                self._pollers.append(None)
                self._requests[-(i + 1)] = (i, "starting")  # the start report: seq -(i+1)
                self._since.append(time.monotonic())
                self._late.append(False)
                self._unread.append(1)
                proc.start()
                self.procs.append(proc)
                child_end.close()
                self._pollers[i] = _poller(parent_end, proc.sentinel)
        except BaseException:
            self.close(grace=1.0)
            raise
        self.num_workers = len(self.procs)

    # --- state ----------------------------------------------------------------------------
    @property
    def owed(self) -> bool:
        """Whether any request's result has not been taken yet."""
        return bool(self._requests)

    def check(self) -> None:
        """Raise ``RuntimeError`` if the pool is closed or cannot be trusted any more."""
        if self._io != _IDLE or self._broken is not None or self._closed is not None:
            self._raise_unusable()

    def _raise_unusable(self) -> None:
        if self._closed is not None:
            raise RuntimeError(_CLOSED.format(owner=self.owner, closed=self._closed))
        if self._io != _IDLE:  # an exception escaped while a message was half-way
            self._break(_TORN.format(i=self._io), worker=self._io)
        raise RuntimeError(_BROKEN.format(owner=self.owner, why=self._broken, close=self._close_name))

    def _break(self, why: str, worker: int | None = None) -> None:
        """Refuse every later use; ``worker``'s pipe may hold half a message (close() terminates it)."""
        if self._broken is None:
            self._broken = why
        if worker is not None:
            self._stop_state["torn"].add(worker)
        self._io = _IDLE

    def fail(self, why: str) -> None:
        """Refuse every later use, saying ``why`` (e.g. a collector whose worker raised)."""
        self._broken = self._broken or why

    # --- requests -------------------------------------------------------------------------
    def send(self, i: int, cmd: str, arg: Any = None) -> int:
        """Send ``cmd`` to worker ``i``; returns the request's sequence number."""
        self.check()
        data = _dumps((self._seq + 1, cmd, arg))  # an exception here sends nothing
        seq = self._seq = self._seq + 1
        if not self._unread[i]:
            self._since[i] = time.monotonic()
        self._io = i  # from here to the end of the write, an exception breaks the pool
        self._requests[seq] = (i, cmd)
        self._unread[i] += 1
        try:
            self.conns[i].send_bytes(data)
        except (OSError, ValueError) as err:
            self._io = _IDLE
            self._dead(i, cmd, err)
        self._io = _IDLE
        return seq

    def take(self, i: int, seq: int) -> None:
        """Forget a request whose reply was read (its result is consumed)."""
        self._requests.pop(seq, None)  # first: a reply without a request is ignored, not awaited
        self._replies.pop(seq, None)

    def call(
        self,
        workers: Sequence[int],
        cmd: str,
        arg: Any = None,
        args: Sequence[Any] | None = None,
        timeout: float | None = None,
    ) -> list:
        """Send ``cmd`` to each of ``workers`` and return their results, in order.

        ``args`` gives one argument per worker instead of ``arg`` for all. Every worker is
        waited for; if any raised, one ``RuntimeError`` holds all their tracebacks.
        """
        seqs = [self.send(i, cmd, arg if args is None else args[k]) for k, i in enumerate(workers)]
        return self.results(list(zip(workers, seqs)), timeout)

    def results(self, requests: Sequence[tuple[int, int]], timeout: float | None = None, keep: bool = False) -> list:
        """The results of ``(worker, seq)`` requests; one ``RuntimeError`` for all that raised."""
        for i, seq in requests:
            self.wait(i, seq, timeout)
        errors = []
        out: list[Any] = []
        for i, seq in requests:
            status, payload = self._replies[seq]
            if status == "error":
                errors.append(_RAISED.format(owner=self.owner, i=i, cmd=self._cmd(seq, "?"), tb=payload))
                self.take(i, seq)
                out.append(None)
                continue
            if not keep:
                self.take(i, seq)
            out.append(payload)
        if errors:
            raise RuntimeError("\n".join(errors))
        return out

    def pending(self, i: int, cmd: str) -> int | None:
        """The oldest request ``cmd`` to worker ``i`` whose result was not taken, or None."""
        for seq, (w, c) in self._requests.items():
            if w == i and c == cmd:
                return seq
        return None

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every reply still owed and drop it (the worker is then idle).

        Each worker gets ``timeout`` (default: the pool's) from now. A dropped reply that
        reports an exception is raised, once, as ``RuntimeError``.
        """
        self.check()
        if not self._requests:
            return
        now = time.monotonic()
        for i in {w for w, _ in self._requests.values()}:
            self._since[i] = now
        errors = []
        for seq, (i, cmd) in list(self._requests.items()):
            self.wait(i, seq, timeout)
            status, payload = self._replies[seq]
            self.take(i, seq)
            if status == "error":
                what = f"{cmd} (a request interrupted earlier)"
                errors.append(_RAISED.format(owner=self.owner, i=i, cmd=what, tb=payload))
        self._replies.clear()
        if errors:
            raise RuntimeError("\n".join(errors))

    # --- waiting --------------------------------------------------------------------------
    def wait(self, i: int, seq: int, timeout: float | None = None) -> None:
        """Read worker ``i``'s replies until the one for ``seq`` is in."""
        replies = self._replies
        while seq not in replies:
            self.check()
            if seq not in self._requests:
                raise RuntimeError(f"{self.owner}: internal error: no request {seq} to worker {i} is owed.")
            limit = self.timeout if timeout is None else timeout
            remaining = self._since[i] + limit - time.monotonic()
            poller = self._pollers[i]
            if poller is not None:  # (a reply and an exit may come together: the reply counts)
                ready = poller.poll(max(math.ceil(remaining * 1000), 0))
                message = any(fd == poller.conn_fd for fd, _ in ready)
            else:  # pragma: no cover - no select.poll on this platform
                objs = mp_connection.wait([self.conns[i], self.procs[i].sentinel], max(remaining, 0.0))
                ready, message = objs, self.conns[i] in objs
            if message or (ready and self.conns[i].poll(0)):
                self._receive(i)
            elif ready:  # the process ended and left no reply
                self._dead(i, self._cmd(seq, "?"), None)
            else:
                self._timed_out(i, self._cmd(seq, "?"), limit)

    def wait_any(self, requests: dict[int, int]) -> int:
        """The worker (a key of ``requests``: worker -> seq) whose reply came first.

        Replies already in are taken oldest request first, so a fast worker does not starve
        a slow one. Each worker has the pool's timeout from its request (or from its last
        timeout): the first to miss it raises ``TimeoutError`` naming it.
        """
        conns = {self.conns[i]: i for i in requests}
        sentinels = {self.procs[i].sentinel: i for i in requests}
        while True:
            self.check()
            done = [i for i, seq in requests.items() if seq in self._replies]
            if done:
                return min(done, key=requests.__getitem__)
            first = min(requests, key=self._since.__getitem__)
            remaining = self._since[first] + self.timeout - time.monotonic()
            ready = mp_connection.wait([*conns, *sentinels], max(remaining, 0.0))
            if not ready:
                self._timed_out(first, self._cmd(requests[first], "?"), self.timeout)
            for obj in ready:
                if obj in conns:
                    self._receive(conns[obj])
            for obj in ready:
                if obj in sentinels:
                    i = sentinels[obj]
                    if not self.conns[i].poll(0):
                        self._dead(i, self._cmd(requests[i], "?"), None)

    def _receive(self, i: int) -> None:
        """Read one reply of worker ``i`` and file it under its request."""
        self._io = i
        try:
            data = self.conns[i].recv_bytes()
        except (EOFError, OSError) as err:
            self._io = _IDLE
            self._dead(i, self._oldest_cmd(i), err)
        try:  # shared tensors come as handles that the worker serves: it must still be alive
            seq, status, payload = _loads(data)
        except Exception as err:
            self._io = _IDLE
            cmd = self._oldest_cmd(i)
            if not self.procs[i].is_alive():
                self._dead(i, cmd, err)
            self._break(f"worker {i}'s reply to {cmd!r} could not be read ({type(err).__name__}: {err})", worker=i)
            raise RuntimeError(f"{self.owner}: {self._broken}.") from err
        if seq not in self._requests or seq in self._replies:
            self._break(f"worker {i} answered request {seq}, which was not owed (a protocol error)", worker=i)
            self.check()
        self._replies[seq] = (status, payload)
        self._unread[i] -= 1
        self._late[i] = False
        self._stop_state["late"].discard(i)
        self._since[i] = time.monotonic()
        self._io = _IDLE

    def _timed_out(self, i: int, cmd: str, timeout: float) -> None:
        state = _state(self.procs[i])
        self._stop_state["late"].add(i)  # close() kills it rather than wait for it
        if self._late[i]:
            self._break(_HUNG.format(i=i, cmd=cmd, timeout=timeout, state=state))
            err = TimeoutError(f"{self.owner}: {self._broken}.")
            err.add_note(_BROKEN.format(owner=self.owner, why="that worker is hung", close=self._close_name))
            raise err
        self._late[i] = True
        self._since[i] = time.monotonic()  # the next wait gives it one more full timeout
        raise TimeoutError(_TIMEOUT.format(owner=self.owner, i=i, cmd=cmd, timeout=timeout, state=state))

    def _dead(self, i: int, cmd: str, err: BaseException | None) -> None:
        self.procs[i].join(0.5)
        message = _DIED.format(owner=self.owner, i=i, cmd=cmd, code=self.procs[i].exitcode)
        self._break(f"worker {i} died (exit code {self.procs[i].exitcode})")
        if self.start_method != "fork" and self._cmd_is_start(i):
            raise RuntimeError(f"{message}\n{SPAWN_HINT}") from err
        raise RuntimeError(message) from err

    def _cmd(self, seq: int, default: str) -> str:
        entry = self._requests.get(seq)
        return default if entry is None else entry[1]

    def _oldest_cmd(self, i: int) -> str:  # the request worker i is working on
        for seq, (w, cmd) in self._requests.items():
            if w == i and seq not in self._replies:
                return cmd
        return "?"

    def _cmd_is_start(self, i: int) -> bool:
        return -(i + 1) in self._requests

    def started(self, timeout: float = STARTUP_TIMEOUT) -> list:
        """Each worker's start report (what it passed to :func:`report_start`)."""
        return self.results([(i, -(i + 1)) for i in range(self.num_workers)], timeout)

    # --- shutdown -------------------------------------------------------------------------
    def close(self, grace: float | None = None, closed: str = "closed") -> None:
        """Stop every worker (idempotent; never raises): ask, wait ``grace`` s, then terminate, kill."""
        if self._closed is None:
            self._closed = closed
        if grace is not None:
            self._stop_state["grace"] = grace
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed is not None


def _stop(procs: list, conns: list, state: dict) -> None:
    """Ask every worker to close, then join, terminate and kill what is left. Never raises.

    Ctrl-C is held back meanwhile (in the main thread), so that it cannot leave a worker running.
    """
    blocked = threading.current_thread() is threading.main_thread()
    if blocked:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        deadline = time.monotonic() + state["grace"]
        for i, (proc, conn) in enumerate(zip(procs, conns)):
            if i in state["late"]:
                proc.kill()  # it did not answer in time; and SIGTERM waits while a process is stopped, SIGKILL not
            elif i in state["torn"]:
                proc.terminate()  # its pipe may hold half a message: a "close" could be misread
            elif proc.is_alive():
                try:
                    conn.send_bytes(_dumps((0, "close", None)))
                except (OSError, ValueError):
                    pass
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 0.0))
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in conns:
            try:
                conn.close()
            except OSError:
                pass
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


# --- the worker's side -------------------------------------------------------------------------


def setup_worker(inherited: Connection | None) -> None:
    """What every worker does first: close the parent's end, ignore Ctrl-C, allow children."""
    if inherited is not None:
        inherited.close()  # fork: the parent's end of our own pipe, so that EOF reaches us
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    # The parent stops this process at exit as a daemon; the flag itself would forbid this
    # worker to start processes of its own (a ParallelEnv inside a collector worker). Those
    # are its daemonic children: they stop when it stops, and notice if it is killed.
    current_process().daemon = False
    torch.set_num_threads(1)


def report_start(conn: Connection, idx: int, build: Callable[[], Any], describe: Callable[[Any], Any]) -> Any:
    """Build worker ``idx``'s object and report ``describe(obj)`` (or the traceback); None on failure."""
    seq = -(idx + 1)  # the start report's sequence number (WorkerPool.started)
    try:
        obj = build()
        conn.send((seq, "ok", describe(obj)))
        return obj
    except BaseException:
        try:
            conn.send((seq, "error", traceback.format_exc()))
        except (OSError, ValueError):
            pass
        return None


def serve(conn: Connection, parent_pid: int, handle: Callable[[str, Any], Any]) -> None:
    """Answer requests with ``handle(cmd, arg)`` until "close", EOF, or the parent's death."""
    while True:
        if not conn.poll(1.0):
            if os.getppid() != parent_pid:  # orphaned: the parent died without closing us
                return
            continue
        try:
            seq, cmd, arg = conn.recv()
        except (EOFError, OSError):
            return
        if cmd == "close":
            return
        try:
            reply = (seq, "ok", handle(cmd, arg))
        except BaseException:
            reply = (seq, "error", traceback.format_exc())
        try:
            data = _dumps(reply)
        except Exception:  # a result that does not pickle
            data = _dumps((seq, "error", traceback.format_exc()))
        try:
            conn.send_bytes(data)
        except (OSError, ValueError):  # the parent is gone
            return


# --- a lock for processes --------------------------------------------------------------------


class ProcessLock:
    """A lock shared by processes (forked, spawned or forkserver-started) and threads.

    It is an ``fcntl`` record lock on an anonymous file (deleted when created, so nothing
    is left behind even after a kill), plus a thread lock. Pickled, it travels as a
    duplicate of the file's descriptor, as torch's shared tensors do
    (``multiprocessing.reduction.DupFd``); in any process, every copy of one lock is the
    same object.

    Examples:
        >>> lock = ProcessLock()
        >>> with lock:
        ...     pass
    """

    # (device, inode, pid) -> the lock: one object per lock and process
    _by_file: ClassVar[weakref.WeakValueDictionary] = weakref.WeakValueDictionary()

    def __init__(self, fd: int | None = None) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise NotImplementedError("ProcessLock needs fcntl (POSIX); pass a multiprocessing lock instead.")
        if fd is None:
            import tempfile

            with tempfile.TemporaryFile() as file:  # anonymous: nothing to delete, even after a kill
                fd = os.dup(file.fileno())
        self._fd = fd
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()
        st = os.fstat(fd)
        ProcessLock._by_file[(st.st_dev, st.st_ino, self._pid)] = self
        self._closer = weakref.finalize(self, os.close, fd)

    def __enter__(self) -> ProcessLock:
        if self._pid != os.getpid():  # inherited through fork: a fresh thread lock
            self._thread_lock = threading.Lock()
            self._pid = os.getpid()
        self._thread_lock.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __reduce__(self) -> tuple:
        return (_rebuild_lock, (DupFd(self._fd),))

    def __deepcopy__(self, memo: dict) -> ProcessLock:
        return self

    def __copy__(self) -> ProcessLock:
        return self


def _rebuild_lock(dup: Any) -> ProcessLock:
    fd = dup.detach()
    st = os.fstat(fd)
    known = ProcessLock._by_file.get((st.st_dev, st.st_ino, os.getpid()))
    if known is not None:
        with known._thread_lock:  # closing a descriptor drops this process's record locks on the file
            os.close(fd)
        return known
    return ProcessLock(fd)
