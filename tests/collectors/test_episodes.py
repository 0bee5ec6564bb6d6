"""Collection by whole episodes: SyncDataCollector(trajs_per_batch=...)."""

from __future__ import annotations

import pytest
import torch

from tdrl.collectors import SyncDataCollector
from tdrl.envs import SerialEnv, StepCounter, TransformedEnv
from tdrl.testing import CountingEnv


def _episodes_of(batch, traj_format):
    """The episodes of a yielded batch, each as its observations."""
    if traj_format == "padded":
        mask = batch["collector", "mask"]
        return [batch["observation"][i][mask[i]].squeeze(-1) for i in range(batch.shape[0])], batch
    ids = batch["collector", "traj_ids"]
    return [batch["observation"][ids == i].squeeze(-1) for i in ids.unique_consecutive()], batch


def _check_whole(episodes, batch, traj_format):
    for obs in episodes:
        # CountingEnv counts steps since reset: a whole episode starts at 0 and counts up by one
        assert obs[0] == 0
        assert torch.equal(obs, torch.arange(len(obs), dtype=obs.dtype))
    done = batch["next", "done"].squeeze(-1)
    if traj_format == "padded":
        mask = batch["collector", "mask"]
        lengths = mask.sum(-1)
        assert all(bool(done[i, lengths[i] - 1]) for i in range(len(lengths)))  # ends with its done step
        assert int((done & mask).sum()) == len(lengths)  # and no other
        assert not batch["observation"][~mask].any()  # zeros after each episode
    else:
        assert int(done.sum()) == len(episodes)
        assert bool(done[-1])


@pytest.mark.parametrize("traj_format", ["padded", "cat"])
@pytest.mark.parametrize("frames_per_batch", [3, 7, 40])
def test_every_episode_is_whole_whatever_the_batch_size(traj_format, frames_per_batch):
    env = TransformedEnv(CountingEnv(max_steps=100), StepCounter(max_steps=5))  # truncated at 5 steps
    collector = SyncDataCollector(
        env, None, frames_per_batch=frames_per_batch, total_frames=200, trajs_per_batch=3, traj_format=traj_format
    )
    count = 0
    for batch in collector:
        episodes, batch = _episodes_of(batch, traj_format)
        assert len(episodes) == 3
        _check_whole(episodes, batch, traj_format)
        assert all(len(e) == 5 for e in episodes)
        count += 3
    assert count >= 200 // 5 - 3  # what ended within total_frames was handed out
    collector.shutdown()


@pytest.mark.parametrize("traj_format", ["padded", "cat"])
def test_batched_envs_with_episodes_of_different_lengths(traj_format):
    env = SerialEnv(3, [lambda n=n: CountingEnv(max_steps=n) for n in (2, 3, 5)])
    collector = SyncDataCollector(
        env, None, frames_per_batch=6, total_frames=120, trajs_per_batch=4, traj_format=traj_format
    )
    lengths = []
    for batch in collector:
        episodes, batch = _episodes_of(batch, traj_format)
        assert len(episodes) == 4
        _check_whole(episodes, batch, traj_format)
        lengths += [len(e) for e in episodes]
    # each sub-env's episodes (terminated after 2, 3 or 5 steps) arrive whole, none cut
    assert set(lengths) == {2, 3, 5}
    collector.shutdown()


def test_postproc_sees_whole_episodes():
    seen = []

    def postproc(batch):
        seen.append(batch.shape)
        return batch

    collector = SyncDataCollector(
        CountingEnv(max_steps=4), None, frames_per_batch=3, total_frames=30, trajs_per_batch=2, postproc=postproc
    )
    assert [b.shape for b in collector] == seen
    assert seen
    assert all(shape == (2, 4) for shape in seen)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trajs_per_batch": 0}, "trajs_per_batch must be"),
        ({"traj_format": "cat"}, "needs trajs_per_batch"),
        ({"trajs_per_batch": 2, "traj_format": "ragged"}, "traj_format must be one of"),
        ({"trajs_per_batch": 2, "split_trajs": True}, "Pass one of them"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyncDataCollector(CountingEnv(), None, frames_per_batch=4, **kwargs)
