"""TorchRL's "Competitive Multi-Agent Reinforcement Learning (DDPG)" tutorial, on tdrl.

Our own program making the tutorial's imports and calls in order (VMAS's simple_tag, two
groups, MADDPG critics, one DDPGLoss per group), ``torchrl`` swapped for ``tdrl``, with the
frames per batch, iterations, optimiser steps and buffer size cut by ``scale``. The closing
render section needs an OpenGL display and a video encoder, so it runs only with
``TUTORIAL_RENDER=1``. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import copy
import os
import tempfile

import torch
from matplotlib import pyplot as plt
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import multiprocessing
from tqdm import tqdm

# the tutorial imports SyncDataCollector, which TorchRL 0.14.1 no longer has: its spelling
from tdrl.collectors import Collector
from tdrl.data import LazyMemmapStorage, RandomSampler, ReplayBuffer
from tdrl.envs import (
    ExplorationType,
    PettingZooEnv,
    RewardSum,
    TransformedEnv,
    VmasEnv,
    check_env_specs,
    set_exploration_type,
)
from tdrl.modules import AdditiveGaussianModule, MultiAgentMLP, ProbabilisticActor, TanhDelta
from tdrl.objectives import DDPGLoss, SoftUpdate, ValueEstimators
from tdrl.record import CSVLogger, PixelRenderTransform, VideoRecorder


def main(scale: float = 1.0):
    seed = 0
    torch.manual_seed(seed)
    is_fork = multiprocessing.get_start_method() == "fork"
    device = torch.device(0) if torch.cuda.is_available() and not is_fork else torch.device("cpu")

    # Sampling
    frames_per_batch = max(200, int(1_000 * scale))  # Number of team frames collected per sampling iteration
    n_iters = max(2, int(10 * scale))  # Number of sampling and training iterations
    total_frames = frames_per_batch * n_iters
    iteration_when_stop_training_evaders = n_iters // 2
    memory_size = min(1_000_000, total_frames)  # The replay buffer of each group can store this many frames
    n_optimiser_steps = max(2, int(100 * scale))  # Number of optimization steps per training iteration
    train_batch_size = 128
    lr = 3e-4
    max_grad_norm = 1.0
    gamma = 0.99
    polyak_tau = 0.005

    max_steps = 100  # Environment steps before done
    n_chasers = 2
    n_evaders = 1
    n_obstacles = 2
    use_vmas = True  # Set this to True for a great performance speedup
    if not use_vmas:
        base_env = PettingZooEnv(
            task="simple_tag_v3",
            parallel=True,
            seed=seed,
            continuous_actions=True,
            num_good=n_evaders,
            num_adversaries=n_chasers,
            num_obstacles=n_obstacles,
            max_cycles=max_steps,
        )
    else:
        num_vmas_envs = frames_per_batch // max_steps
        base_env = VmasEnv(
            scenario="simple_tag",
            num_envs=num_vmas_envs,
            continuous_actions=True,
            max_steps=max_steps,
            device=device,
            seed=seed,
            num_good_agents=n_evaders,
            num_adversaries=n_chasers,
            num_landmarks=n_obstacles,
        )
    print(f"group_map: {base_env.group_map}")
    print("action_spec:", base_env.full_action_spec)
    print("reward_spec:", base_env.full_reward_spec)
    print("done_spec:", base_env.full_done_spec)
    print("observation_spec:", base_env.observation_spec)
    print("action_keys:", base_env.action_keys)
    print("reward_keys:", base_env.reward_keys)
    print("done_keys:", base_env.done_keys)

    env = TransformedEnv(
        base_env, RewardSum(in_keys=base_env.reward_keys, reset_keys=["_reset"] * len(base_env.group_map.keys()))
    )
    check_env_specs(env)
    n_rollout_steps = 5
    rollout = env.rollout(n_rollout_steps)
    print(f"rollout of {n_rollout_steps} steps:", rollout)
    print("Shape of the rollout TensorDict:", rollout.batch_size)

    policy_modules = {}
    for group, agents in env.group_map.items():
        share_parameters_policy = True
        policy_net = MultiAgentMLP(
            n_agent_inputs=env.observation_spec[group, "observation"].shape[-1],
            n_agent_outputs=env.full_action_spec[group, "action"].shape[-1],
            n_agents=len(agents),
            centralised=False,
            share_params=share_parameters_policy,
            device=device,
            depth=2,
            num_cells=256,
            activation_class=torch.nn.Tanh,
        )
        policy_modules[group] = TensorDictModule(
            policy_net, in_keys=[(group, "observation")], out_keys=[(group, "param")]
        )

    policies = {}
    for group in env.group_map:
        policies[group] = ProbabilisticActor(
            module=policy_modules[group],
            spec=env.full_action_spec[group, "action"],
            in_keys=[(group, "param")],
            out_keys=[(group, "action")],
            distribution_class=TanhDelta,
            distribution_kwargs={
                "low": env.full_action_spec[group, "action"].space.low,
                "high": env.full_action_spec[group, "action"].space.high,
            },
            return_log_prob=False,
        )

    exploration_policies = {}
    for group in env.group_map:
        exploration_policies[group] = TensorDictSequential(
            policies[group],
            AdditiveGaussianModule(
                spec=policies[group].spec,
                annealing_num_steps=total_frames // 2,
                action_key=(group, "action"),
                sigma_init=0.9,
                sigma_end=0.1,
            ),
        )

    critics = {}
    for group, agents in env.group_map.items():
        share_parameters_critic = True
        MADDPG = True
        cat_module = TensorDictModule(
            lambda obs, action: torch.cat([obs, action], dim=-1),
            in_keys=[(group, "observation"), (group, "action")],
            out_keys=[(group, "obs_action")],
        )
        critic_module = TensorDictModule(
            module=MultiAgentMLP(
                n_agent_inputs=env.observation_spec[group, "observation"].shape[-1]
                + env.full_action_spec[group, "action"].shape[-1],
                n_agent_outputs=1,
                n_agents=len(agents),
                centralised=MADDPG,
                share_params=share_parameters_critic,
                device=device,
                depth=2,
                num_cells=256,
                activation_class=torch.nn.Tanh,
            ),
            in_keys=[(group, "obs_action")],
            out_keys=[(group, "state_action_value")],
        )
        critics[group] = TensorDictSequential(cat_module, critic_module)

    reset_td = env.reset()
    for group in env.group_map:
        print(f"Running value and policy for group '{group}':", critics[group](policies[group](reset_td)))

    agents_exploration_policy = TensorDictSequential(*exploration_policies.values())
    collector = Collector(
        env, agents_exploration_policy, device=device, frames_per_batch=frames_per_batch, total_frames=total_frames
    )

    replay_buffers = {}
    for group in env.group_map:
        replay_buffer = ReplayBuffer(
            storage=LazyMemmapStorage(memory_size),  # We will store up to memory_size multi-agent transitions
            sampler=RandomSampler(),
            batch_size=train_batch_size,
        )
        if device.type != "cpu":
            replay_buffer.append_transform(lambda x: x.to(device))
        replay_buffers[group] = replay_buffer

    losses = {}
    for group in env.group_map:
        loss_module = DDPGLoss(
            actor_network=policies[group], value_network=critics[group], delay_value=True, loss_function="l2"
        )
        loss_module.set_keys(
            state_action_value=(group, "state_action_value"),
            reward=(group, "reward"),
            done=(group, "done"),
            terminated=(group, "terminated"),
        )
        loss_module.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
        losses[group] = loss_module
    target_updaters = {group: SoftUpdate(loss, tau=polyak_tau) for group, loss in losses.items()}
    optimisers = {
        group: {
            "loss_actor": torch.optim.Adam(loss.actor_network_params.flatten_keys().values(), lr=lr),
            "loss_value": torch.optim.Adam(loss.value_network_params.flatten_keys().values(), lr=lr),
        }
        for group, loss in losses.items()
    }

    def process_batch(batch: TensorDictBase) -> TensorDictBase:
        """Expand the shared done/terminated to each group's shape when the group lacks its own."""
        for group in env.group_map.keys():
            keys = list(batch.keys(True, True))
            group_shape = batch.get_item_shape(group)
            nested_done_key = ("next", group, "done")
            nested_terminated_key = ("next", group, "terminated")
            if nested_done_key not in keys:
                batch.set(nested_done_key, batch.get(("next", "done")).unsqueeze(-1).expand((*group_shape, 1)))
            if nested_terminated_key not in keys:
                batch.set(
                    nested_terminated_key,
                    batch.get(("next", "terminated")).unsqueeze(-1).expand((*group_shape, 1)),
                )
        return batch

    pbar = tqdm(total=n_iters, desc=", ".join([f"episode_reward_mean_{group} = 0" for group in env.group_map.keys()]))
    episode_reward_mean_map: dict = {group: [] for group in env.group_map.keys()}
    train_group_map = copy.deepcopy(env.group_map)
    for iteration, batch in enumerate(collector):
        current_frames = batch.numel()
        batch = process_batch(batch)
        for group in train_group_map.keys():
            group_batch = batch.exclude(
                *[key for _group in env.group_map.keys() if _group != group for key in [_group, ("next", _group)]]
            )
            group_batch = group_batch.reshape(-1)
            replay_buffers[group].extend(group_batch)
            for _ in range(n_optimiser_steps):
                subdata = replay_buffers[group].sample()
                loss_vals = losses[group](subdata)
                for loss_name in ["loss_actor", "loss_value"]:
                    loss = loss_vals[loss_name]
                    optimiser = optimisers[group][loss_name]
                    loss.backward()
                    params = optimiser.param_groups[0]["params"]
                    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                    optimiser.step()
                    optimiser.zero_grad()
                target_updaters[group].step()
            exploration_policies[group][-1].step(current_frames)
        if iteration == iteration_when_stop_training_evaders:
            del train_group_map["agent"]
        for group in env.group_map.keys():
            episode_reward_mean = (
                batch.get(("next", group, "episode_reward"))[batch.get(("next", group, "done"))].mean().item()
            )
            episode_reward_mean_map[group].append(episode_reward_mean)
        pbar.set_description(
            ", ".join(
                [
                    f"episode_reward_mean_{group} = {episode_reward_mean_map[group][-1]}"
                    for group in env.group_map.keys()
                ]
            ),
            refresh=False,
        )
        pbar.update()
    collector.shutdown()
    assert all(len(v) == n_iters for v in episode_reward_mean_map.values())

    _fig, axs = plt.subplots(2, 1)
    for i, group in enumerate(env.group_map.keys()):
        axs[i].plot(episode_reward_mean_map[group], label=f"Episode reward mean {group}")
        axs[i].set_ylabel("Reward")
        axs[i].axvline(x=iteration_when_stop_training_evaders, label="Agent (evader) stop training", color="orange")
        axs[i].legend()
    axs[-1].set_xlabel("Training iterations")
    plt.show()

    if use_vmas and os.environ.get("TUTORIAL_RENDER") == "1":  # needs an OpenGL display and a video encoder
        with tempfile.TemporaryDirectory() as tmpdir:
            video_logger = CSVLogger("vmas_logs", tmpdir, video_format="mp4")
            print("Creating rendering env")
            env_with_render = TransformedEnv(env.base_env, env.transform.clone())
            env_with_render = env_with_render.append_transform(
                PixelRenderTransform(
                    out_keys=["pixels"], preproc=lambda x: x.copy(), as_non_tensor=True, mode="rgb_array"
                )
            )
            env_with_render = env_with_render.append_transform(VideoRecorder(logger=video_logger, tag="vmas_rendered"))
            with set_exploration_type(ExplorationType.DETERMINISTIC):
                print("Rendering rollout...")
                env_with_render.rollout(100, policy=agents_exploration_policy)
            print("Saving the video...")
            env_with_render.transform.dump()
            print("Saved! Saved directory tree:")
            video_logger.print_log_dir()


if __name__ == "__main__":
    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
