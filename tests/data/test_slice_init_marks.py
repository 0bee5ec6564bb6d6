"""``SliceSampler(init_key=...)``: each sampled slice starts with ``is_init=True`` (TorchRL 0.14.1's marks)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.data.replay_buffers import (
    LazyTensorStorage,
    SliceSampler,
    SliceSamplerWithoutReplacement,
    TensorDictReplayBuffer,
)

# trajectory lengths: with slices of 4 the 3-step one is skipped (strict) or taken whole
_LENGTHS = (6, 3, 10, 5, 8)


def _data(lengths=_LENGTHS, *, init_key="is_init", init_dtype=torch.bool, inner_reset=True) -> TensorDict:
    """Consecutive trajectories; ``init_key`` is True at their starts (and mid-way in the longest one)."""
    episode = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    total = episode.numel()
    start = torch.ones(total, dtype=torch.bool)
    start[1:] = episode[1:] != episode[:-1]
    if inner_reset:  # a reset the trajectory ids do not show: it must stay marked inside a slice
        start[sum(_LENGTHS[:2]) + 5] = True
    done = torch.zeros(total, 1, dtype=torch.bool)
    done[torch.cumsum(torch.tensor(lengths), 0) - 1] = True
    data = TensorDict(
        {"episode": episode, "step": torch.arange(total), "next": {"done": done, "truncated": done.clone()}},
        [total],
    )
    if init_key is not None:
        data.set(init_key, start.unsqueeze(-1).to(init_dtype))
    return data


def _buffer(sampler, data: TensorDict, batch_size: int = 12) -> TensorDictReplayBuffer:
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=sampler, batch_size=batch_size)
    rb.extend(data)
    return rb


def _slice_starts(sample: TensorDict) -> torch.Tensor:
    """``[B]`` bool: the rows that begin a slice (the first row, and each row after a slice's end)."""
    ends = sample["next", "truncated"].reshape(-1)
    starts = torch.zeros_like(ends)
    starts[0] = True
    starts[1:] = ends[:-1]
    return starts


@pytest.mark.parametrize("strict_length", [True, False])
@pytest.mark.parametrize("kind", [SliceSampler, SliceSamplerWithoutReplacement])
def test_slice_starts_are_marked_and_stored_resets_kept(kind, strict_length):
    data = _data()
    rb = _buffer(kind(slice_len=4, traj_key="episode", strict_length=strict_length), data)
    lengths_seen = set()
    for _ in range(30):
        sample = rb.sample()
        marks = sample["is_init"]
        assert marks.shape == (sample.shape[0], 1)
        assert marks.dtype == torch.bool
        starts = _slice_starts(sample)
        lengths_seen.update(torch.diff(torch.cat([starts.nonzero().squeeze(-1), torch.tensor([len(starts)])])).tolist())
        stored = data["is_init"][sample["index"]].squeeze(-1)
        assert torch.equal(marks.squeeze(-1), starts | stored)
    # the storage keeps its own flags: marks go into the sample only
    assert torch.equal(rb.storage[:]["is_init"], data["is_init"])
    assert lengths_seen == ({4} if strict_length else {3, 4})


def test_no_marks_without_the_key_in_the_storage():
    rb = _buffer(SliceSampler(slice_len=4, traj_key="episode"), _data(init_key=None))
    assert "is_init" not in rb.sample().keys()


def test_init_key_none_leaves_the_stored_flags():
    data = _data()
    rb = _buffer(SliceSampler(slice_len=4, traj_key="episode", init_key=None), data)
    for _ in range(10):
        sample = rb.sample()
        assert torch.equal(sample["is_init"], data["is_init"][sample["index"]])


def test_nested_init_key_and_integer_flags():
    key = ("agents", "is_init")
    data = _data(init_key=key, init_dtype=torch.uint8, inner_reset=False)
    rb = _buffer(SliceSampler(num_slices=3, traj_key="episode", init_key=key), data)
    sample = rb.sample()
    marks = sample[key].squeeze(-1)
    assert marks.dtype == torch.uint8
    assert marks.tolist() == [1, 0, 0, 0] * 3


def test_marks_without_truncated_key():
    rb = _buffer(SliceSampler(slice_len=4, traj_key="episode", truncated_key=None), _data(inner_reset=False))
    sample = rb.sample()
    assert ("next", "truncated") in sample.keys(True)  # stored, not written by the sampler
    assert sample["is_init"].squeeze(-1).tolist() == [True, False, False, False] * 3


@pytest.mark.parametrize("bad", [3, ["is_init"], (), ("a", 1)])
def test_bad_init_key_is_refused(bad):
    with pytest.raises(TypeError, match="init_key must be a key"):
        SliceSampler(slice_len=4, init_key=bad)
    with pytest.raises(TypeError, match="init_key must be a key"):
        SliceSamplerWithoutReplacement(slice_len=4, init_key=bad)


def test_floating_stored_flags_are_refused():
    rb = _buffer(SliceSampler(slice_len=4, traj_key="episode"), _data(init_dtype=torch.float32))
    with pytest.raises(ValueError, match=r"'is_init' entry has dtype torch.float32, expected bool.*init_key=None"):
        rb.sample()


def _marks_by_position(rb, rounds: int) -> dict[tuple[int, bool], bool]:
    """``{(storage index, starts a slice): is_init}`` over ``rounds`` samples."""
    seen: dict[tuple[int, bool], bool] = {}
    for _ in range(rounds):
        sample = rb.sample()
        starts = _slice_starts(sample)
        for index, start, mark in zip(
            sample["index"].reshape(-1).tolist(), starts.tolist(), sample["is_init"].reshape(-1).tolist(), strict=True
        ):
            assert seen.setdefault((index, start), mark) == mark
    return seen


@pytest.mark.parametrize("strict_length", [True, False])
@pytest.mark.parametrize("without_replacement", [False, True])
def test_marks_match_torchrl(without_replacement, strict_length):
    """The same stored steps sampled at the same place in a slice get the same marks as in TorchRL 0.14.1."""
    pytest.importorskip("torchrl")
    from torchrl.data import LazyTensorStorage as TLazyTensorStorage
    from torchrl.data import TensorDictReplayBuffer as TTensorDictReplayBuffer
    from torchrl.data.replay_buffers.samplers import SliceSampler as TSliceSampler
    from torchrl.data.replay_buffers.samplers import SliceSamplerWithoutReplacement as TSliceSamplerWR

    data = _data()
    kind, tkind = (
        (SliceSamplerWithoutReplacement, TSliceSamplerWR) if without_replacement else (SliceSampler, TSliceSampler)
    )
    torch.manual_seed(0)
    ours = _marks_by_position(_buffer(kind(slice_len=4, traj_key="episode", strict_length=strict_length), data), 60)
    theirs_rb = TTensorDictReplayBuffer(
        storage=TLazyTensorStorage(100),
        sampler=tkind(slice_len=4, traj_key="episode", strict_length=strict_length),
        batch_size=12,
    )
    theirs_rb.extend(data.clone())
    theirs = _marks_by_position(theirs_rb, 60)
    common = ours.keys() & theirs.keys()
    assert len(common) >= 0.8 * len(theirs)  # both cover (almost) every place a step can take
    assert {key: ours[key] for key in common} == {key: theirs[key] for key in common}
    # and without an is_init entry neither library adds one
    bare = TTensorDictReplayBuffer(storage=TLazyTensorStorage(100), sampler=tkind(slice_len=4, traj_key="episode"))
    bare.extend(_data(init_key=None))
    assert "is_init" not in bare.sample(12).keys()
    assert "is_init" not in _buffer(kind(slice_len=4, traj_key="episode"), _data(init_key=None)).sample().keys()
