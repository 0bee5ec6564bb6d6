"""The parent's side: :class:`WorkerPool` starts the workers, exchanges requests, and stops them."""

from __future__ import annotations

import faulthandler
import math
import os
import pickle
import select
import signal
import socket
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from multiprocessing import connection as mp_connection
from typing import Any, Literal

from torch import multiprocessing as mp

from tdrl._workers.frames import _FRAME_COST, _HEADER, _PEEK, _frame, _send_frame

StartMethod = Literal["fork", "spawn", "forkserver"] | None  # None: the platform's default

STARTUP_TIMEOUT = 300.0
"""Seconds a worker may take to start (importing torch under "spawn", building an env)."""

SPAWN_HINT = (
    "Workers started with 'spawn' or 'forkserver' re-import the main script: guard its entry point with "
    '`if __name__ == "__main__":`, and make create_env_fn importable or a lambda (it is sent with cloudpickle).'
)


class _Void:
    def __repr__(self) -> str:
        return "VOID"


VOID: Any = _Void()
"""The result of a request whose reply was lost to an interrupt, or that was never sent."""

_BROKEN = "{owner} cannot be used any more: {why}. Call {close}."
_CLOSED = "{owner} was {closed} (its workers are stopped); {after}."
_TORN = (
    "an exception (e.g. KeyboardInterrupt) cut a message to worker {i} half-way (one too large to be written at "
    "once), so its socket may hold part of a message and no later reply can be trusted"
)
_RAISED = "{owner} worker {i} raised while {cmd!r}:\n{tb}"
_DIED = (
    "{owner} worker {i} died while {cmd!r} (exit code {code}); it did not report an exception "
    "(killed, or crashed in native code)."
)
_CRASHED = "Where it crashed (Python's faulthandler in the worker):\n{report}"
_FORK_THREADS = (
    "It was forked from a process running {threads} threads: a fork copies locks that other threads held "
    "and the child can crash or hang on them (Ray, for one, leaves native threads after ray.shutdown()). "
    "Create the workers before starting such threads, or pass mp_start_method='spawn' or 'forkserver'."
)

_crash_file: Any = None  # the worker's open crash report (faulthandler writes to its descriptor)


def _run_worker(target: Callable[..., None], crash_path: str, *args: Any) -> None:
    """Every worker's entry point: native crashes go to ``crash_path`` (read by the parent), then ``target``."""
    global _crash_file
    try:
        _crash_file = open(crash_path, "w")  # noqa: SIM115  # open for the life of the process
        faulthandler.enable(file=_crash_file, all_threads=True)
    except OSError:  # no report: the worker still runs
        pass
    target(*args)


def _native_threads() -> int:
    """How many threads this process runs (Python's and native ones); 1 where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


_TIMEOUT = (
    "{owner} worker {i} did not answer {cmd!r} within {timeout} s (it is {state}). Its reply stays owed: "
    "the next call waits for it once more. Raise {owner}(timeout=...) for slow work."
)
_HUNG = "worker {i} did not answer {cmd!r} within {timeout} s twice in a row ({state})"


def _state(proc: Any) -> str:
    """'stopped (SIGSTOP)', 'dead (exit code N)' or 'alive: ...', for error messages."""
    if not proc.is_alive():
        return f"dead (exit code {proc.exitcode})"
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return "stopped (SIGSTOP)"
    except (OSError, IndexError):
        pass
    return "alive: hung, or slower than the timeout"


class _Poller:
    """A ``select.poll`` object, made once, watching a worker's socket and its process sentinel."""

    def __init__(self, sock_fd: int, sentinel: int) -> None:
        self.sock_fd = sock_fd
        self._poll = select.poll()
        for fd in (sock_fd, sentinel):
            self._poll.register(fd, select.POLLIN)
        self.poll = self._poll.poll


class WorkerPool:
    """``n`` worker processes, one socket each, and the bookkeeping of their exchanges.

    Args:
        owner: the owner's name, for messages (``"ParallelEnv"``).
        target: the worker's main function, called as
            ``target(idx, sock, inherited, payload, parent_pid)``; it must call
            :func:`setup_worker`, :func:`report_start`, then :func:`serve`.
        payloads: one picklable argument per worker (e.g. a cloudpickled factory).
        start_method: the multiprocessing start method (``None``: the platform's).
        timeout: seconds a worker may take to answer a request.
        close: how the owner is closed, for messages (``"close()"``, ``"shutdown()"``).
        after: what to do once closed, for messages (default: build a new one).

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
        after: str = "build a new one",
    ) -> None:
        self.owner, self.timeout = owner, float(timeout)
        self._close_name, self._after = f"{close} and {after}", after
        ctx = mp.get_context(start_method)
        self.start_method = ctx.get_start_method()
        fork = self.start_method == "fork"
        self.procs: list = []
        self.socks: list[socket.socket] = []
        # what close() reads: a dict, so that the finalizer sees later changes
        self._stop_state: dict[str, Any] = {"grace": 5.0, "late": set(), "torn": set()}
        self._crash_paths: list[str] = []  # per worker: where its faulthandler writes (removed by close())
        self._threads_at_start = _native_threads() if fork else 1
        self._finalizer = weakref.finalize(self, _stop, self.procs, self.socks, self._stop_state, self._crash_paths)
        self._requests: dict[int, tuple[int, str, int]] = {}  # seq -> (worker, cmd, frame size): result not taken
        self._replies: dict[int, tuple[str, Any]] = {}  # seq -> (status, payload): read, result not taken yet
        self._since: list[float] = []  # per worker: since when it owes a reply without giving one
        self._late: list[bool] = []  # per worker: its last wait timed out and it has not answered since
        self._unread: list[dict[int, int]] = []  # per worker: seq -> frame size, of requests not answered yet
        self._pollers: list[_Poller] = []
        self._seq = 0
        # what an exception may leave half-done (see the module's docstring)
        self._sending: tuple[int, int] | None = None  # (worker, seq): a request that may or may not be out
        self._receiving: tuple[int, int, bytes] | None = None  # (worker, seq, payload): a frame being consumed
        # worker -> (frame length, bytes so far) of a reply larger than a socket's buffer, read in pieces
        self._partial: dict[int, tuple[int, bytearray]] = {}
        self._unsure: dict[int, int] = {}  # seq -> worker: requests that may not have gone out (a sync follows)
        self._torn = -1  # a worker whose socket may hold half a message
        self._broken: str | None = None
        self._closed: str | None = None
        try:
            for i, payload in enumerate(payloads):
                parent_end, child_end = socket.socketpair()
                fd, crash_path = tempfile.mkstemp(prefix=f"tdrl-{owner}-{i}-", suffix=".crash")
                os.close(fd)
                self._crash_paths.append(crash_path)
                proc = ctx.Process(
                    target=_run_worker,
                    args=(target, crash_path, i, child_end, parent_end if fork else None, payload, os.getpid()),
                    daemon=True,
                    name=f"tdrl-{owner}-worker-{i}",
                )
                self.socks.append(parent_end)
                self._requests[-(i + 1)] = (i, "starting", 0)  # the start report: seq -(i+1)
                self._since.append(time.monotonic())
                self._late.append(False)
                self._unread.append({-(i + 1): 0})
                proc.start()
                self.procs.append(proc)
                child_end.close()
                self._pollers.append(_Poller(parent_end.fileno(), proc.sentinel))
            # room for requests in flight, which a single non-blocking send must always find
            self._room = min(s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) for s in self.socks) // 2
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
        if self._broken is not None or self._closed is not None or self._torn >= 0:
            if self._closed is not None:
                raise RuntimeError(_CLOSED.format(owner=self.owner, closed=self._closed, after=self._after))
            if self._broken is None:  # an exception cut a large message
                self._break(_TORN.format(i=self._torn), worker=self._torn)
            raise RuntimeError(_BROKEN.format(owner=self.owner, why=self._broken, close=self._close_name))

    def _break(self, why: str, worker: int | None = None) -> None:
        """Refuse every later use; ``worker``'s socket may hold half a message (close() terminates it)."""
        if self._broken is None:
            self._broken = why
        if worker is not None:
            self._stop_state["torn"].add(worker)

    def fail(self, why: str) -> None:
        """Refuse every later use, saying ``why`` (e.g. a collector whose worker raised)."""
        self._broken = self._broken or why

    def _recover(self) -> None:
        """Settle what an exception left half-done: a frame being consumed, a request maybe sent."""
        self.check()
        if self._receiving is not None:
            i, seq, data = self._receiving
            head = self._peek(i, _HEADER.size)
            if not head or len(head) < _HEADER.size or _HEADER.unpack_from(head)[1] != seq:  # consumed: file our copy
                self._file(i, seq, data, again=True)
            self._receiving = None
        if self._sending is not None:
            i, seq = self._sending
            self._unsure[seq] = i
            self._sending = None
            self.send(i, "sync")  # its reply comes after seq's, if seq went out

    # --- requests -------------------------------------------------------------------------
    def send(self, i: int, cmd: str, arg: Any = None) -> int:
        """Send ``cmd`` to worker ``i``; returns the request's sequence number."""
        if self._sending is not None or self._receiving is not None:
            self._recover()
        self.check()
        seq = self._seq + 1
        frame, fds = _frame(seq, (cmd, arg))  # an exception here sends nothing
        self._seq = seq
        unread = self._unread[i]
        if not unread:
            self._since[i] = time.monotonic()
        # what the socket may still hold for this worker (what it has not answered), kernel overhead included
        in_flight = sum(2 * size + _FRAME_COST for size in unread.values())
        sock = self.socks[i]
        if in_flight + 2 * len(frame) + _FRAME_COST <= self._room:
            self._sending = (i, seq)  # an exception from here on leaves it whole or unsent: _recover settles it
            self._requests[seq] = (i, cmd, len(frame))
            unread[seq] = len(frame)
            try:
                sent = _send_frame(sock, frame, fds, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as err:
                self._sending = None
                self._dead(i, cmd, err)
            if sent == len(frame):
                self._sending = None
                return seq
            self._torn = i  # (the socket had no room after all: finish it the slow way)
            self._sending = None
            self._write_rest(i, cmd, frame[sent:], fds if sent == 0 else [])
            return seq
        self._torn = i  # a large message: an exception before its end would cut it
        self._requests[seq] = (i, cmd, len(frame))
        unread[seq] = len(frame)
        self._write_rest(i, cmd, frame, fds)
        return seq

    def _write_rest(self, i: int, cmd: str, data: bytes, fds: list[int]) -> None:
        try:
            sent = _send_frame(self.socks[i], data, fds) if fds else 0
            self.socks[i].sendall(data[sent:])
        except OSError as err:
            self._torn = -1
            self._dead(i, cmd, err)
        self._torn = -1

    def take(self, i: int, seq: int) -> None:
        """Forget a request whose reply was read (its result is consumed)."""
        self._requests.pop(seq, None)  # first: a reply without a request is ignored, not awaited
        self._replies.pop(seq, None)
        self._unread[i].pop(seq, None)
        self._unsure.pop(seq, None)

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
        """The results (or :data:`VOID`) of ``(worker, seq)`` requests; one ``RuntimeError`` for all that raised.

        With ``keep=True`` the replies stay filed until :meth:`take`, so that an exception
        before the caller is done with them loses nothing.
        """
        for i, seq in requests:
            self.wait(i, seq, timeout)
        errors = []
        out: list[Any] = []
        for i, seq in requests:
            status, payload = self._replies[seq]
            if status == "error":
                errors.append(_RAISED.format(owner=self.owner, i=i, cmd=self._cmd(seq), tb=payload))
                self.take(i, seq)
                out.append(None)
                continue
            if not keep:
                self.take(i, seq)
            out.append(VOID if status == "void" else payload)
        if errors:
            raise RuntimeError("\n".join(errors))
        return out

    def pending(self, i: int, cmd: str) -> int | None:
        """The oldest request ``cmd`` to worker ``i`` whose result was not taken, or None."""
        for seq, (w, c, _) in self._requests.items():
            if w == i and c == cmd:
                return seq
        return None

    def drain(self, timeout: float | None = None) -> None:
        """Wait for every reply still owed and drop it (the workers are then idle).

        Each worker gets ``timeout`` (default: the pool's) from now. A dropped reply that
        reports an exception is raised, once, as ``RuntimeError``.
        """
        if self._sending is not None or self._receiving is not None:
            self._recover()
        self.check()
        if not self._requests:
            return
        now = time.monotonic()
        for i in {w for w, _, _ in self._requests.values()}:
            self._since[i] = now
        errors = []
        for seq, (i, cmd, _) in list(self._requests.items()):
            if seq not in self._requests:  # a sync, taken when its reply came
                continue
            self.wait(i, seq, timeout)
            status, payload = self._replies.get(seq, ("void", None))
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
            if self._sending is not None or self._receiving is not None:
                self._recover()
                continue
            self.check()
            if seq not in self._requests:  # a sync: taken as soon as its reply came
                return
            limit = self.timeout if timeout is None else timeout
            remaining = self._since[i] + limit - time.monotonic()
            poller = self._pollers[i]
            ready = poller.poll(max(math.ceil(remaining * 1000), 0))
            if any(fd == poller.sock_fd for fd, _ in ready) or (ready and self._peek(i, 1)):
                self._receive(i)  # (a reply and an exit may come together: the reply counts)
            elif ready:  # the process ended and left no reply
                self._dead(i, self._cmd(seq), None)
            else:
                self._timed_out(i, self._cmd(seq), limit)

    def poll(self, i: int, seq: int, timeout: float | None = 0.0) -> bool:
        """Whether worker ``i``'s reply to ``seq`` is in, reading what it sent for up to ``timeout`` s.

        Unlike :meth:`wait`, running out of time is no failure: it returns ``False`` and the
        reply stays owed (``timeout=None`` waits as long as the worker lives). A worker that
        died raises ``RuntimeError``, as in :meth:`wait`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while seq not in self._replies:
            if self._sending is not None or self._receiving is not None:
                self._recover()
                continue
            self.check()
            if seq not in self._requests:
                return False
            remaining = 1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
            poller = self._pollers[i]
            ready = poller.poll(math.ceil(remaining * 1000))
            if any(fd == poller.sock_fd for fd, _ in ready) or (ready and self._peek(i, 1)):
                self._receive(i)
            elif ready:
                self._dead(i, self._cmd(seq), None)
            elif deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def wait_any(self, requests: dict[int, int]) -> int:
        """The worker (a key of ``requests``: worker -> seq) whose reply came first.

        Replies already in are taken oldest request first, so a fast worker does not starve
        a slow one. Each worker has the pool's timeout from its request (or from its last
        timeout): the first to miss it raises ``TimeoutError`` naming it.
        """
        socks = {self.socks[i].fileno(): i for i in requests}
        sentinels = {self.procs[i].sentinel: i for i in requests}
        while True:
            if self._sending is not None or self._receiving is not None:
                self._recover()
            self.check()
            done = [i for i, seq in requests.items() if seq in self._replies]
            if done:
                return min(done, key=requests.__getitem__)
            first = min(requests, key=self._since.__getitem__)
            remaining = self._since[first] + self.timeout - time.monotonic()
            ready = mp_connection.wait([*socks, *sentinels], max(remaining, 0.0))
            if not ready:
                self._timed_out(first, self._cmd(requests[first]), self.timeout)
            for fd in ready:
                if fd in socks:
                    self._receive(socks[fd])
            for fd in ready:
                if fd in sentinels and not self._peek(sentinels[fd], 1):
                    i = sentinels[fd]
                    self._dead(i, self._cmd(requests[i]), None)

    def _peek(self, i: int, size: int) -> bytes | None:
        """Up to ``size`` bytes waiting in worker ``i``'s socket, left there; None: none yet; b"": EOF."""
        try:
            return self.socks[i].recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _receive(self, i: int) -> None:
        """Read one reply of worker ``i`` if a whole one is there, and file it under its request."""
        if i in self._partial:
            self._receive_piece(i)
            return
        head = self._peek(i, _PEEK)
        if head is None:
            return
        if not head:
            self._dead(i, self._oldest_cmd(i), None)
        total = _HEADER.size + _HEADER.unpack_from(head)[0] if len(head) >= _HEADER.size else _PEEK
        if len(head) >= _HEADER.size and total > self._room:
            # more than the socket can hold: the worker waits for us to read, so the whole frame
            # never shows at once; take it in pieces, kept here between calls
            self._partial[i] = (total, bytearray())
            self._receive_piece(i)
            return
        if len(head) < total and total > _PEEK:
            head = self._peek(i, total) or b""
        if len(head) < total:
            time.sleep(0.0002)  # the rest is on its way
            return
        seq = _HEADER.unpack_from(head)[1]
        data = head[_HEADER.size : total]
        self._receiving = (i, seq, data)  # an exception from here on: _recover files our copy
        self.socks[i].recv(total, socket.MSG_WAITALL)  # the bytes are there: one copy, which nothing cuts
        self._file(i, seq, data)
        self._receiving = None

    def _receive_piece(self, i: int) -> None:
        """Read what has come of worker ``i``'s large reply; file the reply once it is whole."""
        total, buf = self._partial[i]
        try:
            piece = self.socks[i].recv(total - len(buf), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            piece = b""
        if not piece:
            del self._partial[i]
            self._dead(i, self._oldest_cmd(i), None)
        buf += piece
        if len(buf) < total:
            return
        del self._partial[i]
        seq = _HEADER.unpack_from(buf)[1]
        self._file(i, seq, bytes(buf[_HEADER.size :]))

    def _file(self, i: int, seq: int, data: bytes, again: bool = False) -> None:
        """File worker ``i``'s reply to ``seq`` (``again``: our copy, after an interrupt; it may be filed)."""
        self._unread[i].pop(seq, None)
        entry = self._requests.get(seq)
        if entry is None or seq in self._replies:
            if again:
                return
            self._break(f"worker {i} answered request {seq}, which was not owed (a protocol error)", worker=i)
            raise RuntimeError(_BROKEN.format(owner=self.owner, why=self._broken, close=self._close_name))
        try:  # a reply holds its tensors by value (see _frame): reading it twice is safe
            status, payload = pickle.loads(data)
        except Exception as err:
            self._receiving = None
            self._break(f"worker {i}'s reply to {self._cmd(seq)!r} could not be read ({err!r})", worker=i)
            raise RuntimeError(_BROKEN.format(owner=self.owner, why=self._broken, close=self._close_name)) from err
        self.answered(i)
        if entry[1] != "sync":
            self._replies[seq] = (status, payload)
            return
        # a sync: every earlier request to this worker is settled; those with no reply never went out
        for unsure, w in list(self._unsure.items()):
            if w == i and unsure < seq:
                self._unread[i].pop(unsure, None)
                if unsure in self._requests and unsure not in self._replies:
                    self._replies[unsure] = ("void", None)
                del self._unsure[unsure]
        self._requests.pop(seq, None)  # last: an interrupt before this files the sync again

    def answered(self, i: int) -> None:
        """Worker ``i`` answered (over its socket or a :class:`~tdrl._workers.lane.Lane`): it is not late."""
        self._late[i] = False
        self._stop_state["late"].discard(i)
        self._since[i] = time.monotonic()

    def timed_out(self, i: int, cmd: str, timeout: float) -> None:
        """Raise ``TimeoutError`` for worker ``i``, as a missed reply does (twice in a row breaks the pool)."""
        self._timed_out(i, cmd, timeout)

    def died(self, i: int, cmd: str) -> None:
        """Raise ``RuntimeError`` for worker ``i``, whose process ended while it owed ``cmd`` (the pool breaks)."""
        self._dead(i, cmd, None)

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
        code = self.procs[i].exitcode
        message = _DIED.format(owner=self.owner, i=i, cmd=cmd, code=code)
        report = self._crash_report(i)
        if report:
            message = f"{message}\n{_CRASHED.format(report=report)}"
        if code is not None and code < 0 and self._threads_at_start > 1 and -(i + 1) in self._requests:
            message = f"{message}\n{_FORK_THREADS.format(threads=self._threads_at_start)}"
        self._break(f"worker {i} died (exit code {code})")
        if self.start_method != "fork" and -(i + 1) in self._requests:  # it died starting
            raise RuntimeError(f"{message}\n{SPAWN_HINT}") from err
        raise RuntimeError(message) from err

    def _crash_report(self, i: int, limit: int = 6000) -> str:
        """What worker ``i``'s faulthandler wrote, or ``""``: the error and the stacks (its first
        ``limit`` characters), without the list of loaded extension modules that follows them."""
        try:
            with open(self._crash_paths[i], errors="replace") as f:
                report = f.read(1 << 20)
        except (OSError, IndexError):
            return ""
        lines = [line for line in report.splitlines() if not line.startswith("Extension modules:")]
        report = "\n".join(lines).strip()
        return report if len(report) <= limit else report[:limit] + "\n..."

    def _cmd(self, seq: int) -> str:
        entry = self._requests.get(seq)
        return "?" if entry is None else entry[1]

    def _oldest_cmd(self, i: int) -> str:  # the request worker i is working on
        for seq, (w, cmd, _) in self._requests.items():
            if w == i and seq not in self._replies:
                return cmd
        return "?"

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
        if self._torn >= 0:  # a message may be cut: do not add "close" to it
            self._stop_state["torn"].add(self._torn)
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed is not None


def _stop(procs: list, socks: list, state: dict, crash_paths: list[str]) -> None:
    """Ask every worker to close, then join, terminate and kill what is left. Never raises.

    Ctrl-C is held back meanwhile (in the main thread), so that it cannot leave a worker running.
    """
    blocked = threading.current_thread() is threading.main_thread()
    if blocked:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        deadline = time.monotonic() + state["grace"]
        for i, (proc, sock) in enumerate(zip(procs, socks)):
            if i in state["late"]:
                proc.kill()  # it did not answer in time; and SIGTERM waits while a process is stopped, SIGKILL not
            elif i in state["torn"]:
                proc.terminate()  # its socket may hold half a message: a "close" could be misread
            elif proc.is_alive():
                try:
                    sock.send(_frame(0, ("close", None))[0], socket.MSG_DONTWAIT)
                except OSError:
                    proc.terminate()
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 0.0))
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass
        for path in crash_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
