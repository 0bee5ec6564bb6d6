"""Storages: allocation from the first write, reads, structure checks, memory-mapped files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    ReplayBuffer,
    TensorStorage,
)


# ------------------------------------------------------------------------- ListStorage
def test_list_storage_holds_any_object():
    storage = ListStorage(max_size=3)
    storage.set(0, "a")
    storage.set(slice(1, 3), [{"b": 1}, None])
    assert len(storage) == 3
    assert storage.get(0) == "a"
    assert storage.get(torch.tensor([2, 1])) == [None, {"b": 1}]
    storage.set(torch.tensor([0]), ["z"])
    assert storage.get(0) == "z"


def test_list_storage_rejects_gaps_and_overflow():
    storage = ListStorage(max_size=2)
    with pytest.raises(IndexError, match="positions must be written in order"):
        storage.set(1, "x")
    with pytest.raises(IndexError, match="max_size=2"):
        storage.set(torch.tensor([0, 1, 2]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="got 3 items for 2 positions"):
        storage.set(slice(0, 3), ["a", "b", "c"])
    assert len(storage) == 0


def test_list_storage_unbounded_by_default():
    storage = ListStorage()
    storage.set(slice(0, 5), list(range(5)))
    assert len(storage) == 5
    assert storage.max_size > 10**9


def test_list_storage_splits_tensordicts(make_transitions):
    storage = ListStorage(10)
    storage.set(slice(0, 4), make_transitions(4))
    item = storage.get(2)
    assert item.batch_size == torch.Size([])
    assert item["observation"][0] == 2


def test_empty_list_storage_read_raises():
    with pytest.raises(RuntimeError, match="empty storage"):
        ListStorage(3).get(0)


# ------------------------------------------------------------------- tensor storages
def test_lazy_storage_allocates_from_first_write(make_transitions):
    storage = LazyTensorStorage(100)
    assert not storage.initialized
    storage.set(slice(0, 10), make_transitions(10))
    assert storage.initialized
    assert len(storage) == 10
    layout = storage.layout
    assert ("next", "reward") in layout.keys
    assert layout.shapes[layout.position("observation")] == torch.Size([3])
    assert storage._storage["observation"].shape == (100, 3)
    assert storage._storage["observation"].dtype == torch.float64


def test_lazy_storage_reads_exact_rows(make_transitions):
    storage = LazyTensorStorage(100)
    storage.set(slice(0, 50), make_transitions(50))
    index = torch.tensor([3, 49, 0, 3])
    out = storage.get(index)
    assert out.batch_size == torch.Size([4])
    assert out["observation"][:, 0].tolist() == [3.0, 49.0, 0.0, 3.0]
    assert out["next", "reward"][:, 0].tolist() == [3.0, 49.0, 0.0, 3.0]
    assert out["next", "observation"].is_contiguous()


def test_reads_are_copies(make_transitions):
    storage = LazyTensorStorage(10)
    storage.set(slice(0, 5), make_transitions(5))
    out = storage.get(torch.tensor([1]))
    out["observation"].fill_(-7)
    single = storage.get(1)
    single["action"].fill_(-7)
    assert storage.get(torch.tensor([1]))["observation"][0, 0] == 1
    assert (storage.get(1)["action"] != -7).all()


def test_storage_of_plain_tensors():
    storage = LazyTensorStorage(10)
    storage.set(slice(0, 4), torch.arange(8.0).reshape(4, 2))
    assert torch.equal(storage.get(torch.tensor([3, 0])), torch.tensor([[6.0, 7.0], [0.0, 1.0]]))


def test_items_with_their_own_batch_dims():
    storage = LazyTensorStorage(5)
    data = TensorDict({"obs": torch.arange(24.0).reshape(2, 4, 3)}, [2, 4])  # 2 trajectories of 4 steps
    storage.set(slice(0, 2), data)
    out = storage.get(torch.tensor([1]))
    assert out.batch_size == torch.Size([1, 4])
    assert torch.equal(out["obs"][0], data["obs"][1])


def test_tensor_storage_wraps_existing_data():
    data = TensorDict({"x": torch.arange(6)}, [6])
    storage = TensorStorage(data)
    assert len(storage) == 6
    assert storage.max_size == 6
    assert storage.get(torch.tensor([5]))["x"].item() == 5
    with pytest.raises(ValueError, match="does not match"):
        TensorStorage(data, max_size=7)


def test_auto_device_follows_the_data(make_transitions):
    storage = LazyTensorStorage(10, device="auto")
    storage.set(slice(0, 2), make_transitions(2))
    assert storage.device == torch.device("cpu")


def test_write_wraps_with_index_tensor(make_transitions):
    storage = LazyTensorStorage(4)
    storage.set(slice(0, 4), make_transitions(4))
    storage.set(torch.tensor([3, 0]), make_transitions(2, start=10))
    assert storage.get(torch.arange(4))["observation"][:, 0].tolist() == [11.0, 1.0, 2.0, 10.0]
    assert storage._last_cursor == 0


# ------------------------------------------------------------------- bad structure
@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            lambda td: td.set("observation", torch.zeros(td.shape[0], 4, dtype=torch.float64)),
            ValueError,
            r"'observation' has shape \[5, 4\], expected \['N', 3\]",
        ),
        (
            lambda td: td.set(("next", "extra"), torch.zeros(td.shape[0])),
            KeyError,
            r"unexpected keys \[\('next', 'extra'\)\]",
        ),
        (lambda td: td.exclude("action"), KeyError, r"missing keys \['action'\]"),
        (lambda td: td.set("episode", torch.zeros(td.shape[0])), TypeError, r"'episode' has dtype torch.float32"),
        (lambda td: td.unsqueeze(0), ValueError, r"batch_size=\[1, 5\] but this storage expects \[N\]"),
    ],
)
def test_mismatched_structure_is_refused_and_nothing_changes(make_transitions, mutate, error, message):
    rb = ReplayBuffer(storage=LazyTensorStorage(20))
    rb.extend(make_transitions(10))
    before = rb.storage.get(torch.arange(10)).clone()
    bad = mutate(make_transitions(5, start=100))
    with pytest.raises(error, match=message):
        rb.extend(bad)
    assert len(rb) == 10
    assert rb.writer._cursor == 10
    assert (rb.storage.get(torch.arange(10)) == before).all()


def test_non_tensor_data_is_refused():
    storage = LazyTensorStorage(4)
    with pytest.raises(TypeError, match="use ListStorage"):
        storage.set(slice(0, 2), ["a", "b"])
    assert not storage.initialized


def test_refused_first_write_does_not_allocate(make_transitions):
    storage = LazyTensorStorage(4)
    with pytest.raises(ValueError, match="batch of 2 items"):
        storage.set(slice(0, 3), make_transitions(2))
    assert not storage.initialized
    assert len(storage) == 0


def test_out_of_range_index_is_refused(make_transitions):
    storage = LazyTensorStorage(4)
    with pytest.raises(IndexError, match="out of range"):
        storage.set(torch.tensor([0, 4]), make_transitions(2))


# --------------------------------------------------------------------- memory map
def test_memmap_storage_lives_in_files(tmp_path, make_transitions):
    storage = LazyMemmapStorage(1000, scratch_dir=tmp_path / "rb")
    storage.set(slice(0, 10), make_transitions(10))
    files = sorted(os.listdir(tmp_path / "rb"))
    assert "tdrl_storage.json" in files
    assert any(f.endswith(".memmap") for f in files)
    assert storage.get(torch.tensor([7]))["observation"][0, 0] == 7
    assert storage.get(torch.tensor([7]))["observation"].__class__ is torch.Tensor


def test_memmap_refuses_to_clobber_an_existing_storage(tmp_path, make_transitions):
    LazyMemmapStorage(10, scratch_dir=tmp_path).set(slice(0, 2), make_transitions(2))
    with pytest.raises(FileExistsError, match=r"LazyMemmapStorage.open"):
        LazyMemmapStorage(10, scratch_dir=tmp_path)
    fresh = LazyMemmapStorage(10, scratch_dir=tmp_path, existsok=True)
    fresh.set(slice(0, 1), make_transitions(1, start=5))
    assert len(LazyMemmapStorage.open(tmp_path)) == 1


def test_memmap_open_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no LazyMemmapStorage"):
        LazyMemmapStorage.open(tmp_path)


def test_memmap_rejects_other_devices():
    with pytest.raises(ValueError, match="lives on the CPU"):
        LazyMemmapStorage(10, device="meta")


def test_temporary_memmap_folder_is_removed(make_transitions):
    storage = LazyMemmapStorage(10)
    storage.set(slice(0, 2), make_transitions(2))
    folder = storage.scratch_dir
    assert folder.exists()
    del storage
    import gc

    gc.collect()
    assert not folder.exists()


_CRASHING_WRITER = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from conftest import transitions
    from tdrl.data.replay_buffers import LazyMemmapStorage, ReplayBuffer
    rb = ReplayBuffer(storage=LazyMemmapStorage(50, scratch_dir={folder!r}))
    for start in range(0, 70, 7):
        rb.extend(transitions(7, start=start))
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush
    """
)


def test_memmap_reopened_after_a_crash_holds_everything_written(tmp_path, make_transitions):
    folder = str(tmp_path / "crash")
    code = _CRASHING_WRITER.format(tests=os.path.dirname(__file__), folder=folder)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    storage = LazyMemmapStorage.open(folder)
    assert len(storage) == 50
    assert storage._last_cursor == 69 % 50
    steps = storage.get(torch.arange(50))["observation"][:, 0].long()
    # 70 items went into a ring of 50: positions hold steps 50..69 then 20..49
    assert steps.tolist() == list(range(50, 70)) + list(range(20, 50))
    rb = ReplayBuffer(storage=storage)  # resumes after the last write
    assert rb.extend(make_transitions(2, start=70)).tolist() == [20, 21]


# ------------------------------------------------------------------ re-opening checks what it reads
def _memmap_folder(tmp_path, make_transitions, count=4):
    folder = tmp_path / "storage"
    storage = LazyMemmapStorage(10, scratch_dir=folder)
    storage.set(slice(0, count), make_transitions(count))
    return folder


def _edit_description(folder, edit):
    import json

    path = folder / "tdrl_storage.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("name", ["../outside.memmap", "{outside}", "sub/leaf_0.memmap", ".."])
def test_memmap_leaf_names_never_leave_the_folder(tmp_path, make_transitions, name):
    folder = _memmap_folder(tmp_path, make_transitions)
    outside = tmp_path / "outside.memmap"
    outside.write_bytes((folder / "leaf_0.memmap").read_bytes())
    before = outside.read_bytes()

    def edit(document):
        document["files"][0] = name.format(outside=outside)

    _edit_description(folder, edit)
    with pytest.raises(ValueError, match="is not a plain file name inside that folder"):
        LazyMemmapStorage.open(folder)
    assert outside.read_bytes() == before  # before: later extend() calls wrote into it


def test_memmap_leaf_symlinked_out_of_the_folder_is_refused(tmp_path, make_transitions):
    folder = _memmap_folder(tmp_path, make_transitions)
    outside = tmp_path / "outside.memmap"
    os.replace(folder / "leaf_0.memmap", outside)
    (folder / "leaf_0.memmap").symlink_to(outside)
    with pytest.raises(ValueError, match="outside that folder"):
        LazyMemmapStorage.open(folder)
    before = outside.read_bytes()
    fresh = LazyMemmapStorage(10, scratch_dir=folder, existsok=True)  # overwriting never writes through it
    fresh.set(slice(0, 4), make_transitions(4, start=100))
    assert outside.read_bytes() == before
    assert not (folder / "leaf_0.memmap").is_symlink()


def test_memmap_truncated_leaf_file_is_an_error_not_zeros(tmp_path, make_transitions):
    folder = _memmap_folder(tmp_path, make_transitions)
    victim = folder / "leaf_0.memmap"
    os.truncate(victim, victim.stat().st_size // 3)
    with pytest.raises(ValueError, match=r"leaf file leaf_0.memmap holds \d+ bytes, expected \d+ \(10 rows"):
        LazyMemmapStorage.open(folder)


def test_memmap_stored_length_beyond_the_storage_is_an_error(tmp_path, make_transitions):
    import numpy as np

    folder = _memmap_folder(tmp_path, make_transitions)
    # as tdrl 0.1 wrote it: length and last position, no checksum; 100 was clamped to 10 before
    (folder / "tdrl_state.bin").write_bytes(np.array([100, 3], dtype=np.int64).tobytes())
    with pytest.raises(ValueError, match=r"stored length is 100, outside \[0, 10\]"):
        LazyMemmapStorage.open(folder)
    (folder / "tdrl_state.bin").write_bytes(np.array([4, 7], dtype=np.int64).tobytes())
    with pytest.raises(ValueError, match="last write position is 7, which 4 stored items cannot have"):
        LazyMemmapStorage.open(folder)


def test_memmap_damaged_state_record_is_an_error(tmp_path, make_transitions):
    folder = _memmap_folder(tmp_path, make_transitions)
    (folder / "tdrl_state.bin").write_bytes(os.urandom(96))
    with pytest.raises(ValueError, match="neither copy of the state record is intact"):
        LazyMemmapStorage.open(folder)


def test_memmap_folder_of_tdrl_0_1_opens_and_is_upgraded(tmp_path, make_transitions):
    import json

    import numpy as np

    folder = _memmap_folder(tmp_path, make_transitions, count=6)
    (folder / "tdrl_state.bin").write_bytes(np.array([6, 5], dtype=np.int64).tobytes())
    _edit_description(folder, lambda document: document.update(version=1))
    storage = LazyMemmapStorage.open(folder)
    assert len(storage) == 6
    assert storage.get(torch.arange(6))["observation"][:, 0].tolist() == list(range(6))
    assert json.loads((folder / "tdrl_storage.json").read_text())["version"] == 2
    storage.set(slice(6, 8), make_transitions(2, start=6))
    assert len(LazyMemmapStorage.open(folder)) == 8


def test_memmap_write_interrupted_while_overwriting_is_named_on_reopening(tmp_path, make_transitions, monkeypatch):
    folder = _memmap_folder(tmp_path, make_transitions, count=10)
    storage = LazyMemmapStorage.open(folder)

    class Killed(BaseException):
        pass

    def die(*args, **kwargs):
        raise Killed  # stands for the process dying between the rows and the bookkeeping

    monkeypatch.setattr(storage, "_written", die)
    with pytest.raises(Killed):
        storage.set(torch.tensor([2, 3, 4]), make_transitions(3, start=100))
    with pytest.raises(ValueError, match=r"stopped while it overwrote items 2..4, .* the other 7 items are intact"):
        LazyMemmapStorage.open(folder)


def test_memmap_write_interrupted_while_appending_loses_that_write_only(tmp_path, make_transitions, monkeypatch):
    folder = _memmap_folder(tmp_path, make_transitions, count=4)
    storage = LazyMemmapStorage.open(folder)
    monkeypatch.setattr(storage, "_written", lambda *args: None)
    storage.set(slice(4, 7), make_transitions(3, start=4))
    reopened = LazyMemmapStorage.open(folder)
    assert len(reopened) == 4
    assert reopened.get(torch.arange(4))["observation"][:, 0].tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------ values that a leaf cannot hold
@pytest.mark.parametrize(
    ("column", "incoming", "message"),
    [
        (
            torch.int8,
            torch.tensor([5, 300]),
            r"'a' holds 300, outside the range \[-128, 127\] of the storage's torch.int8 "
            r"\(it would be stored as 44\)",
        ),
        (
            torch.uint8,
            torch.tensor([-5, 2]),
            r"'a' holds -5, outside the range \[0, 255\] of the storage's torch.uint8",
        ),
        (torch.int32, torch.tensor([2**40]), r"outside the range \[-2147483648, 2147483647\]"),
        (torch.float16, torch.tensor([1.0, 1e6]), r"holds 1000000.0, outside the finite range .* torch.float16 .*inf"),
        (torch.float32, torch.tensor([1e300], dtype=torch.float64), r"holds 1e\+300, outside the finite range"),
    ],
)
def test_a_value_the_leaf_cannot_hold_is_refused_and_nothing_is_written(column, incoming, message):
    storage = LazyTensorStorage(10)
    storage.set(slice(0, 2), TensorDict({"a": torch.zeros(2, dtype=column)}, [2]))
    with pytest.raises(ValueError, match=message):
        storage.set(slice(2, 2 + len(incoming)), TensorDict({"a": incoming}, [len(incoming)]))
    assert len(storage) == 2
    with pytest.raises(ValueError, match="outside the"):
        storage.set(0, TensorDict({"a": incoming[incoming.abs().argmax()]}, []))  # one item: the same rule
    assert storage.get(torch.arange(2))["a"].tolist() == [0, 0]


def test_values_that_fit_are_stored_exactly_and_floats_are_rounded():
    storage = LazyTensorStorage(10)
    storage.set(slice(0, 1), TensorDict({"i": torch.zeros(1, dtype=torch.int8), "f": torch.zeros(1)}, [1]))
    incoming = TensorDict(
        {"i": torch.tensor([-128, 127, 3]), "f": torch.tensor([0.1, float("inf"), float("nan")], dtype=torch.float64)},
        [3],
    )
    storage.set(slice(1, 4), incoming)
    stored = storage.get(torch.arange(1, 4))
    assert stored["i"].tolist() == [-128, 127, 3]
    assert stored["f"][0].item() == torch.tensor(0.1, dtype=torch.float32).item()
    assert stored["f"][1].item() == float("inf")
    assert stored["f"][2].isnan()
    with pytest.raises(TypeError, match=r"cannot be stored in the storage's torch.int8 without losing information"):
        storage.set(slice(4, 5), TensorDict({"i": torch.tensor([1.5]), "f": torch.zeros(1)}, [1]))


def test_a_state_record_update_cut_off_before_its_checksum_leaves_the_previous_state(tmp_path):
    import numpy as np

    from tdrl.data.replay_buffers._memmap_files import StateRecord

    path = tmp_path / "tdrl_state.bin"
    StateRecord.create(path, 3, 2)  # slot 0
    StateRecord(path).write(5, 4)  # slot 1, in force
    raw = np.fromfile(path, dtype=np.int64)
    raw[0:5] = [3, 9, 8, 0, 0]  # the next update's values landed in slot 0, its checksum did not
    raw.tofile(path)
    assert StateRecord(path).read() == (5, 4, (0, 0))


def test_a_batch_larger_than_a_list_storage_keeps_its_newest_items():
    rb = ReplayBuffer(storage=ListStorage(2))
    rb.extend(["a", "b", "c"])  # the writer writes "b" at 1 and "c" at 0: out of order, but no gap
    assert [rb[0], rb[1]] == ["c", "b"]
    storage = ListStorage(5)
    with pytest.raises(IndexError, match="position 1 would stay empty"):
        storage.set([2, 0], ["x", "y"])
    assert len(storage) == 0


def test_memmap_load_interrupted_while_replacing_items_is_named_on_reopening(tmp_path, make_transitions, monkeypatch):
    folder = _memmap_folder(tmp_path, make_transitions, count=6)
    storage = LazyMemmapStorage.open(folder)
    source = LazyTensorStorage(10)
    source.set(slice(0, 8), make_transitions(8, start=50))

    class Killed(BaseException):
        pass

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(storage, "_written", die)
    with pytest.raises(Killed):
        storage.load_state_dict(source.state_dict())
    with pytest.raises(ValueError, match=r"stopped while it overwrote items 0..5"):
        LazyMemmapStorage.open(folder)


def test_memmap_storage_takes_a_temporary_directory_as_scratch_dir():
    import tempfile

    from tdrl.data import LazyMemmapStorage, ReplayBuffer

    folder = tempfile.TemporaryDirectory()
    buffer = ReplayBuffer(storage=LazyMemmapStorage(10, scratch_dir=folder))
    buffer.extend(torch.arange(4.0))
    assert any(os.scandir(folder.name))
    folder.cleanup()
