"""Page-level memory advice for storages (Linux ``madvise``; a no-op elsewhere).

- :func:`advise_huge_pages`: back a large in-RAM storage with 2 MB pages, so the random
  rows a sample reads do not each miss the TLB.
- :func:`release_pages`: after writing rows of a memory-mapped file, drop them from the
  process's resident set (they stay in the page cache and reach the file).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Any

import torch

__all__ = ["advise_huge_pages", "release_pages"]

_MADV_DONTNEED = 4
_MADV_HUGEPAGE = 14
_HUGE_PAGE = 2 << 20


def _load_madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _load_madvise()


def advise_huge_pages(leaf: torch.Tensor) -> None:
    """Asks Linux to back a large, not yet touched allocation with 2 MB pages.

    A sample reads a few hundred random rows of every leaf; with 4 KB pages nearly each
    of those reads also misses the TLB. Advisory only: without transparent huge pages
    (or off Linux) nothing changes.
    """
    nbytes = leaf.numel() * leaf.element_size()
    if _MADVISE is None or nbytes < 2 * _HUGE_PAGE:
        return
    start = leaf.data_ptr()
    aligned = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    _MADVISE(aligned, start + nbytes - aligned, _MADV_HUGEPAGE)


def release_pages(leaf: torch.Tensor, low: int, high: int) -> None:
    """Unmaps rows ``low .. high - 1`` of a file-backed *shared* mapping from this process.

    The written bytes stay in the page cache (and reach the file); only the process's
    resident set shrinks. Without this, writing 1M transitions through the mapping makes
    them all count as resident memory of the writer.
    """
    row = leaf.stride(0) * leaf.element_size() if leaf.ndim else leaf.element_size()
    if _MADVISE is None or row == 0 or high <= low:
        return
    start = leaf.data_ptr() + low * row
    aligned = start - start % mmap.PAGESIZE
    _MADVISE(aligned, start + (high - low) * row - aligned, _MADV_DONTNEED)
