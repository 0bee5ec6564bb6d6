"""How tdrl puts files on disk: crash-safe writes, checksums, and names that stay in their folder.

Every file tdrl writes for later (replay-buffer checkpoints, the memory-mapped storage's
description, the main job's outputs) goes through this module, so there is one way to get
it right:

- :func:`write_file_atomic`: one file, whole or not at all. It is written under a new name
  in the same folder, flushed and fsynced, renamed over the target, and the folder is
  fsynced so that the rename itself survives a power cut.
- :func:`replace_folder`: a folder of files (a checkpoint), whole or not at all. It is
  written as a new sibling folder, every file and the folder are fsynced, then two renames
  put it in place: the old folder to a backup name, the new one to the target; the backup
  is deleted last. :func:`committed_folder` is how a reader finds it: the target when it
  exists, else the backup (a process was killed between the two renames, and the backup is
  the complete previous folder). A half-written new folder is never read.
- :func:`contained_file`: a file name read from a file (a checkpoint's list of its files)
  is a plain name that resolves inside its folder, or it is refused: no ``..``, no absolute
  path, no symlink that points out.

Checksums are CRC-32 (:func:`zlib.crc32`, about 1.8 GB/s here against 0.8 GB/s for
SHA-256). They guard against corruption (a torn or truncated file, flipped bits, a file
from another save), which CRC-32 detects with certainty for any error burst up to 32 bits
and otherwise misses with odds of 2**-32. A cryptographic hash would add nothing: whoever can
rewrite a file can rewrite the checksum recorded next to it.

Crash safety here means: a process killed at any instant (SIGKILL, OOM) or a power cut
leaves either the previous content or the new one, on a local POSIX file system. One writer
at a time per target: two processes saving to the same folder at once are not supported.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypeVar

__all__ = [
    "FileDigest",
    "write_file_atomic",
    "write_new_file",
    "file_digest",
    "fsync_folder",
    "replace_folder",
    "committed_folder",
    "contained_file",
    "UnsafePathError",
]

T = TypeVar("T")

_CHUNK = 8 << 20  # bytes read at a time when checksumming: big enough to be fast, small enough not to matter
_NEW_TAG = ".tdrl-new-"
_OLD_TAG = ".tdrl-old"


class UnsafePathError(ValueError):
    """A file name read from a file points outside its folder (or is not a plain name)."""


class FileDigest(NamedTuple):
    """Size and CRC-32 of a file's bytes."""

    size: int
    crc32: int


# ---------------------------------------------------------------------------------------- files
def fsync_folder(folder: str | os.PathLike) -> None:
    """Makes the creations, renames and deletions inside ``folder`` durable (POSIX; a no-op
    where a folder cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` crash-safe: the old content or the new one, never a mix.

    ``write`` fills a new file next to ``path`` (same folder, so the rename stays on one
    file system), which is flushed, fsynced and renamed over ``path``; then the folder is
    fsynced. If ``write`` raises, ``path`` is untouched and the temporary file is removed.

    Args:
        path: the file to write.
        write: called with the open binary file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "summary.json"
        >>> write_file_atomic(path, lambda f: f.write(b'{"frames": 1000}'))
        >>> path.read_bytes()
        b'{"frames": 1000}'
    """
    path = Path(path)
    _remove_abandoned(path, tag=".")
    # opened with "x" (not tempfile.mkstemp) so that the file gets the usual permissions (umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    created = False
    try:
        with open(tmp, "xb") as file:
            created = True
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if created:
            tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_new_file(path: str | os.PathLike, data: memoryview | bytes) -> FileDigest:
    """Creates ``path`` (it must not exist), writes ``data``, fsyncs it; returns its digest.

    Meant for the files of a folder being built by :func:`replace_folder`. The bytes go
    through ``write(2)``, not through a mapping of the file, so saving a large tensor does
    not grow the resident memory.
    """
    view = memoryview(data).cast("B")
    with open(path, "xb") as file:
        if view.nbytes:
            file.write(view)
        file.flush()
        os.fsync(file.fileno())
    return FileDigest(view.nbytes, zlib.crc32(view))


def file_digest(path: str | os.PathLike) -> FileDigest:
    """Size and CRC-32 of the file at ``path``, read in chunks (the resident memory stays flat)."""
    crc = 0
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while True:
            count = file.readinto(view)
            if not count:
                break
            crc = zlib.crc32(view[:count], crc)
            size += count
    return FileDigest(size, crc)


# -------------------------------------------------------------------------------------- folders
def _new_name(target: Path) -> Path:
    return target.with_name(f".{target.name}{_NEW_TAG}{os.getpid()}-{secrets.token_hex(4)}")


def _old_name(target: Path) -> Path:
    return target.with_name(f".{target.name}{_OLD_TAG}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_abandoned(target: Path, tag: str = _NEW_TAG) -> None:
    """Deletes the temporary files or folders left next to ``target`` by killed writers
    (``.<name><tag><pid>...``, whose process is gone)."""
    prefix = f".{target.name}{tag}"
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix) :].split("-", 1)[0].split(".", 1)[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.name.endswith(".tmp"):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def replace_folder(target: str | os.PathLike, fill: Callable[[Path], T]) -> T:
    """Builds a folder with ``fill`` and puts it at ``target`` crash-safe, replacing any old one.

    ``fill`` writes the files into an empty new folder next to ``target`` (with
    :func:`write_new_file`, or any writer: every file is fsynced again before the switch).
    Then the old folder is renamed to a backup name, the new one to ``target``, and the
    backup is deleted. Killed at any instant, the disk holds the old folder or the new one
    for :func:`committed_folder` to find, never a mix; the next call cleans up what a killed
    call left. If ``fill`` raises, nothing changes and the new folder is removed.

    Args:
        target: the folder to write. Its parent is created if needed.
        fill: called with the new folder's path; its result is returned.

    Raises:
        NotADirectoryError: when ``target`` exists and is not a folder.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> target = Path(tempfile.mkdtemp()) / "checkpoint"
        >>> _ = replace_folder(target, lambda d: write_new_file(d / "a.bin", b"first"))
        >>> _ = replace_folder(target, lambda d: write_new_file(d / "a.bin", b"second"))
        >>> (committed_folder(target) / "a.bin").read_bytes(), sorted(p.name for p in target.parent.iterdir())
        (b'second', ['checkpoint'])
    """
    target = Path(os.path.realpath(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder; pass a folder path to save into")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    new = _new_name(target)
    new.mkdir()
    try:
        result = fill(new)
        for entry in os.scandir(new):  # whatever fill wrote, durable before it becomes visible
            if entry.is_file(follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_folder(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    old = _old_name(target)
    try:
        if target.exists():
            # a backup next to an existing target is stale (a killed call's last step): only
            # while the target is missing is the backup the complete previous folder
            if old.exists() or old.is_symlink():
                _remove_tree(old)
            os.rename(target, old)
            fsync_folder(parent)
        os.rename(new, target)
        fsync_folder(parent)
    except BaseException:
        # an error (not a kill: nothing runs then) before the new folder is in place: the
        # backup, if any, stays the folder readers find; the next call cleans it up
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)
        raise
    if old.exists() or old.is_symlink():
        try:
            _remove_tree(old)
        except OSError:
            pass  # the save is done; the next one removes the stale backup
    return result


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def committed_folder(target: str | os.PathLike) -> Path | None:
    """The folder a reader of ``target`` should open, or ``None`` when there is none.

    That is ``target`` itself when it exists; else the backup of the previous folder, when a
    writer was killed between renaming the old folder away and the new one in. New folders
    that were never renamed into place are ignored: they may be incomplete.
    """
    target = Path(os.path.realpath(target))
    if target.is_dir():
        return target
    old = _old_name(target)
    if old.is_dir() and not old.is_symlink():
        return old
    return None


# ------------------------------------------------------------------------------------ containment
def contained_file(folder: str | os.PathLike, name: object, *, what: str = "file name") -> Path:
    """Resolves ``name``, read from a file, inside ``folder``; refuses anything else.

    ``name`` must be a plain file name (no separator, not ``.``/``..``, no NUL), and the
    path must resolve, symlinks followed, to a regular file directly inside ``folder``.

    Args:
        folder: the folder the name belongs to.
        name: the name as read (any type: it is checked).
        what: how error messages call it, e.g. ``"leaf file name"``.

    Returns:
        The resolved path.

    Raises:
        UnsafePathError: for a name that is not plain, or that resolves outside ``folder``.
        FileNotFoundError: when there is no such file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "leaf_0.bin").write_bytes(b"")
        >>> contained_file(folder, "leaf_0.bin").name
        'leaf_0.bin'
        >>> contained_file(folder, "../leaf_0.bin")
        Traceback (most recent call last):
        ...
        tdrl._safe_io.UnsafePathError: ... '../leaf_0.bin' ... is not a plain file name ...
    """
    folder = Path(folder)
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or os.path.basename(name) != name
    ):
        raise UnsafePathError(
            f"{what} {name!r} in {folder} is not a plain file name inside that folder; the file that "
            "lists it is corrupt or was not written by tdrl"
        )
    home = Path(os.path.realpath(folder))
    path = Path(os.path.realpath(folder / name))
    if path.parent != home:
        raise UnsafePathError(
            f"{what} {name!r} in {folder} resolves to {path}, outside that folder (a symlink?); "
            "tdrl reads and writes only files inside it"
        )
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {name!r}: {folder / name} is missing") from None
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{what} {name!r} in {folder} is not a regular file")
    return path
