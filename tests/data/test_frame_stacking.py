"""CatFrames as a replay-buffer transform: stacks built at sampling time, per trajectory."""

from __future__ import annotations

import pytest
import torch

from tdrl.data import (
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSampler,
    SliceSamplerWithoutReplacement,
    TensorDictReplayBuffer,
)
from tdrl.envs import CatFrames, Compose, ObservationNorm, TransformedEnv
from tdrl.testing import CountingEnv


def _env_side(steps, transform, max_steps=5):
    """What the env-side transform writes on a rollout, as the reference for sampled stacks."""
    env = TransformedEnv(CountingEnv(max_steps=max_steps), transform)
    return env.rollout(steps, break_when_any_done=False)


def _stored(rollout, *drop):
    return rollout.exclude(*drop, *[("next", k) for k in drop])


@pytest.mark.parametrize("padding", ["same", "constant"])
@pytest.mark.parametrize("sampler_kind", ["slice", "slice_without_replacement"])
def test_sampled_stacks_equal_the_env_side_stacks(padding, sampler_kind):
    def catframes():
        return CatFrames(N=3, dim=-1, in_keys=["observation"], out_keys=["stack"], padding=padding, padding_value=-1.0)

    reference = _env_side(40, catframes(), max_steps=7)
    sampler = (
        SliceSampler(slice_len=4, end_key=("next", "done"))
        if sampler_kind == "slice"
        else SliceSamplerWithoutReplacement(slice_len=4, end_key=("next", "done"))
    )
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=sampler, transform=catframes(), batch_size=8)
    rb.extend(_stored(reference, "stack"))
    torch.manual_seed(0)
    for _ in range(20):
        batch = rb.sample()
        index = batch["index"]
        assert torch.equal(batch["stack"], reference["stack"][index])
        assert torch.equal(batch["next", "stack"], reference["next", "stack"][index])


def test_stacks_follow_trajectories_across_the_ring_wrap():
    # 35 steps in a ring of 21: the oldest kept item (step 14) starts an episode of length 7
    reference = _env_side(35, CatFrames(N=4, dim=-1, in_keys=["observation"], out_keys=["stack"]), max_steps=7)
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(21),
        sampler=SliceSampler(num_slices=2, end_key=("next", "done")),
        transform=CatFrames(N=4, dim=-1, in_keys=["observation"], out_keys=["stack"]),
    )
    for start in range(0, 35, 5):
        rb.extend(_stored(reference[start : start + 5], "stack"))
    order = torch.arange(14, 35)  # the kept steps, oldest first
    torch.manual_seed(1)
    for _ in range(10):
        batch = rb.sample(6)
        step = order[(batch["index"] - 14) % 21]
        assert torch.equal(batch["stack"], reference["stack"][step])
    everything = rb[torch.arange(21)]  # reading by index stacks the same way
    assert torch.equal(everything["stack"], reference["stack"][torch.tensor([*range(21, 35), *range(14, 21)])])


def test_transforms_before_catframes_map_the_earlier_items_too():
    def chain():
        return Compose(
            ObservationNorm(loc=1.0, scale=2.0, in_keys=["observation"], out_keys=["scaled"]),
            CatFrames(N=3, dim=-1, in_keys=["scaled"], out_keys=["stack"]),
        )

    reference = _env_side(30, chain())
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(50), sampler=SliceSampler(slice_len=2, end_key=("next", "done")), transform=chain()
    )
    rb.extend(_stored(reference, "stack", "scaled"))
    batch = rb.sample(10)
    assert torch.equal(batch["stack"], reference["stack"][batch["index"]])


@pytest.mark.parametrize(
    "sampler",
    [RandomSampler(), SamplerWithoutReplacement(), PrioritizedSampler(10, 1.0, 1.0)],
    ids=lambda s: type(s).__name__,
)
def test_a_sampler_blind_to_trajectories_is_refused(sampler):
    with pytest.raises(ValueError, match="SliceSampler"):
        ReplayBuffer(storage=LazyTensorStorage(10), sampler=sampler, transform=CatFrames(N=2, dim=-1))
    rb = ReplayBuffer(storage=LazyTensorStorage(10), sampler=sampler)
    with pytest.raises(ValueError, match=r"CatFrames in a replay buffer .* Fix: pass sampler=SliceSampler"):
        rb.append_transform(Compose(ObservationNorm(loc=0.0, scale=1.0), CatFrames(N=2, dim=-1)))
    assert len(rb.transform) == 0
