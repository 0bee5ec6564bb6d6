"""Replay buffers on multi-agent batches: group entries ``("agents", ...)`` keep their agent dims.

A collector batch of :class:`~tdrl.testing.MultiAgentNavigationMock` has root entries of
shape ``[B, T]`` and group entries ``[B, T, n_agents, ...]`` in a nested TensorDict of
batch size ``[B, T, n_agents]``: what TorchRL's multi-agent PPO and DDPG tutorials write to
their buffers after ``reshape(-1)``. Every storage, sampler, checkpoint path and buffer
transform must hand them back with the agent dim (values and nested batch sizes).
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from tdrl.collectors import SyncDataCollector
from tdrl.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSampler,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)
from tdrl.envs.transforms import MultiStepTransform, RandomCropTensorDict
from tdrl.testing import MultiAgentNavigationMock

N_AGENTS, N_ENVS, T = 3, 4, 6
STORAGES = {
    "lazy": lambda tmp_path: LazyTensorStorage(100),
    "memmap": lambda tmp_path: LazyMemmapStorage(100, scratch_dir=tmp_path / "scratch"),
    "list": lambda tmp_path: ListStorage(100),
}


def collector_batch(frames: int = N_ENVS * T, seed: int = 0):
    """One batch of a SyncDataCollector on the mock, as the tutorials collect it: ``[N_ENVS, T]``."""
    env = MultiAgentNavigationMock(n_agents=N_AGENTS, batch_size=[N_ENVS], max_steps=4)
    env.set_seed(seed)
    policy = TensorDictModule(  # each agent steps toward its target
        lambda obs: (4 * obs[..., 2:]).clamp(-1, 1),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "action")],
    )
    collector = SyncDataCollector(env, policy, frames_per_batch=frames, total_frames=frames)
    batch = next(iter(collector))
    collector.shutdown()
    # each frame says where it came from, so a sampled row can be checked against the batch
    batch.set("frame", torch.arange(batch.numel()).reshape(batch.shape))
    return batch


@pytest.fixture
def batch():
    return collector_batch()


def _assert_group_rows(sample, flat, index):
    """``sample`` holds rows ``index`` of ``flat``, agent dims and nested batch sizes included."""
    n = len(index)
    assert sample["agents"].batch_size == (n, N_AGENTS)
    assert sample["next", "agents"].batch_size == (n, N_AGENTS)
    assert sample["agents", "observation"].shape == (n, N_AGENTS, 4)
    assert sample["next", "agents", "reward"].shape == (n, N_AGENTS, 1)
    expected = flat[index]
    for key in sample.keys(include_nested=True, leaves_only=True):
        assert torch.equal(sample.get(key), expected.get(key)), key


def test_the_batch_has_the_tutorials_layout(batch):
    assert batch.batch_size == (N_ENVS, T)
    assert batch["agents"].batch_size == (N_ENVS, T, N_AGENTS)
    assert batch["next", "agents", "reward"].shape == (N_ENVS, T, N_AGENTS, 1)
    assert batch["next", "done"].shape == (N_ENVS, T, 1)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("sampler", [RandomSampler, SamplerWithoutReplacement])
@pytest.mark.parametrize("buffer_class", [ReplayBuffer, TensorDictReplayBuffer])
def test_sample_returns_group_entries_with_their_agent_dims(batch, tmp_path, storage, sampler, buffer_class):
    rb = buffer_class(storage=STORAGES[storage](tmp_path), sampler=sampler(), batch_size=8)
    flat = batch.reshape(-1)
    rb.extend(flat)
    sample = rb.sample()
    _assert_group_rows(sample.exclude("index"), flat, sample["frame"])
    everything = rb[:]
    assert everything["agents"].batch_size == (N_ENVS * T, N_AGENTS)
    assert torch.equal(everything["agents", "observation"], flat["agents", "observation"])


@pytest.mark.parametrize("storage", STORAGES)
def test_an_epoch_without_replacement_visits_every_frame_once(batch, tmp_path, storage):
    rb = ReplayBuffer(storage=STORAGES[storage](tmp_path), sampler=SamplerWithoutReplacement(), batch_size=6)
    rb.extend(batch.reshape(-1))
    seen = []
    for minibatch in rb:  # the PPO tutorial's loop over minibatches
        assert minibatch["agents"].batch_size == (6, N_AGENTS)
        seen.extend(minibatch["frame"].tolist())
    assert sorted(seen) == list(range(N_ENVS * T))


@pytest.mark.parametrize("storage", STORAGES)
def test_trajectories_stored_whole_keep_time_and_agent_dims(batch, tmp_path, storage):
    rb = TensorDictReplayBuffer(storage=STORAGES[storage](tmp_path), batch_size=2)
    rb.extend(batch)  # [N_ENVS, T]: one item per env's trajectory
    sample = rb.sample()
    assert sample["agents"].batch_size == (2, T, N_AGENTS)
    rows = sample["frame"][:, 0] // T
    assert torch.equal(sample["agents", "observation"], batch["agents", "observation"][rows])
    rb.add(batch[0])
    assert rb[len(rb) - 1]["agents"].batch_size == (T, N_AGENTS)


def test_a_write_with_other_nested_batch_dims_is_refused(batch):
    rb = ReplayBuffer(storage=LazyTensorStorage(100))
    rb.extend(batch.reshape(-1))
    flat = batch.reshape(-1)
    agents = TensorDict(flat["agents"].to_dict(), batch_size=flat.batch_size)  # the agent dim dropped
    refused = r"nested batch dims \{\('next', 'agents'\): \[3\]\} but this storage expects \{'agents': \[3\]"
    with pytest.raises(ValueError, match=refused):
        rb.extend(flat.set("agents", agents))


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("priority_key", ["td_error", ("agents", "td_error")])
def test_per_agent_priorities_are_reduced_per_item(batch, tmp_path, storage, priority_key):
    rb = TensorDictPrioritizedReplayBuffer(
        alpha=1.0, beta=1.0, priority_key=priority_key, storage=STORAGES[storage](tmp_path), batch_size=8
    )
    flat = batch.reshape(-1)
    rb.extend(flat)
    every = rb[:]
    every.set("index", torch.arange(len(rb)))
    td_error = torch.full((len(rb), N_AGENTS, 1), 1e-6)
    td_error[5, 2] = 1.0  # one agent of one frame has all the error: the item's priority is the max
    every.set(priority_key, td_error if isinstance(priority_key, tuple) else td_error.squeeze(-1))
    rb.update_tensordict_priority(every)
    sample = rb.sample()
    assert (sample["frame"] == 5).float().mean() > 0.9
    _assert_group_rows(sample.exclude("index", "priority_weight"), flat, sample["frame"])


def test_update_priority_with_one_value_per_agent_says_how_to_reduce(batch):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=PrioritizedSampler(100, 0.7, 0.5))
    rb.extend(batch.reshape(-1))
    sample = rb.sample(6)
    with pytest.raises(ValueError, match=r"shape \[6, 3\].*amax\(-1\).*priority_key"):
        rb.update_priority(sample["index"], torch.rand(6, N_AGENTS))
    rb.update_priority(sample["index"], torch.rand(6, N_AGENTS).amax(-1))  # the fix the message gives


@pytest.mark.parametrize("storage", ["lazy", "memmap"])
def test_slices_follow_trajectories_with_agent_dims(batch, tmp_path, storage):
    rb = TensorDictReplayBuffer(
        storage=STORAGES[storage](tmp_path),
        sampler=SliceSampler(slice_len=2, traj_key=("collector", "traj_ids")),
        batch_size=8,
    )
    flat = batch.reshape(-1)
    rb.extend(flat)
    sample = rb.sample()
    assert sample["agents"].batch_size == (8, N_AGENTS)
    # the sampler marks each slice's last step as truncated (TorchRL's behaviour): compare the rest
    _assert_group_rows(sample.exclude("index", ("next", "done"), ("next", "truncated")), flat, sample["frame"])
    pairs = sample["frame"].reshape(4, 2)
    assert torch.equal(pairs[:, 1] - pairs[:, 0], torch.ones(4, dtype=torch.long))  # consecutive steps
    traj = sample["collector", "traj_ids"].reshape(4, 2)
    assert torch.equal(traj[:, 0], traj[:, 1])


@pytest.mark.parametrize("storage", STORAGES)
def test_state_dict_and_checkpoint_round_trips_keep_agent_dims(batch, tmp_path, storage):
    flat = batch.reshape(-1)
    rb = TensorDictReplayBuffer(storage=STORAGES[storage](tmp_path), batch_size=8)
    rb.extend(flat)
    copy = TensorDictReplayBuffer(storage=STORAGES[storage](tmp_path / "copy"), batch_size=8)
    copy.load_state_dict(rb.state_dict())
    restored = TensorDictReplayBuffer(storage=STORAGES[storage](tmp_path / "restored"), batch_size=8)
    rb.dumps(tmp_path / "checkpoint")
    restored.loads(tmp_path / "checkpoint")
    for other in (copy, restored):
        everything = other[:]
        assert everything["agents"].batch_size == (N_ENVS * T, N_AGENTS)
        assert everything["next", "agents"].batch_size == (N_ENVS * T, N_AGENTS)
        assert (everything == flat).all()
        other.extend(flat[:4])  # and it takes the same data afterwards
        assert other.sample()["agents"].batch_size == (8, N_AGENTS)


def test_multistep_transform_sums_each_agents_rewards(batch):
    gamma = 0.5
    transform = MultiStepTransform(
        2, gamma, reward_keys=[("agents", "reward")], done_keys=["done", "terminated", "truncated"]
    )
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), transform=transform, batch_size=4)
    stream = batch[0]  # one env's steps, time along dim 0
    rb.extend(stream[:3])
    rb.extend(stream[3:])
    written = rb[:]
    assert written["agents"].batch_size == (len(written), N_AGENTS)
    reward = stream["next", "agents", "reward"]
    done = stream["next", "done"].squeeze(-1)
    for row in range(len(written)):
        t = int(written["frame"][row])
        window = 1 if done[t] else 2
        expected = reward[t] + (gamma * reward[t + 1] if window == 2 else 0)
        torch.testing.assert_close(written["next", "agents", "reward"][row], expected)
        assert int(written["steps_to_next_obs"][row]) == window


def test_multistep_transform_without_the_groups_reward_key_names_it(batch):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), transform=MultiStepTransform(2, 0.9))
    with pytest.raises(KeyError, match=r"no 'reward' entry under 'next'.*\('agents', 'reward'\).*reward_keys="):
        rb.extend(batch[0])


def test_random_crop_keeps_agent_dims(batch):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(10), transform=RandomCropTensorDict(3), batch_size=2)
    rb.extend(batch)
    sample = rb.sample()
    assert sample["agents"].batch_size == (2, 3, N_AGENTS)
    start = sample["frame"][:, 0]
    assert torch.equal(sample["frame"], start.unsqueeze(-1) + torch.arange(3))


# ------------------------------------------------------------------ TorchRL 0.14.1, same data in
def _torchrl_buffer(storage, sampler, **kwargs):
    data = pytest.importorskip("torchrl.data")
    storages = {
        "lazy": lambda: data.LazyTensorStorage(100),
        "memmap": lambda: data.LazyMemmapStorage(100),
        "list": lambda: data.ListStorage(100),
    }
    return data.TensorDictReplayBuffer(storage=storages[storage](), sampler=sampler, **kwargs)


@pytest.mark.parametrize("storage", STORAGES)
def test_same_samples_as_torchrl_under_the_same_seed(batch, tmp_path, storage):
    data = pytest.importorskip("torchrl.data")
    flat = batch.reshape(-1)
    for ours_sampler, their_sampler in [
        (RandomSampler(), data.RandomSampler()),
        (SamplerWithoutReplacement(), data.SamplerWithoutReplacement()),
    ]:
        ours = TensorDictReplayBuffer(
            storage=STORAGES[storage](tmp_path / type(ours_sampler).__name__), sampler=ours_sampler
        )
        theirs = _torchrl_buffer(storage, their_sampler)
        ours.extend(flat)
        theirs.extend(flat)
        for draw in range(5):
            torch.manual_seed(draw)
            mine = ours.sample(7)
            torch.manual_seed(draw)
            ref = theirs.sample(7)
            # (the fourth draw without replacement ends the epoch: 3 items, in both)
            assert mine["agents"].batch_size == ref["agents"].batch_size == (len(ref), N_AGENTS)
            assert mine["next", "agents"].batch_size == ref["next", "agents"].batch_size
            assert (mine.exclude("index") == ref.exclude("index")).all()


@pytest.mark.parametrize("priority_key", ["td_error", ("agents", "td_error")])
def test_per_agent_priority_weights_match_torchrl(batch, priority_key):
    data = pytest.importorskip("torchrl.data")
    try:
        data.PrioritizedSampler(8, 0.7, 0.5)
    except RuntimeError as err:  # a TorchRL wheel without its compiled segment trees
        pytest.skip(f"TorchRL's PrioritizedSampler is unavailable here: {err}")
    flat = batch.reshape(-1)
    ours = TensorDictPrioritizedReplayBuffer(
        alpha=0.7, beta=0.5, priority_key=priority_key, storage=LazyTensorStorage(100)
    )
    theirs = data.TensorDictPrioritizedReplayBuffer(
        alpha=0.7, beta=0.5, priority_key=priority_key, storage=data.LazyTensorStorage(100)
    )
    ours.extend(flat)
    theirs.extend(flat)
    error = torch.rand(len(flat), N_AGENTS, 1) + 0.01
    for rb in (ours, theirs):
        every = rb[:]
        every.set("index", torch.arange(len(flat)))
        every.set(priority_key, error if isinstance(priority_key, tuple) else error.squeeze(-1))
        rb.update_tensordict_priority(every)
    mine, ref = ours.sample(64), theirs.sample(64)
    assert mine["agents"].batch_size == ref["agents"].batch_size == (64, N_AGENTS)
    weight_of = {int(i): float(w) for i, w in zip(ref["index"], ref["priority_weight"])}
    shared = [(int(i), float(w)) for i, w in zip(mine["index"], mine["priority_weight"]) if int(i) in weight_of]
    assert len(shared) > 5
    for index, weight in shared:  # the same priority per item: the max over agents, as TorchRL reduces
        assert weight == pytest.approx(weight_of[index], rel=1e-5)


def test_slice_sampler_matches_torchrl_on_group_batches(batch):
    data = pytest.importorskip("torchrl.data")
    flat = batch.reshape(-1)
    key = ("collector", "traj_ids")
    ours = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=SliceSampler(slice_len=2, traj_key=key))
    theirs = _torchrl_buffer("lazy", data.SliceSampler(slice_len=2, traj_key=key))
    ours.extend(flat)
    theirs.extend(flat)
    mine, ref = ours.sample(8), theirs.sample(8)
    assert mine["agents"].batch_size == ref["agents"].batch_size == (8, N_AGENTS)
    for sample in (mine, ref):  # both cut windows of consecutive steps of one trajectory
        frames = sample["frame"].reshape(4, 2)
        assert torch.equal(frames[:, 1] - frames[:, 0], torch.ones(4, dtype=torch.long))


def test_multistep_transform_matches_torchrl_on_group_rewards(batch):
    transforms = pytest.importorskip("torchrl.envs.transforms")
    keys = {"reward_keys": [("agents", "reward")], "done_keys": ["done", "terminated", "truncated"]}
    ours, theirs = MultiStepTransform(2, 0.9, **keys), transforms.MultiStepTransform(2, 0.9, **keys)
    stream = batch[0]
    for piece in (stream[:3], stream[3:]):
        mine, ref = ours.inv(piece.clone()), theirs.inv(piece.clone())
        if ref is None:
            assert mine.shape[-1] == 0
            continue
        assert mine["agents"].batch_size == ref["agents"].batch_size
        for key in (("next", "agents", "reward"), "steps_to_next_obs", ("next", "agents", "observation")):
            torch.testing.assert_close(mine.get(key), ref.get(key))


def test_a_vmas_collector_batch_round_trips_with_its_agent_dims(tmp_path):
    pytest.importorskip("vmas")
    from tdrl.envs.libs.vmas import VmasEnv
    from tdrl.modules import RandomPolicy

    env = VmasEnv("navigation", num_envs=4, continuous_actions=True, max_steps=5, n_agents=2)
    env.set_seed(0)
    collector = SyncDataCollector(env, RandomPolicy(env.full_action_spec), frames_per_batch=24, total_frames=24)
    data = next(iter(collector))
    collector.shutdown()
    assert data["agents"].batch_size == (4, 6, 2)
    flat = data.reshape(-1)
    rb = TensorDictReplayBuffer(
        storage=LazyMemmapStorage(48, scratch_dir=tmp_path / "scratch"),
        sampler=SamplerWithoutReplacement(),
        batch_size=8,
    )
    rb.extend(flat)
    sample = rb.sample()
    assert sample["agents"].batch_size == (8, 2)
    assert sample["next", "agents", "info"].batch_size == (8, 2)  # VMAS's per-agent info, nested one level deeper
    assert torch.equal(sample["agents", "observation"], flat["agents", "observation"][sample["index"]])
    rb.dumps(tmp_path / "checkpoint")
    restored = TensorDictReplayBuffer(
        storage=LazyMemmapStorage(48, scratch_dir=tmp_path / "restored"), sampler=SamplerWithoutReplacement()
    )
    restored.loads(tmp_path / "checkpoint")
    assert (restored[:] == rb[:]).all()
    assert restored[:]["agents"].batch_size == (24, 2)


def test_the_layout_records_group_dims_and_checks_them_when_read_back(batch):
    from tdrl.data.replay_buffers._layout import TensorLayout

    layout = TensorLayout.from_data(batch.reshape(-1), batched=True)
    assert layout.group_dims == {("agents",): torch.Size([N_AGENTS]), ("next", "agents"): torch.Size([N_AGENTS])}
    described = layout.to_json()
    assert TensorLayout.from_json(described) == layout
    older = {k: v for k, v in described.items() if k != "group_dims"}  # written before group dims were kept
    assert TensorLayout.from_json(older).group_dims == {}
    for bad, message in [
        ([[["agents"], [N_AGENTS]], [["agents"], [N_AGENTS]]], "is not a new list of names"),
        ([[["nowhere"], [2]]], "holds no leaf"),
        ([[["agents"], [N_AGENTS + 1]]], r"does not start with the item's and its groups' batch dims \[4\]"),
        ([["agents", [2]]], "is not \\[path, dims\\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            TensorLayout.from_json({**described, "group_dims": bad})


def test_the_mappo_tutorial_loop_refills_a_batch_sized_buffer():
    """TorchRL's multi-agent PPO tutorial: per-agent done flags added, the batch flattened and
    written over the previous one, then minibatches drawn without replacement."""
    frames = N_ENVS * T
    rb = ReplayBuffer(storage=LazyTensorStorage(frames), sampler=SamplerWithoutReplacement(), batch_size=frames // 4)
    for seed in (0, 1):
        data = collector_batch(seed=seed)
        reward_shape = data.get(("next", "agents", "reward")).shape
        data.set(("next", "agents", "done"), data.get(("next", "done")).unsqueeze(-1).expand(reward_shape))
        rb.extend(data.reshape(-1))
        assert len(rb) == frames
        drawn = [rb.sample() for _ in range(4)]
        assert all(d["next", "agents", "done"].shape == (frames // 4, N_AGENTS, 1) for d in drawn)
        every = torch.cat([d["agents", "observation"] for d in drawn])
        order = torch.cat([d["frame"] for d in drawn]).argsort()
        assert torch.equal(every[order], data.reshape(-1)["agents", "observation"])  # this batch, each frame once
