"""The wire format shared by a pool and its workers: one frame per message, descriptors alongside.

A frame is a header (the payload's length and the request's sequence number) and a pickled
payload; the descriptors of shared tensors and locks travel with a request (SCM_RIGHTS).
"""

from __future__ import annotations

import array
import pickle
import socket
import struct
import threading
from multiprocessing import context as mp_context
from multiprocessing.reduction import ForkingPickler
from typing import Any, cast

_HEADER = struct.Struct("!Iq")  # payload length, sequence number
_PEEK = 4096  # bytes peeked at once: a whole frame, for nearly every message tdrl sends
_FRAME_COST = 1024  # with twice its size: what a frame may cost a socket's buffer (kernel bookkeeping, rounding)


class _FdSlot:
    """A file descriptor that travels with its message (SCM_RIGHTS): the receiver's copy, by its place."""

    def __init__(self, index: int) -> None:
        self.index = index

    def detach(self) -> int:
        fds = _received.fds
        fd, fds[self.index] = fds[self.index], -1
        return fd


class _FdCollector:
    """Stands in for a spawning ``Popen`` while the parent pickles a request.

    The descriptors of shared tensors (torch's "file_descriptor" strategy) and of
    ProcessLocks are collected, to travel inside the message itself, rather than be served
    later by the parent's resource-sharer thread: one thread that a stopped worker, caught
    half-way through fetching one, would block for every other worker.
    """

    def __init__(self) -> None:
        self.fds: list[int] = []

    def duplicate_for_child(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1

    def DupFd(self, index: int) -> _FdSlot:
        return _FdSlot(index)


_received = threading.local()  # the worker's side: the descriptors of the message being read
_MAX_FDS = 250  # per message (Linux takes 253); a message with more lets the resource sharer serve them


_SMALL: dict[tuple[str, Any], bytes] = {}  # (word, flag) -> its pickle: the per-step messages, pickled once


def _small(obj: Any) -> bytes | None:
    """The pickle of a ``(str, None | bool)`` pair (a step request, its reply), made once; else None.

    Such a pair holds no tensor, so it pickles the same with either pickler.
    """
    if type(obj) is not tuple or len(obj) != 2 or type(obj[0]) is not str:
        return None
    flag = obj[1]
    if flag is not None and type(flag) is not bool:
        return None
    data = _SMALL.get(obj)
    if data is None:
        if len(_SMALL) >= 256:  # words come from code, not data; a bound all the same
            _SMALL.clear()
        data = _SMALL[obj] = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data


def _frame(seq: int, obj: Any, shared: bool = True) -> tuple[bytes, list[int]]:
    """A message and the descriptors that go with it.

    ``shared``: tensors in shared memory travel as handles, their descriptors with the
    message (the parent's requests); else by value (the workers' replies: reading them
    then needs nothing from a worker, which may since have stopped or died).
    """
    fds: list[int] = []
    data: bytes | memoryview
    small = _small(obj)
    if small is not None:
        return _HEADER.pack(len(small), seq) + small, fds
    if shared:
        collector = _FdCollector()
        previous = mp_context.get_spawning_popen()
        mp_context.set_spawning_popen(cast(Any, collector))
        try:
            data = ForkingPickler.dumps(obj)
        finally:
            mp_context.set_spawning_popen(previous)
        fds = collector.fds
        if len(fds) > _MAX_FDS:
            data, fds = ForkingPickler.dumps(obj), []
    else:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data), seq) + bytes(data), fds


def _send_frame(sock: socket.socket, frame: bytes, fds: list[int], flags: int = 0) -> int:
    """Send ``frame`` (its first bytes carry ``fds``); returns the bytes sent."""
    if not fds:
        return sock.send(frame, flags)
    return sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], flags)
