"""tdrl._safe_io: crash-safe files and folders, checksums, file names that stay in their folder."""

from __future__ import annotations

import os
import zlib

import pytest

from tdrl import _safe_io
from tdrl._safe_io import (
    UnsafePathError,
    committed_folder,
    contained_file,
    file_digest,
    replace_folder,
    write_file_atomic,
    write_new_file,
)


def _generation(tag: str, files: int = 3):
    """A folder's content for generation ``tag``: a few files whose bytes name it."""
    return {f"part_{i}.bin": f"{tag}:{i}:".encode() * (50 + 30 * i) for i in range(files)}


def _fill(content):
    def fill(folder):
        for name, data in content.items():
            write_new_file(folder / name, data)

    return fill


def _read(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class _Killed(BaseException):
    """Stands for the process dying at a file-system call."""


_STEPS = ("mkdir", "rename", "fsync", "unlink", "rmdir", "open")


@pytest.fixture
def crash_at(monkeypatch):
    """``crash_at(k)``: the k-th file-system call from now on raises; returns how many calls ran."""
    state = {"count": 0, "at": None}

    def wrap(name):
        real = getattr(os, name)

        def step(*args, **kwargs):
            if state["at"] is not None:
                state["count"] += 1
                if state["count"] == state["at"]:
                    raise _Killed(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, step)

    for name in _STEPS:
        wrap(name)

    def arm(at):
        state["count"], state["at"] = 0, at
        return state

    return arm


def test_a_save_stopped_at_any_file_system_call_leaves_the_old_folder_or_the_new_one(tmp_path, crash_at):
    old, new, later = _generation("old"), _generation("new", files=4), _generation("later", files=2)
    step = 0
    seen = set()
    while True:
        step += 1
        root = tmp_path / f"trial_{step}"
        target = root / "checkpoint"
        replace_folder(target, _fill(old))
        state = crash_at(step)
        try:
            replace_folder(target, _fill(new))
            finished = True
        except _Killed:
            finished = False
        state["at"] = None
        found = _read(committed_folder(target))
        assert found in (old, new), f"stopped at call {step}: a mix of both"
        seen.add("new" if found == new else "old")
        replace_folder(target, _fill(later))  # the next save cleans up whatever was left
        assert _read(committed_folder(target)) == later
        assert sorted(p.name for p in root.iterdir()) == ["checkpoint"]
        if finished:
            break
    assert step > 10  # every call of the protocol was a crash point
    assert seen == {"old", "new"}


def test_a_reader_finds_the_backup_when_a_save_stopped_between_the_two_renames(tmp_path):
    target = tmp_path / "checkpoint"
    replace_folder(target, _fill(_generation("old")))
    os.rename(target, tmp_path / ".checkpoint.tdrl-old")  # the first rename ran, the second did not
    (tmp_path / ".checkpoint.tdrl-new-999999999-abcd").mkdir()  # the new folder of the killed writer
    assert _read(committed_folder(target)) == _generation("old")
    replace_folder(target, _fill(_generation("new")))
    assert _read(committed_folder(target)) == _generation("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # backup and abandoned folder removed


def test_no_folder_means_no_checkpoint(tmp_path):
    assert committed_folder(tmp_path / "nothing") is None
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        replace_folder(tmp_path / "file", _fill({}))


def test_a_failing_fill_changes_nothing(tmp_path):
    target = tmp_path / "checkpoint"
    replace_folder(target, _fill(_generation("old")))

    def fill(folder):
        write_new_file(folder / "a.bin", b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        replace_folder(target, fill)
    assert _read(target) == _generation("old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_failed_file_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write_file_atomic(path, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_file_atomic(path, crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "summary.json"
    (tmp_path / ".summary.json.999999999.abcd.tmp").write_bytes(b"half")  # its writer (pid) is gone
    (tmp_path / f".summary.json.{os.getpid()}.abcd.tmp").write_bytes(b"in progress")  # a live writer's
    write_file_atomic(path, lambda f: f.write(b"{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".summary.json.{os.getpid()}.abcd.tmp", "summary.json"]


def test_digests_are_crc32_of_the_bytes(tmp_path):
    data = os.urandom(3 * (8 << 20) // 2)  # more than one read chunk
    written = write_new_file(tmp_path / "a.bin", data)
    assert written == file_digest(tmp_path / "a.bin") == (len(data), zlib.crc32(data))
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "a.bin", b"")


@pytest.mark.parametrize("name", ["../x.bin", "/etc/passwd", "a/b.bin", "..", ".", "", "x\x00y", 3, None, ["a"]])
def test_a_name_that_is_not_plain_is_refused(tmp_path, name):
    with pytest.raises(UnsafePathError, match="is not a plain file name"):
        contained_file(tmp_path, name)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (tmp_path / "secret").write_bytes(b"x")
    (folder / "leaf.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="outside that folder"):
        contained_file(folder, "leaf.bin")
    (folder / "sub").mkdir()
    with pytest.raises(UnsafePathError, match="not a regular file"):
        contained_file(folder, "sub")
    with pytest.raises(FileNotFoundError, match="missing"):
        contained_file(folder, "absent.bin")
    (folder / "inside.bin").write_bytes(b"")
    (folder / "alias.bin").symlink_to(folder / "inside.bin")
    assert contained_file(folder, "alias.bin") == (folder / "inside.bin").resolve()


def test_the_main_jobs_write_through_the_same_mechanism():
    from tdrl.examples import _job, dqn, ppo

    assert _job.write_file_atomic is _safe_io.write_file_atomic  # every output of a job goes through _job
    for job in (ppo, dqn):
        assert job._job is _job
        assert not hasattr(job, "write_atomic")
        assert not hasattr(job, "write_file_atomic")
