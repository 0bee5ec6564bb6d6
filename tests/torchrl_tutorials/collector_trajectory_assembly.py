"""TorchRL's "Collectors Deep Dive: Trajectory Assembly" tutorial, on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``: a random CartPole collector's fixed-size batch, ``split_trajectories`` (padded,
with its mask, and nested), a collector yielding whole episodes (``trajs_per_batch``) and
a replay buffer holding them. The tutorial is already small: ``scale`` is not used. Run by
tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import warnings

import torch

# the tutorial imports SyncDataCollector, which TorchRL 0.14.1 calls Collector: its spelling
from tdrl.collectors import Collector
from tdrl.collectors.utils import split_trajectories
from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.envs import GymEnv
from tdrl.modules import RandomPolicy


def main():
    torch.manual_seed(0)
    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    policy = RandomPolicy(env.action_spec)
    collector = Collector(env, policy, frames_per_batch=200, total_frames=-1)
    for data in collector:
        print(data)
        break
    print(data["collector", "traj_ids"])
    print(data["next", "done"].squeeze(-1))
    n_episodes = data["next", "done"].sum().item()
    print(f"This batch of {data.shape[0]} frames contains {n_episodes} episodes.")
    assert data.shape == (200,)

    split_data = split_trajectories(data)
    print(split_data)
    print(f"Shape: {split_data.shape}  ->  (num_trajectories, max_episode_length)")
    print(split_data["collector", "mask"])
    assert split_data["collector", "mask"].sum().item() == 200, "the mask must cover every collected step"
    print("done shape:     ", split_data["next", "done"].shape)
    print("truncated shape:", split_data["next", "truncated"].shape)

    padded = split_trajectories(data, as_nested=False)
    nested = split_trajectories(data, as_nested=True)
    print(f"Padded shape : {padded.shape}")
    print(f"Nested result: {type(nested).__name__}, batch_size={nested.batch_size}")
    assert nested.batch_size[0] == padded.shape[0]

    collector_trajs = Collector(env, policy, frames_per_batch=200, total_frames=-1, trajs_per_batch=5)
    for traj_data in collector_trajs:
        print(traj_data)
        break
    print(f"Shape: {traj_data.shape}  ->  (trajs_per_batch, max_episode_length)")
    print(traj_data["collector", "mask"])
    assert traj_data.shape[0] == 5
    assert traj_data["collector", "mask"][:, 0].all(), "every episode starts at step 0"

    rb = ReplayBuffer(storage=LazyTensorStorage(max_size=10_000))
    rb.extend(traj_data)
    print(f"Buffer length after one batch: {len(rb)}")
    sample = rb.sample(batch_size=3)
    print(sample)
    assert len(rb) == 5
    assert sample.shape[0] == 3

    collector.shutdown()
    collector_trajs.shutdown()


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    main()
