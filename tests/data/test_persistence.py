"""dumps/loads: exact round trips without pickle, refusal of foreign checkpoints."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSamplerWithoutReplacement,
    TensorDictMaxValueWriter,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)


def _buffers(kind: str, tmp_path, tag: str):
    if kind == "without_replacement":
        return TensorDictReplayBuffer(
            storage=LazyTensorStorage(300), sampler=SamplerWithoutReplacement(), batch_size=32
        )
    if kind == "random":
        return ReplayBuffer(storage=LazyTensorStorage(300), sampler=RandomSampler(), batch_size=32)
    if kind == "prioritized":
        return TensorDictPrioritizedReplayBuffer(alpha=0.7, beta=0.5, storage=LazyTensorStorage(300), batch_size=32)
    if kind == "memmap_slices":
        return TensorDictReplayBuffer(
            storage=LazyMemmapStorage(300, scratch_dir=tmp_path / f"scratch_{tag}"),
            sampler=SliceSamplerWithoutReplacement(slice_len=4, traj_key="episode"),
            batch_size=32,
        )
    if kind == "list":
        return ReplayBuffer(storage=ListStorage(300), sampler=SamplerWithoutReplacement(), batch_size=32)
    if kind == "max_value":
        return TensorDictReplayBuffer(
            storage=LazyTensorStorage(100), writer=TensorDictMaxValueWriter(rank_key=("next", "reward")), batch_size=32
        )
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["without_replacement", "random", "prioritized", "memmap_slices", "list", "max_value"])
def test_round_trip_gives_identical_future_samples(tmp_path, make_transitions, kind):
    original = _buffers(kind, tmp_path, "a")
    for start in range(0, 400, 80):  # the ring wraps
        data = make_transitions(80, start=start, episode_len=10)
        data["next", "reward"] = torch.randn(80, 1)
        original.extend(data)
    for _ in range(3):  # part-way through an epoch
        batch = original.sample()
        if kind == "prioritized":
            batch["td_error"] = torch.rand(len(batch))
            original.update_tensordict_priority(batch)
    original.dumps(tmp_path / "ckpt")

    restored = _buffers(kind, tmp_path, "b")
    restored.loads(tmp_path / "ckpt")
    assert len(restored) == len(original)
    assert restored.writer.state_dict()["cursor"] == original.writer.state_dict()["cursor"]

    def future(rb):
        torch.manual_seed(123)
        out = [rb.sample() for _ in range(12)]
        return [
            b["observation"] if isinstance(b, TensorDict) else torch.stack([x["observation"] for x in b]) for b in out
        ]

    for a, b in zip(future(original), future(restored)):
        assert torch.equal(a, b)
    more = make_transitions(5, start=1000)
    assert torch.equal(original.extend(more.clone()), restored.extend(more.clone()))


def test_prioritized_state_is_exact(tmp_path, make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.3, storage=LazyTensorStorage(50))
    rb.extend(make_transitions(50))
    rb.update_priority(torch.arange(50), torch.rand(50) * 3)
    rb.sampler.beta = 0.9  # annealed
    rb.dumps(tmp_path)
    other = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.3, storage=LazyTensorStorage(50))
    other.loads(tmp_path)
    assert (other.sampler._tree.values() == rb.sampler._tree.values()).all()
    assert other.sampler.beta == 0.9
    assert other.sampler.default_priority == rb.sampler.default_priority
    assert other.sampler._tree.min() == rb.sampler._tree.min()


def test_generator_state_is_restored(tmp_path, make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(100), generator=torch.Generator().manual_seed(0), batch_size=8)
    rb.extend(make_transitions(100))
    rb.sample()
    rb.dumps(tmp_path)
    expected = [rb.sample()["observation"] for _ in range(3)]
    other = ReplayBuffer(storage=LazyTensorStorage(100), generator=torch.Generator().manual_seed(99), batch_size=8)
    other.loads(tmp_path)
    assert all(torch.equal(a, other.sample()["observation"]) for a in expected)


def _snapshot(rb):
    storage = rb.storage
    data = storage.get(torch.arange(len(storage))).clone() if len(storage) else None
    return len(rb), rb.writer.state_dict()["cursor"], data, rb.sampler.state_dict()


def _assert_unchanged(rb, snapshot):
    length, cursor, data, sampler = snapshot
    assert len(rb) == length
    assert rb.writer.state_dict()["cursor"] == cursor
    if data is not None:
        assert (rb.storage.get(torch.arange(length)) == data).all()
    now = rb.sampler.state_dict()
    assert now.keys() == sampler.keys()


@pytest.mark.parametrize(
    ("make_foreign", "message"),
    [
        (
            lambda make: (ReplayBuffer(storage=LazyTensorStorage(50)), make(10).exclude("action")),
            r"missing keys \['action'\]",
        ),
        (
            lambda make: (
                ReplayBuffer(storage=LazyTensorStorage(50)),
                make(10).set("observation", torch.zeros(10, 5, dtype=torch.float64)),
            ),
            r"'observation' has per-item shape \[5\], expected \[3\]",
        ),
        (lambda make: (ReplayBuffer(storage=LazyTensorStorage(60)), make(10)), r"max_size=60"),
        (
            lambda make: (ReplayBuffer(storage=LazyTensorStorage(50), sampler=SamplerWithoutReplacement()), make(10)),
            r"SamplerWithoutReplacement, this buffer samples with a RandomSampler",
        ),
        (lambda make: (ReplayBuffer(storage=ListStorage(50)), [1, 2]), r"ListStorage state"),
    ],
)
def test_foreign_checkpoint_is_refused_and_nothing_changes(tmp_path, make_transitions, make_foreign, message):
    foreign, data = make_foreign(make_transitions)
    foreign.extend(data)
    foreign.dumps(tmp_path / "foreign")
    rb = ReplayBuffer(storage=LazyTensorStorage(50))
    rb.extend(make_transitions(20))
    rb.sample(5)
    snapshot = _snapshot(rb)
    with pytest.raises(ValueError, match=message):
        rb.loads(tmp_path / "foreign")
    _assert_unchanged(rb, snapshot)


def test_prioritized_config_mismatch_is_refused(tmp_path, make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyTensorStorage(20))
    rb.extend(make_transitions(5))
    rb.dumps(tmp_path)
    other = TensorDictPrioritizedReplayBuffer(alpha=0.9, beta=0.4, storage=LazyTensorStorage(20))
    with pytest.raises(ValueError, match=r"configured with .*'alpha': 0.6"):
        other.loads(tmp_path)
    assert len(other) == 0


def test_loading_never_unpickles(tmp_path, make_transitions, monkeypatch):
    rb = TensorDictPrioritizedReplayBuffer(
        alpha=0.6, beta=0.4, storage=LazyMemmapStorage(20, scratch_dir=tmp_path / "s")
    )
    rb.extend(make_transitions(10))
    rb.dumps(tmp_path / "ckpt")
    assert os.listdir(tmp_path / "ckpt") == ["replay_buffer"]
    assert {name.rsplit(".", 1)[-1] for name in os.listdir(tmp_path / "ckpt" / "replay_buffer")} == {"json", "bin"}

    def forbidden(*args, **kwargs):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    other = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyTensorStorage(20))
    other.loads(tmp_path / "ckpt")
    assert len(other) == 10


def test_corrupt_or_missing_checkpoint(tmp_path, make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(20))
    rb.extend(make_transitions(10))
    rb.dumps(tmp_path)
    folder = tmp_path / "replay_buffer"
    victim = next(p for p in sorted(folder.iterdir()) if p.suffix == ".bin" and p.stat().st_size > 8)
    with open(victim, "r+b") as file:
        file.truncate(victim.stat().st_size - 8)
    other = ReplayBuffer(storage=LazyTensorStorage(20))
    with pytest.raises(ValueError, match=rf"{victim.name} holds \d+ bytes, \d+ were saved"):
        other.loads(tmp_path)
    assert len(other) == 0
    with pytest.raises(FileNotFoundError, match="dumps"):
        other.loads(tmp_path / "nothing")
    (folder / "replay_buffer.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a tdrl replay-buffer checkpoint"):
        other.loads(tmp_path)


def test_components_dump_and_load_alone(tmp_path, make_transitions):
    storage = LazyTensorStorage(30)
    storage.set(slice(0, 10), make_transitions(10))
    storage.dumps(tmp_path / "storage")
    fresh = LazyTensorStorage(30)
    fresh.loads(tmp_path / "storage")
    assert (fresh.get(torch.arange(10)) == storage.get(torch.arange(10))).all()
    sampler = PrioritizedSampler(30, alpha=0.5, beta=0.5)
    sampler.update_priority(torch.arange(3), torch.tensor([1.0, 2.0, 3.0]))
    sampler.dumps(tmp_path / "sampler")
    other = PrioritizedSampler(30, alpha=0.5, beta=0.5)
    other.loads(tmp_path / "sampler")
    assert other._tree.total() == sampler._tree.total()


def test_empty_buffer_round_trip(tmp_path):
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    rb.dumps(tmp_path)
    other = ReplayBuffer(storage=LazyTensorStorage(10))
    other.loads(tmp_path)
    assert len(other) == 0
    assert not other.storage.initialized


def test_list_storage_of_mixed_items_round_trip(tmp_path):
    rb = ReplayBuffer(storage=ListStorage(10), collate_fn=list)
    items = [torch.ones(2), TensorDict({"a": torch.zeros(3)}, []), 3, "four", [5.0, None], {"six": torch.arange(2)}]
    rb.extend(items)
    rb.dumps(tmp_path)
    other = ReplayBuffer(storage=ListStorage(10), collate_fn=list)
    other.loads(tmp_path)
    loaded = other[list(range(6))]
    assert torch.equal(loaded[0], items[0])
    assert (loaded[1] == items[1]).all()
    assert loaded[2:5] == [3, "four", [5.0, None]]
    assert torch.equal(loaded[5]["six"], torch.arange(2))
    rb.add(object())
    with pytest.raises(TypeError, match="without pickle"):
        rb.dumps(tmp_path / "again")


# ------------------------------------------------------------------ checksums and versions
def test_bytes_changed_at_the_same_size_are_refused_naming_the_file(tmp_path, make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(20))
    rb.extend(make_transitions(10))
    rb.dumps(tmp_path)
    folder = tmp_path / "replay_buffer"
    victim = max(folder.glob("*.bin"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit, same size: read as silent garbage before checksums
    victim.write_bytes(bytes(data))
    other = ReplayBuffer(storage=LazyTensorStorage(20))
    with pytest.raises(ValueError, match=rf"{victim.name} does not match its checksum"):
        other.loads(tmp_path)
    assert len(other) == 0


def test_an_edited_json_is_refused(tmp_path, make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(20), sampler=SamplerWithoutReplacement(), batch_size=4)
    rb.extend(make_transitions(10))
    rb.sample()
    rb.dumps(tmp_path)
    path = tmp_path / "replay_buffer" / "replay_buffer.json"
    path.write_text(path.read_text().replace('"pos": 4', '"pos": 5'))
    with pytest.raises(ValueError, match="does not match its checksum"):
        ReplayBuffer(storage=LazyTensorStorage(20), sampler=SamplerWithoutReplacement()).loads(tmp_path)


def test_saving_leaves_other_files_alone_and_components_share_a_folder(tmp_path, make_transitions):
    (tmp_path / "model.pt").write_bytes(b"weights")
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyTensorStorage(20))
    rb.extend(make_transitions(10))
    for _ in range(2):  # the second save replaces the first
        rb.dumps(tmp_path)
        rb.storage.dumps(tmp_path)
        rb.sampler.dumps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "replay_buffer", "sampler", "storage"]
    assert (tmp_path / "model.pt").read_bytes() == b"weights"
    storage = LazyTensorStorage(20)
    storage.loads(tmp_path)
    assert len(storage) == 10


def _write_version_1(state, folder, name):
    """A checkpoint as tdrl 0.1 wrote it: files directly in the folder, no checksums."""
    import json

    count = 0

    def encode(obj):
        nonlocal count
        if isinstance(obj, torch.Tensor):
            filename = f"{name}_{count}.bin"
            count += 1
            (folder / filename).write_bytes(obj.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            return {"__tensor__": filename, "dtype": str(obj.dtype), "shape": list(obj.shape)}
        if isinstance(obj, dict):
            return {k: encode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [encode(v) for v in obj]
        return obj

    document = {"format": "tdrl.replay_buffer", "version": 1, "state": encode(state)}
    (folder / f"{name}.json").write_text(json.dumps(document))


def test_a_version_1_checkpoint_still_loads(tmp_path, make_transitions, checkpoint_kit):
    rb = ReplayBuffer(storage=LazyTensorStorage(20), sampler=SamplerWithoutReplacement(), batch_size=4)
    rb.extend(make_transitions(10))
    rb.sample()
    _write_version_1(rb.state_dict(), tmp_path, "replay_buffer")
    other = ReplayBuffer(storage=LazyTensorStorage(20), sampler=SamplerWithoutReplacement())
    other.loads(tmp_path)
    assert checkpoint_kit.differences(checkpoint_kit.snapshot(rb), checkpoint_kit.snapshot(other)) == []
    # a checkpoint folder is version 2: editing its version cannot switch the checksums off
    rb.dumps(tmp_path / "new")
    path = tmp_path / "new" / "replay_buffer" / "replay_buffer.json"
    path.write_text(path.read_text().replace('"version": 2', '"version": 1'))
    with pytest.raises(ValueError, match="version 1 is not what a checkpoint folder holds"):
        other.loads(tmp_path / "new")


def test_file_names_in_a_checkpoint_never_leave_its_folder(tmp_path, make_transitions, checkpoint_kit):
    rb = ReplayBuffer(storage=LazyTensorStorage(20))
    rb.extend(make_transitions(10))
    rb.dumps(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "replay_buffer" / "replay_buffer.json"
    outside = tmp_path / "outside.bin"
    outside.write_bytes((tmp_path / "ckpt" / "replay_buffer" / "replay_buffer_0.bin").read_bytes())
    text = path.read_text()
    for name in ("../../outside.bin", str(outside)):
        path.write_text(text.replace('"replay_buffer_0.bin"', f'"{name}"'))
        checkpoint_kit.reseal(path)
        with pytest.raises(ValueError, match="not a plain file name"):
            ReplayBuffer(storage=LazyTensorStorage(20)).loads(tmp_path / "ckpt")
    path.write_text(text)
    link = tmp_path / "ckpt" / "replay_buffer" / "replay_buffer_0.bin"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(ValueError, match="outside that folder"):
        ReplayBuffer(storage=LazyTensorStorage(20)).loads(tmp_path / "ckpt")


# ------------------------------------------------------------------ validation before any change
def _prioritized(make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyTensorStorage(20), batch_size=4)
    rb.extend(make_transitions(10))
    rb.update_priority(torch.arange(10), torch.rand(10))
    return rb


def _without_replacement(make_transitions):
    rb = ReplayBuffer(
        storage=LazyTensorStorage(20),
        sampler=SamplerWithoutReplacement(),
        batch_size=4,
        generator=torch.Generator().manual_seed(1),
    )
    rb.extend(make_transitions(10))
    rb.sample()
    return rb


def _set(*path_and_value):
    *path, value = path_and_value

    def edit(state):
        for key in path[:-1]:
            state = state[key]
        if value is _DELETE:
            del state[path[-1]]
        else:
            state[path[-1]] = value(state[path[-1]]) if callable(value) else value

    return edit


_DELETE = object()
_NAN = float("nan")


@pytest.mark.parametrize(
    ("make", "edit", "message"),
    [
        (_prioritized, _set("sampler", "priorities", lambda p: p.fill_(_NAN)), r"'sampler.priorities' holds nan"),
        (_prioritized, _set("sampler", "priorities", lambda p: -p), r"'sampler.priorities' holds -"),
        (_prioritized, _set("sampler", "max_priority", _NAN), r"'sampler.max_priority' must be a finite number"),
        (_prioritized, _set("sampler", "beta", -1.0), r"'sampler.beta' is -1.0, below its minimum"),
        (_without_replacement, _set("sampler", "perm", lambda p: p + 1), r"'sampler.perm' holds position 10, outside"),
        (_without_replacement, _set("sampler", "perm", lambda p: p * 0), r"'sampler.perm' holds position 0 more than"),
        (_without_replacement, _set("sampler", "pos", 10), r"'sampler.pos' is 10, outside the valid range \[0, 9\]"),
        (_without_replacement, _set("writer", "cursor", 50), r"'writer.cursor' is 50, outside the valid range \[0, 19"),
        (_without_replacement, _set("writer", "write_count", _DELETE), r"'writer.write_count' is missing"),
        (_without_replacement, _set("storage", "len", 30), r"'storage.len' is 30, outside the valid range \[0, 20\]"),
        (_without_replacement, _set("storage", "len", 18), r"'storage.leaves\[0\]' has shape \[15, 3\], expected \[18"),
        (_without_replacement, _set("storage", "last_cursor", 16), r"'storage.last_cursor' is 16, outside"),
        (_without_replacement, _set("storage", "layout", None), r"'storage.layout' is missing for a storage holding"),
        (_without_replacement, _set("rng", torch.zeros(100, dtype=torch.uint8)), r"'rng' is not a state of a cpu"),
    ],
)
def test_a_damaged_state_is_refused_before_anything_changes(make_transitions, checkpoint_kit, make, edit, message):
    source = make(make_transitions)
    source.extend(make_transitions(5, start=100))
    state = checkpoint_kit.snapshot(source)
    edit(state)
    rb = make(make_transitions)  # holds other data than the state
    before = checkpoint_kit.snapshot(rb)
    with pytest.raises(ValueError, match=message):
        rb.load_state_dict(state)
    assert checkpoint_kit.differences(before, checkpoint_kit.snapshot(rb)) == []


def test_a_bad_generator_state_leaves_the_storage_as_it_was(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(200), generator=torch.Generator().manual_seed(0))
    rb.extend(torch.arange(4.0))
    big = ReplayBuffer(storage=LazyTensorStorage(200), generator=torch.Generator().manual_seed(0))
    big.extend(torch.arange(100.0))
    state = big.state_dict()
    state["rng"] = torch.zeros(100, dtype=torch.uint8)
    with pytest.raises(ValueError, match="rng"):
        rb.load_state_dict(state)
    assert len(rb) == 4  # was 100: the storage was replaced before the generator failed


def test_a_damaged_checkpoint_names_its_file_and_field(tmp_path, make_transitions, checkpoint_kit):
    rb = _prioritized(make_transitions)
    rb.dumps(tmp_path)
    path = tmp_path / "replay_buffer" / "replay_buffer.json"
    document = __import__("json").loads(path.read_text())
    stored = document["state"]["sampler"]["priorities"]["__tensor__"]
    priorities = torch.full((20,), _NAN, dtype=torch.float64)
    (path.parent / stored).write_bytes(priorities.numpy().tobytes())
    checkpoint_kit.reseal(path)  # as a writer with a bug would have saved it: the checksums match
    other = _prioritized(make_transitions)
    before = checkpoint_kit.snapshot(other)
    with pytest.raises(ValueError, match=rf"'sampler.priorities' holds nan .*\(stored in {stored}\).*{path}"):
        other.loads(tmp_path)
    assert checkpoint_kit.differences(before, checkpoint_kit.snapshot(other)) == []
