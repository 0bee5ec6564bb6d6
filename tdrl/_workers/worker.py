"""The worker's side: set up, report the start, then answer requests until told to close."""

from __future__ import annotations

import os
import select
import signal
import socket
import traceback
from collections.abc import Callable
from multiprocessing import current_process
from multiprocessing.reduction import ForkingPickler
from typing import Any

import torch

from tdrl._workers.frames import _HEADER, _MAX_FDS, _frame, _received


def setup_worker(inherited: socket.socket | None) -> None:
    """What every worker does first: close the parent's end, ignore Ctrl-C, allow children."""
    if inherited is not None:
        inherited.close()  # fork: the parent's end of our own socket, so that EOF reaches us
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    # The parent stops this process at exit as a daemon; the flag itself would forbid this
    # worker to start processes of its own (a ParallelEnv inside a collector worker). Those
    # are its daemonic children: they stop when it stops, and notice if it is killed.
    current_process().daemon = False
    torch.set_num_threads(1)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = sock.recv(size, socket.MSG_WAITALL)
    if len(data) < size:
        raise EOFError
    return data


def _read_request(sock: socket.socket) -> tuple[int, str, Any]:
    """One request: its header (whose first byte carries the message's descriptors), then its payload."""
    head, fds, flags, _ = socket.recv_fds(sock, _HEADER.size, _MAX_FDS + 3, socket.MSG_WAITALL)
    _received.fds = list(fds)
    try:
        if len(head) < _HEADER.size:
            raise EOFError
        if flags & socket.MSG_CTRUNC:
            raise OSError("a request's file descriptors were truncated")
        size, seq = _HEADER.unpack(head)
        cmd, arg = ForkingPickler.loads(_recv_exactly(sock, size))
    finally:
        for fd in _received.fds:  # those the request did not use
            if fd >= 0:
                os.close(fd)
        _received.fds = []
    return seq, cmd, arg


def _reply(sock: socket.socket, seq: int, status: str, payload: Any) -> None:
    try:
        frame = _frame(seq, (status, payload), shared=False)[0]
    except Exception:  # a result that does not pickle
        frame = _frame(seq, ("error", traceback.format_exc()), shared=False)[0]
    sock.sendall(frame)


def report_start(sock: socket.socket, idx: int, build: Callable[[], Any], describe: Callable[[Any], Any]) -> Any:
    """Build worker ``idx``'s object and report ``describe(obj)`` (or the traceback); None on failure."""
    seq = -(idx + 1)  # the start report's sequence number (WorkerPool.started)
    try:
        obj = build()
        _reply(sock, seq, "ok", describe(obj))
        return obj
    except BaseException:
        try:
            _reply(sock, seq, "error", traceback.format_exc())
        except OSError:
            pass
        return None


def serve(sock: socket.socket, parent_pid: int, handle: Callable[[str, Any], Any], lane: Any = None) -> None:
    """Answer requests with ``handle(cmd, arg)`` until "close", EOF, or the parent's death.

    ``lane``: a :class:`~tdrl._workers.lane.WorkerLane` that ``handle`` may attach; from
    then on its requests are answered too (its bell is watched edge-triggered).
    """
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    bell = None
    try:
        while True:
            if lane is not None and bell is None and lane.fd is not None:
                bell = lane.fd
                poller.register(bell, select.EPOLLIN | select.EPOLLET)
                lane.run(handle)  # (a request rung before the bell was watched)
            events = poller.poll(1.0)
            if not events:
                if os.getppid() != parent_pid:  # orphaned: the parent died without closing us
                    return
                continue
            if bell is not None and any(fd == bell for fd, _ in events):
                lane.run(handle)
            if not any(fd == sock.fileno() for fd, _ in events):
                continue
            try:
                seq, cmd, arg = _read_request(sock)
            except (EOFError, OSError):
                return
            if cmd == "close":
                return
            if cmd == "sync":
                result: Any = None
                status = "ok"
            elif cmd == "lane_error":
                result, status = (lane.error if lane is not None else ""), "ok"
            else:
                try:
                    result, status = handle(cmd, arg), "ok"
                except BaseException:
                    result, status = traceback.format_exc(), "error"
            try:
                _reply(sock, seq, status, result)
            except OSError:  # the parent is gone
                return
    finally:
        poller.close()
