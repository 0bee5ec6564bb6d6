"""TorchRL's "Get started with data collection and storage" (getting-started-3), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import torch


def main(scale: float = 1.0):
    torch.manual_seed(0)
    from tdrl.collectors import RandomPolicy, SyncDataCollector
    from tdrl.envs import GymEnv

    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    policy = RandomPolicy(env.action_spec)
    collector = SyncDataCollector(env, policy, frames_per_batch=200, total_frames=-1)
    for data in collector:
        print(data)
        break
    print(data["collector", "traj_ids"])
    from tdrl.data.replay_buffers import LazyMemmapStorage, ReplayBuffer

    buffer = ReplayBuffer(storage=LazyMemmapStorage(max_size=1000))
    buffer.extend(data)
    assert len(buffer) == collector.frames_per_batch
    sample = buffer.sample(batch_size=30)
    assert sample.shape == (30,)
    collector.shutdown()


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
