"""TorchRL's "Get started with your own first training loop" (getting-started-5: DQN on CartPole), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``, with the random warm-up and the number of batches cut by ``scale``; it runs in
a scratch directory. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import torch


def main(scale: float = 1.0):
    torch.manual_seed(0)
    import time

    from tdrl.envs import GymEnv, StepCounter, TransformedEnv

    env = TransformedEnv(GymEnv("CartPole-v1"), StepCounter())
    env.set_seed(0)
    from tensordict.nn import TensorDictModule as Mod
    from tensordict.nn import TensorDictSequential as Seq

    from tdrl.modules import MLP, EGreedyModule, QValueModule

    value_mlp = MLP(out_features=env.action_spec.shape[-1], num_cells=[64, 64])
    value_net = Mod(value_mlp, in_keys=["observation"], out_keys=["action_value"])
    policy = Seq(value_net, QValueModule(spec=env.action_spec))
    exploration_module = EGreedyModule(env.action_spec, annealing_num_steps=100_000, eps_init=0.5)
    Seq(policy, exploration_module)

    from tdrl.collectors import SyncDataCollector
    from tdrl.data import LazyTensorStorage, ReplayBuffer

    warmup = max(100, int(5000 * scale))
    frames_per_batch = 100
    optim_steps = 10
    collector = SyncDataCollector(
        env, policy, frames_per_batch=frames_per_batch, total_frames=-1, init_random_frames=warmup
    )
    rb = ReplayBuffer(storage=LazyTensorStorage(100_000))
    from torch.optim import Adam

    from tdrl.objectives import DQNLoss, SoftUpdate

    loss = DQNLoss(value_network=policy, action_space=env.action_spec, delay_value=True)
    optim = Adam(loss.parameters(), lr=0.02)
    updater = SoftUpdate(loss, eps=0.99)

    from tdrl._utils import logger as tdrl_logger
    from tdrl.record import CSVLogger, VideoRecorder

    logger = CSVLogger(exp_name="dqn", log_dir="./training_loop", video_format="mp4")
    video_recorder = VideoRecorder(logger, tag="video")
    record_env = TransformedEnv(GymEnv("CartPole-v1", from_pixels=True, pixels_only=False), video_recorder)

    total_count = 0
    total_episodes = 0
    t0 = time.time()
    max_batches = warmup // frames_per_batch + max(2, int(200 * scale))
    for i, data in enumerate(collector):
        rb.extend(data)
        max_length = rb[:]["next", "step_count"].max()
        if len(rb) > warmup:
            for _ in range(optim_steps):
                sample = rb.sample(128)
                loss_vals = loss(sample)
                loss_vals["loss"].backward()
                optim.step()
                optim.zero_grad()
                exploration_module.step(data.numel())
                updater.step()
                if i % 10:
                    tdrl_logger.info(f"Max num steps: {max_length}, rb length {len(rb)}")
                total_count += data.numel()
                total_episodes += data["next", "done"].sum()
        if max_length > 200 or i + 1 >= max_batches:
            break
    tdrl_logger.info(f"stopped after {total_count} steps, {total_episodes} episodes and in {time.time() - t0}s.")
    collector.shutdown()
    record_env.rollout(max_steps=max(10, int(1000 * scale)), policy=policy)
    video_recorder.dump()


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
