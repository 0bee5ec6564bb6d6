"""pickle and torch.save round trips of whole replay buffers; extend() with any sequence."""

from __future__ import annotations

import io
import pickle

import numpy as np
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
    SliceSampler,
    SliceSamplerWithoutReplacement,
    TensorDictMaxValueWriter,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)


def _pickle(rb):
    return pickle.loads(pickle.dumps(rb))


def _torch_save(rb):
    buffer = io.BytesIO()
    torch.save(rb, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def _make(kind, tmp_path):
    if kind == "list":
        return ReplayBuffer(storage=ListStorage(300), sampler=SamplerWithoutReplacement(), batch_size=16)
    if kind == "tensor":
        return TensorDictReplayBuffer(storage=LazyTensorStorage(300), sampler=RandomSampler(), batch_size=16)
    if kind == "memmap":
        return TensorDictReplayBuffer(
            storage=LazyMemmapStorage(300, scratch_dir=tmp_path / "scratch"),
            sampler=SliceSamplerWithoutReplacement(slice_len=4, traj_key="episode"),
            batch_size=16,
        )
    if kind == "slices":
        return TensorDictReplayBuffer(
            storage=LazyTensorStorage(300), sampler=SliceSampler(num_slices=4, traj_key="episode"), batch_size=16
        )
    if kind == "prioritized":
        return TensorDictPrioritizedReplayBuffer(alpha=0.7, beta=0.5, storage=LazyTensorStorage(300), batch_size=16)
    if kind == "max_value":
        return TensorDictReplayBuffer(
            storage=LazyTensorStorage(100), writer=TensorDictMaxValueWriter(rank_key=("next", "reward")), batch_size=16
        )
    raise AssertionError(kind)


def _observations(batch):
    return batch["observation"] if isinstance(batch, TensorDict) else torch.stack([x["observation"] for x in batch])


@pytest.mark.parametrize("copy", [_pickle, _torch_save], ids=["pickle", "torch.save"])
@pytest.mark.parametrize("kind", ["list", "tensor", "memmap", "slices", "prioritized", "max_value"])
def test_a_copy_holds_the_content_and_samples_what_the_original_would(tmp_path, make_transitions, kind, copy):
    original = _make(kind, tmp_path)
    for start in range(0, 400, 80):  # the ring wraps
        data = make_transitions(80, start=start, episode_len=10)
        data["next", "reward"] = torch.randn(80, 1)
        original.extend(data)
    for _ in range(3):  # part-way through an epoch
        batch = original.sample()
        if kind == "prioritized":
            batch["td_error"] = torch.rand(len(batch))
            original.update_tensordict_priority(batch)
    restored = copy(original)
    assert type(restored) is type(original)
    assert len(restored) == len(original)
    everything = torch.arange(len(original))
    assert torch.equal(_observations(restored[everything]), _observations(original[everything]))
    assert restored.writer.state_dict()["cursor"] == original.writer.state_dict()["cursor"]
    assert restored.writer.write_count == original.writer.write_count

    def future(rb):
        torch.manual_seed(7)
        return [_observations(rb.sample()) for _ in range(8)]

    for a, b in zip(future(original), future(restored)):
        assert torch.equal(a, b)
    more = make_transitions(5, start=1000, episode_len=10)
    assert torch.equal(original.extend(more.clone()), restored.extend(more.clone()))
    assert torch.equal(_observations(restored[everything]), _observations(original[everything]))


def test_a_copy_is_independent_of_the_original(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(20), batch_size=4)
    rb.extend(make_transitions(10))
    copy = _pickle(rb)
    copy.extend(make_transitions(5, start=100))
    rb.empty()
    assert len(copy) == 15
    assert len(rb) == 0
    # the storage's fast read path (numpy views of its tensors) sees writes made after loading
    copy.storage.set(slice(0, 1), make_transitions(1, start=500))
    assert copy[0]["observation"][0].item() == 500


def test_a_memmap_copy_lives_in_its_own_folder(tmp_path, make_transitions):
    rb = ReplayBuffer(storage=LazyMemmapStorage(50, scratch_dir=tmp_path / "scratch"), batch_size=4)
    rb.extend(make_transitions(10))
    copy = _torch_save(rb)
    assert copy.storage.scratch_dir != rb.storage.scratch_dir
    copy.extend(make_transitions(3, start=100))
    assert len(rb) == 10
    assert len(copy) == 13
    assert torch.equal(copy[torch.arange(10)]["observation"], rb[torch.arange(10)]["observation"])


def test_prefetch_settings_and_prefetched_batches_travel(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(), batch_size=10, prefetch=3)
    rb.extend(make_transitions(100))
    torch.manual_seed(0)
    seen = [rb.sample()["observation"][:, 0]]  # three more are drawn in the background
    copy = _pickle(rb)
    assert copy._prefetch_cap == 3
    assert copy.batch_size == 10
    rest = [copy.sample()["observation"][:, 0] for _ in range(9)]
    assert copy._last_ran_out  # the epoch ended after exactly ten batches
    # no item is skipped or repeated: the batches prefetched before pickling were handed out
    assert sorted(torch.cat(seen + rest).tolist()) == list(range(100))
    assert copy._executor is not None  # prefetching resumed with a new thread


def test_the_lock_is_rebuilt(make_transitions):
    rb = _pickle(ReplayBuffer(storage=LazyTensorStorage(10), batch_size=2))
    with rb._lock:  # a re-entrant lock, like the original's
        rb.extend(make_transitions(3))
        assert rb.sample().batch_size == (2,)


def test_generator_travels_and_stays_shared_with_the_sampler(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(50), generator=torch.Generator().manual_seed(3), batch_size=5)
    rb.extend(make_transitions(50))
    copy = _torch_save(rb)
    assert copy.sampler._rng is copy._rng
    for _ in range(3):
        assert torch.equal(rb.sample()["observation"], copy.sample()["observation"])


def test_prioritized_sampler_state_travels(make_transitions):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8), sampler=PrioritizedSampler(8, 1.0, 1.0, eps=0.0))
    rb.extend(make_transitions(4))
    rb.update_priority(torch.arange(4), torch.tensor([0.0, 0.0, 3.0, 0.0]))
    copy = _pickle(rb)
    assert copy.sample(6)["observation"][:, 0].tolist() == [2.0] * 6


# ---------------------------------------------------------------------------------------
# extend() with any sequence


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (range(3), [0, 1, 2]),
        ((1, "two", None), [1, "two", None]),
        ([{"a": 1}, [2], "x"], [{"a": 1}, [2], "x"]),
        ({5}, [5]),
    ],
    ids=["range", "tuple", "objects", "set"],
)
def test_a_list_storage_extends_with_any_sequence(data, expected):
    rb = ReplayBuffer()
    assert rb.extend(data).tolist() == list(range(len(expected)))
    assert [rb[i] for i in range(len(rb))] == expected


def test_a_list_storage_keeps_the_rows_of_a_numpy_array():
    rb = ReplayBuffer()
    rb.extend(np.arange(6).reshape(3, 2))
    assert [rb[i].tolist() for i in range(3)] == [[0, 1], [2, 3], [4, 5]]


def test_a_list_of_tensors_or_tensordicts_is_one_batch_everywhere():
    items = [TensorDict({"a": torch.tensor(float(i))}) for i in range(4)]
    for rb in (ReplayBuffer(), ReplayBuffer(storage=LazyTensorStorage(10)), TensorDictReplayBuffer()):
        assert rb.extend(items).tolist() == [0, 1, 2, 3]
        assert sorted(rb.sample(20)["a"].unique().tolist()) == [0.0, 1.0, 2.0, 3.0]
    tensors = ReplayBuffer(storage=LazyTensorStorage(10))
    tensors.extend((torch.ones(2), torch.zeros(2)))
    assert tensors[torch.arange(2)].tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_a_list_storage_longer_than_its_capacity_keeps_the_newest():
    rb = ReplayBuffer(storage=ListStorage(3))
    rb.extend(range(5))
    assert sorted(rb[i] for i in range(3)) == [2, 3, 4]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("abc", "got str. For one item, use add"),
        ({"a": 1}, "got dict. For one item, use add"),
        ((x for x in range(3)), r"got generator. Pass list\(data\)"),
        (np.float32(1.0), "got float32"),
    ],
)
def test_what_is_not_a_batch_is_refused_with_the_fix(data, match):
    rb = ReplayBuffer()
    with pytest.raises(TypeError, match=match):
        rb.extend(data)
    assert len(rb) == 0


def test_a_tensor_storage_refuses_a_sequence_of_objects():
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    with pytest.raises(TypeError, match="use a ListStorage"):
        rb.extend([1, 2])
    with pytest.raises(ValueError, match="cannot be stacked"):
        rb.extend([torch.ones(2), torch.ones(3)])
    assert len(rb) == 0
