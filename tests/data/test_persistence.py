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
    assert {name.rsplit(".", 1)[-1] for name in os.listdir(tmp_path / "ckpt")} == {"json", "bin"}

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
    victim = next(p for p in sorted(tmp_path.iterdir()) if p.suffix == ".bin" and p.stat().st_size > 8)
    with open(victim, "r+b") as file:
        file.truncate(victim.stat().st_size - 8)
    other = ReplayBuffer(storage=LazyTensorStorage(20))
    with pytest.raises(ValueError, match="corrupt or incomplete"):
        other.loads(tmp_path)
    assert len(other) == 0
    with pytest.raises(FileNotFoundError, match="dumps"):
        other.loads(tmp_path / "nothing")
    (tmp_path / "replay_buffer.json").write_text('{"format": "something else"}')
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
