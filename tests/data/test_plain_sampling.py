"""A plain ReplayBuffer samples with one draw and one gather: the general path's batch, only where it applies."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    TensorDictReplayBuffer,
    TensorStorage,
)

N = 50


def transitions(n: int = N) -> TensorDict:
    g = torch.Generator().manual_seed(3)
    return TensorDict(
        {
            "observation": torch.randn(n, 4, generator=g),
            "action": torch.randint(2, (n, 2), generator=g),
            "done": torch.rand(n, 1, generator=g) < 0.1,
            "next": {"observation": torch.randn(n, 4, generator=g), "reward": torch.randn(n, 1, generator=g)},
            "collector": {"traj_ids": torch.arange(n)},
        },
        [n],
    )


STORAGES = {
    "lazy": lambda: LazyTensorStorage(100),
    "given": lambda: TensorStorage(transitions(100).zero_()),
}


def general(buffer: ReplayBuffer) -> ReplayBuffer:
    buffer._plain = False  # the general path, for comparison
    return buffer


@pytest.fixture
def sample_calls(monkeypatch):
    """Counts the calls of the general path's ``_sample`` (patched before the buffers are built)."""
    calls = []
    original = ReplayBuffer._sample
    monkeypatch.setattr(ReplayBuffer, "_sample", lambda self, *a: calls.append(a) or original(self, *a))
    return calls


@pytest.mark.filterwarnings(r"ignore:sample\(5\) overrides")
@pytest.mark.parametrize("storage", sorted(STORAGES))
@pytest.mark.parametrize("seeded", [True, False])
def test_the_plain_sample_equals_the_general_paths(storage, seeded):
    buffers = []
    for plain in (True, False):
        generator = torch.Generator().manual_seed(7) if seeded else None
        buffer = ReplayBuffer(storage=STORAGES[storage](), batch_size=16, generator=generator)
        buffer.extend(transitions())
        buffers.append(buffer if plain else general(buffer))
    assert buffers[0]._plain
    assert not buffers[1]._plain
    for batch_size in (None, 16, 5):
        drawn = []
        for buffer in buffers:
            if not seeded:
                torch.manual_seed(11)
            drawn.append(buffer.sample(batch_size, return_info=True))
        (fast, fast_info), (slow, slow_info) = drawn
        assert fast_info.keys() == slow_info.keys() == {"index"}
        assert torch.equal(fast_info["index"], slow_info["index"])
        assert fast.batch_size == slow.batch_size
        assert fast.device == slow.device
        assert list(fast.keys(True, True)) == list(slow.keys(True, True))
        for key, value in slow.items(True, True):
            assert fast[key].dtype == value.dtype
            assert fast[key].is_contiguous()
            assert torch.equal(fast[key], value)
        assert torch.equal(fast["observation"], buffers[1][fast_info["index"]]["observation"])
    if seeded:  # the generator moved by the same draws
        assert torch.equal(buffers[0]._rng.get_state(), buffers[1]._rng.get_state())


def test_a_plain_tensor_buffer_and_a_sample_are_fresh_copies(sample_calls):
    buffer = ReplayBuffer(storage=LazyTensorStorage(10), batch_size=4, generator=torch.Generator().manual_seed(0))
    buffer.extend(torch.arange(8.0))
    batch = buffer.sample()
    assert sample_calls == []
    assert batch.shape == (4,)
    batch.fill_(-1)  # writing into a sample leaves the storage alone
    assert torch.equal(buffer[torch.arange(8)], torch.arange(8.0))


def test_the_plain_path_is_taken_and_bypassed(sample_calls):
    buffer = ReplayBuffer(storage=LazyTensorStorage(100), batch_size=8)
    with pytest.raises(RuntimeError, match="empty"):  # the general path's message
        buffer.sample()
    sample_calls.clear()
    buffer.extend(transitions())
    buffer.sample()
    assert sample_calls == []
    buffer.append_transform(lambda data: data.set("seen", torch.ones(data.shape[0])))
    assert "seen" in buffer.sample().keys()
    assert len(sample_calls) == 1  # a transform: the general path
    del buffer.transform._items[:]
    buffer.sample()
    assert len(sample_calls) == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReplayBuffer(storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(), batch_size=8),
        lambda: ReplayBuffer(
            storage=LazyTensorStorage(100), sampler=PrioritizedSampler(100, alpha=0.7, beta=0.5), batch_size=8
        ),
        lambda: ReplayBuffer(storage=ListStorage(100), batch_size=8),
        lambda: ReplayBuffer(storage=LazyTensorStorage(100), batch_size=8, prefetch=2),
        lambda: ReplayBuffer(storage=LazyTensorStorage(100), batch_size=8, collate_fn=lambda data: data),
        lambda: ReplayBuffer(storage=LazyTensorStorage(100), batch_size=8, transform=lambda data: data),
        lambda: TensorDictReplayBuffer(storage=LazyTensorStorage(100), batch_size=8),
    ],
    ids=["without-replacement", "prioritized", "list-storage", "prefetch", "collate", "transform", "td-buffer"],
)
def test_other_components_take_the_general_path(build, sample_calls):
    buffer = build()
    buffer.extend(transitions())
    buffer.sample()
    assert sample_calls, "sampled through the general path"


def test_a_memmap_storage_takes_the_general_path(sample_calls, tmp_path):
    buffer = ReplayBuffer(storage=LazyMemmapStorage(100, scratch_dir=tmp_path), batch_size=8)
    buffer.extend(transitions())
    assert not buffer._plain
    buffer.sample()
    assert sample_calls


def test_a_pickled_plain_buffer_samples_as_the_original():
    import pickle

    buffer = ReplayBuffer(storage=LazyTensorStorage(100), batch_size=8, generator=torch.Generator().manual_seed(1))
    buffer.extend(transitions())
    state = pickle.dumps(buffer)
    copy = pickle.loads(state)
    assert copy._plain
    assert torch.equal(buffer.sample()["observation"], copy.sample()["observation"])
