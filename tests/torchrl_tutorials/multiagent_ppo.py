"""TorchRL's "Multi-Agent Reinforcement Learning (PPO)" tutorial (multiagent_ppo, VMAS navigation), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``, with the frames per batch, iterations and epochs cut by ``scale``. Needs vmas.
Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from tqdm import tqdm

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import RewardSum, TransformedEnv
from tdrl.envs.libs.vmas import VmasEnv
from tdrl.envs.utils import check_env_specs
from tdrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from tdrl.objectives import ClipPPOLoss, ValueEstimators


def main(scale: float = 1.0):
    torch.manual_seed(0)
    device = vmas_device = torch.device("cpu")
    max_steps = 100
    frames_per_batch = max(max_steps * 2, int(6_000 * scale) // max_steps * max_steps)
    n_iters = max(1, int(10 * scale))
    total_frames = frames_per_batch * n_iters
    num_epochs = max(1, int(30 * scale))
    minibatch_size = min(400, frames_per_batch)
    lr, max_grad_norm = 3e-4, 1.0
    clip_epsilon, gamma, lmbda, entropy_eps = 0.2, 0.9, 0.9, 1e-4

    env = VmasEnv(
        scenario="navigation",
        num_envs=frames_per_batch // max_steps,
        continuous_actions=True,
        max_steps=max_steps,
        device=vmas_device,
        n_agents=3,
    )
    print(env.full_action_spec, env.full_reward_spec, env.full_done_spec, env.observation_spec)
    print(env.action_keys, env.reward_keys, env.done_keys)
    env = TransformedEnv(env, RewardSum(in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")]))
    check_env_specs(env)
    rollout = env.rollout(5)
    assert rollout.batch_size == (frames_per_batch // max_steps, 5)

    policy_net = torch.nn.Sequential(
        MultiAgentMLP(
            n_agent_inputs=env.observation_spec["agents", "observation"].shape[-1],
            n_agent_outputs=2 * env.action_spec.shape[-1],
            n_agents=env.n_agents,
            centralised=False,
            share_params=True,
            device=device,
            depth=2,
            num_cells=256,
            activation_class=torch.nn.Tanh,
        ),
        NormalParamExtractor(),
    )
    policy_module = TensorDictModule(
        policy_net, in_keys=[("agents", "observation")], out_keys=[("agents", "loc"), ("agents", "scale")]
    )
    # the tutorial reads env.unbatched_action_spec, a name TorchRL 0.14.1 no longer has (it fails
    # there too): its name for the same spec is full_action_spec_unbatched
    unbatched_action_spec = env.full_action_spec_unbatched
    policy = ProbabilisticActor(
        module=policy_module,
        spec=unbatched_action_spec,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={
            "min": unbatched_action_spec[env.action_key].space.low,
            "max": unbatched_action_spec[env.action_key].space.high,
        },
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )
    critic_net = MultiAgentMLP(
        n_agent_inputs=env.observation_spec["agents", "observation"].shape[-1],
        n_agent_outputs=1,
        n_agents=env.n_agents,
        centralised=True,
        share_params=True,
        device=device,
        depth=2,
        num_cells=256,
        activation_class=torch.nn.Tanh,
    )
    critic = TensorDictModule(
        module=critic_net, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")]
    )
    print(policy(env.reset()), critic(env.reset()))

    collector = SyncDataCollector(
        env,
        policy,
        device=vmas_device,
        storing_device=device,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
    )
    replay_buffer = ReplayBuffer(
        storage=LazyTensorStorage(frames_per_batch, device=device),
        sampler=SamplerWithoutReplacement(),
        batch_size=minibatch_size,
    )
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=critic,
        clip_epsilon=clip_epsilon,
        entropy_coef=entropy_eps,
        normalize_advantage=False,
    )
    loss_module.set_keys(
        reward=env.reward_key,
        action=env.action_key,
        sample_log_prob=("agents", "sample_log_prob"),
        value=("agents", "state_value"),
        done=("agents", "done"),
        terminated=("agents", "terminated"),
    )
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=gamma, lmbda=lmbda)
    gae = loss_module.value_estimator
    optim = torch.optim.Adam(loss_module.parameters(), lr)

    pbar = tqdm(total=n_iters, desc="episode_reward_mean = 0")
    episode_reward_mean_list = []
    for tensordict_data in collector:
        reward_shape = tensordict_data.get_item_shape(("next", env.reward_key))
        tensordict_data.set(
            ("next", "agents", "done"), tensordict_data.get(("next", "done")).unsqueeze(-1).expand(reward_shape)
        )
        tensordict_data.set(
            ("next", "agents", "terminated"),
            tensordict_data.get(("next", "terminated")).unsqueeze(-1).expand(reward_shape),
        )
        with torch.no_grad():
            gae(
                tensordict_data,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        replay_buffer.extend(tensordict_data.reshape(-1))
        for _ in range(num_epochs):
            for _ in range(frames_per_batch // minibatch_size):
                subdata = replay_buffer.sample()
                loss_vals = loss_module(subdata)
                loss_value = loss_vals["loss_objective"] + loss_vals["loss_critic"] + loss_vals["loss_entropy"]
                loss_value.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
                optim.step()
                optim.zero_grad()
        collector.update_policy_weights_()
        done = tensordict_data.get(("next", "agents", "done"))
        episode_reward_mean = tensordict_data.get(("next", "agents", "episode_reward"))[done].mean().item()
        episode_reward_mean_list.append(episode_reward_mean)
        pbar.set_description(f"episode_reward_mean = {episode_reward_mean}", refresh=False)
        pbar.update()
    collector.shutdown()
    assert len(episode_reward_mean_list) == n_iters


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
