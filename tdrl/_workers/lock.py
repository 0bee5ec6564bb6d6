"""A lock shared by processes however they were started, which travels with pickled objects."""

from __future__ import annotations

import os
import threading
import weakref
from multiprocessing.reduction import DupFd
from typing import Any, ClassVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no fcntl, and so no ProcessLock
    fcntl = None  # type: ignore[assignment]


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
