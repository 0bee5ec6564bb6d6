"""TorchRL's "Getting started with model optimization" (getting-started-2), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import torch


def main(scale: float = 1.0):
    from tdrl.envs import GymEnv

    env = GymEnv("Pendulum-v1")
    from tdrl.modules import MLP, Actor, ValueOperator
    from tdrl.objectives import DDPGLoss

    obs_size = env.observation_spec["observation"].shape[-1]
    act_size = env.action_spec.shape[-1]
    actor = Actor(MLP(in_features=obs_size, out_features=act_size, num_cells=[32, 32]))
    critic = ValueOperator(
        MLP(in_features=obs_size + act_size, out_features=1, num_cells=[32, 32]), in_keys=["observation", "action"]
    )
    loss_fn = DDPGLoss(actor_network=actor, value_network=critic)
    batch = env.rollout(max_steps=max(2, int(100 * scale)), policy=actor)
    losses = loss_fn(batch)
    total = 0
    for name, value in losses.items():
        if name.startswith("loss_"):
            total += value
    from torch.optim import Adam

    optim = Adam(loss_fn.parameters())
    total.backward()
    optim.step()
    optim.zero_grad()
    from tdrl.objectives import SoftUpdate

    updater = SoftUpdate(loss_fn, eps=0.99)
    updater.step()
    assert torch.isfinite(total)


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
