"""RandomCropTensorDict (random windows of sampled trajectories) and MultiStepTransform (n-step transitions
written across successive extends)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.data.postprocs import MultiStep
from tdrl.envs import Compose, MultiStepTransform, RandomCropTensorDict, StepCounter, TransformedEnv
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformTestEnv


def _trajectories(count, steps):
    step = torch.arange(steps).expand(count, steps)
    return TensorDict({"step": step, "traj": torch.arange(count).unsqueeze(-1).expand(count, steps)}, [count, steps])


def test_windows_are_contiguous_inside_one_trajectory_and_every_start_is_drawn():
    crop = RandomCropTensorDict(3)
    torch.manual_seed(0)
    starts = set()
    for _ in range(200):
        out = crop(_trajectories(4, 6))
        assert out.batch_size == (4, 3)
        assert (out["step"].diff(dim=-1) == 1).all()
        assert (out["traj"] == torch.arange(4).unsqueeze(-1)).all()
        starts.update(out["step"][:, 0].tolist())
    assert starts == {0, 1, 2, 3}  # the last start (6 - 3) too
    assert crop(_trajectories(2, 3))["step"].tolist() == [[0, 1, 2], [0, 1, 2]]


def test_the_mask_keeps_windows_among_valid_steps():
    data = _trajectories(3, 8)
    data["mask"] = data["step"] < torch.tensor([[4], [8], [5]])
    torch.manual_seed(0)
    for _ in range(100):
        out = RandomCropTensorDict(4, mask_key="mask")(data)
        assert out["mask"].all()


def test_sample_dim_selects_the_time_dim():
    data = _trajectories(5, 6).transpose(0, 1)  # time first: [6, 5]
    out = RandomCropTensorDict(2, sample_dim=0)(data)
    assert out.batch_size == (2, 5)
    assert (out["step"].diff(dim=0) == 1).all()
    assert (out["traj"] == torch.arange(5)).all()


def test_in_a_buffer_of_trajectories():
    rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=RandomCropTensorDict(4), batch_size=3)
    rb.extend(_trajectories(5, 9))
    assert rb.sample()["step"].shape == (3, 4)


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="sub_seq_len"):
        RandomCropTensorDict(0)
    with pytest.raises(ValueError, match="lower sub_seq_len"):
        RandomCropTensorDict(5)(_trajectories(2, 4))
    with pytest.raises(TypeError, match="replay-buffer transform"):
        TransformedEnv(CountingEnv(), RandomCropTensorDict(2)).reset()


# --- MultiStepTransform -----------------------------------------------------------------------
def _collector_batches(count, frames, batch_size=()):
    """Successive batches of one collector: episodes end (terminated or truncated) anywhere, seams included."""
    env = TransformedEnv(TransformTestEnv(batch_size=list(batch_size), p_end=0.15), StepCounter(max_steps=5))
    env.set_seed(3)
    collector = SyncDataCollector(env, None, frames_per_batch=frames, total_frames=count * frames)
    batches = [b.clone() for b in collector]
    collector.shutdown()
    return batches


def _assert_same(a, b, skip=()):
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    for key in a.keys(True, True):
        if key in skip:
            continue
        torch.testing.assert_close(a.get(key), b.get(key), rtol=1e-6, atol=1e-6, msg=str(key))


@pytest.mark.parametrize("n_steps", [1, 3, 4])
def test_multistep_transform_gives_the_seams_their_full_windows(n_steps):
    batches = _collector_batches(6, 7)  # 7 frames a batch: every window of 3 or 4 steps crosses a seam somewhere
    stream = torch.cat(batches, 0)
    assert stream["next", "terminated"].any()
    assert stream["next", "truncated"].any()
    rb = ReplayBuffer(storage=LazyTensorStorage(100), transform=MultiStepTransform(n_steps, 0.9))
    for batch in batches:
        rb.extend(batch)
    # every step but the n held back, as MultiStep computes them on the whole stream at once
    whole = MultiStep(0.9, n_steps)(stream)
    _assert_same(rb[:], whole[: stream.shape[0] - n_steps])
    # the post-processor MultiStep has no memory across batches: the last steps of each batch get shorter windows
    if n_steps > 1:
        stateless = ReplayBuffer(storage=LazyTensorStorage(100), transform=MultiStep(0.9, n_steps))
        for batch in batches:
            stateless.extend(batch)
        shorter = stateless[:]["steps_to_next_obs"][: stream.shape[0] - n_steps]
        full = whole["steps_to_next_obs"][: stream.shape[0] - n_steps]
        assert (shorter <= full).all()
        assert (shorter < full).any()


def test_multistep_transform_holds_short_pieces_and_takes_a_new_n_steps_at_the_next_extend():
    batches = _collector_batches(4, 2)
    transform = MultiStepTransform(3, 0.8)
    rb = ReplayBuffer(storage=LazyTensorStorage(100), transform=transform)
    assert len(rb.extend(batches[0])) == 0  # 2 steps, 3 held: nothing complete yet
    assert len(rb.extend(batches[1])) == 1
    transform.n_steps = 2
    assert len(rb.extend(batches[2])) == 3  # 3 held + 2 new, 2 held back now
    assert len(rb.extend(batches[3])) == 2
    stream = torch.cat(batches, 0)
    assert rb[:]["observation"].tolist() == stream["observation"][:6].tolist()
    _assert_same(rb[:][1:], MultiStep(0.8, 2)(stream[1:])[:5])  # the windows of step 0 had 3 steps


def test_multistep_transform_on_batched_pieces_and_its_errors():
    batches = _collector_batches(3, 12, batch_size=(2,))
    transform = MultiStepTransform(2, 0.9)
    outs = [transform.inv(b) for b in batches]
    assert [o.shape for o in outs] == [(2, 4), (2, 6), (2, 6)]
    stream = torch.cat(batches, -1)
    _assert_same(torch.cat(outs, -1), MultiStep(0.9, 2)(stream)[:, :-2])
    with pytest.raises(
        ValueError, match=r"batch_size \[3, 6\] but the 2 steps held from the previous extend have \[2, 2\]"
    ):
        transform.inv(torch.cat([batches[0]] * 2, 0)[:3])
    with pytest.raises(ValueError, match="time along the last batch dim"):
        transform.inv(batches[0][0, 0])
    with pytest.raises(ValueError, match="replay buffer"):
        TransformedEnv(CountingEnv(), Compose(MultiStepTransform(2, 0.9)))
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        MultiStepTransform(0, 0.9)
    with pytest.raises(ValueError, match="gamma must lie in"):
        MultiStepTransform(2, 1.5)


@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_multistep_transform_writes_what_torchrl_writes(n_steps):
    torchrl_transforms = pytest.importorskip("torchrl.envs.transforms")
    batches = _collector_batches(5, 6)
    ours, theirs = MultiStepTransform(n_steps, 0.95), torchrl_transforms.MultiStepTransform(n_steps, 0.95)
    for batch in batches:
        mine, their = ours.inv(batch.clone()), theirs.inv(batch.clone())
        if their is None:  # TorchRL writes nothing; tdrl writes an empty piece
            assert mine.shape[-1] == 0
            continue
        # tdrl's documented difference: ("next", "terminated") is that of the last step summed
        _assert_same(mine, their, skip=[("next", "terminated")])
