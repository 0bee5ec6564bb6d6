# %% [markdown]
# # Off-policy: DQN on CartPole, SAC on a MuJoCo task, and the replay-buffer choices
#
# An on-policy method (PPO, REINFORCE) learns from the batch it just collected and throws it
# away. An off-policy method keeps every transition in a **replay buffer** and learns from
# random samples of it, many updates per collected frame. What it learns from is then a
# choice you make:
#
# - **uniform** sampling of single transitions (the default);
# - **n-step returns**: each transition carries the discounted sum of the next `n` rewards
#   and the observation `n` steps later, so reward travels back `n` times faster;
# - **prioritized** sampling: transitions with a large TD error come back more often, with
#   importance weights that correct the bias;
# - **frame stacking at sampling time**: the buffer stores single frames and stacks the last
#   few of the same trajectory when it samples, instead of storing every stack.
#
# This notebook trains DQN on `CartPole-v1` with the first three and compares their learning
# curves, shows the fourth, then trains SAC on `InvertedPendulum-v5` (MuJoCo). Every import
# is TorchRL's name at TorchRL's path.

# %%
import os

import matplotlib.pyplot as plt
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data.postprocs import MultiStep
from tdrl.data.replay_buffers import (
    LazyTensorStorage,
    SliceSampler,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)
from tdrl.envs import CatFrames, DoubleToFloat, TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import MLP, EGreedyModule, ProbabilisticActor, QValueActor, TanhNormal, ValueOperator
from tdrl.objectives import DQNLoss, HardUpdate, SACLoss, SoftUpdate

torch.manual_seed(0)
frames = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 40_000))  # DQN frames per variant; SAC gets half


def evaluate(env, policy, episodes=3, max_steps=500):
    """Mean return of a few episodes with the greedy (deterministic) action."""
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        return sum(env.rollout(max_steps, policy)["next", "reward"].sum().item() for _ in range(episodes)) / episodes


# %% [markdown]
# ## DQN
#
# The Q-network maps an observation to one value per action; `QValueActor` turns that into
# an action (the argmax) and `EGreedyModule` replaces it by a random one with probability
# epsilon, annealed from 1 to 0.04 by `explore.step(frames)`. `DQNLoss` regresses
# `Q(s, a)` on the TD(0) target `r + gamma * max_a' Q_target(s', a')` from a copy of the
# network, which `HardUpdate` refreshes before each batch of updates.
#
# One function trains it with each buffer choice:
#
# - `"n-step"` adds `MultiStep(gamma, n_steps=3)` as the collector's `postproc`: it rewrites
#   the reward as the 3-step discounted sum, `("next", "observation")` as the observation 3
#   steps later (fewer at an episode end) and writes `steps_to_next_obs`, from which the loss's
#   estimator discounts the bootstrap by `gamma ** steps`;
# - `"prioritized"` uses a `TensorDictPrioritizedReplayBuffer`: its samples carry
#   `priority_weight`, which `DQNLoss` uses to weight each item, and `"td_error"`, which the
#   loss writes into the sample and `update_tensordict_priority` feeds back.


# %%
def train_dqn(kind, total_frames=frames, seed=0):
    torch.manual_seed(seed)
    env = GymEnv("CartPole-v1")
    env.set_seed(seed)
    eval_env = GymEnv("CartPole-v1")
    eval_env.set_seed(seed + 1)
    net = MLP(in_features=4, out_features=2, num_cells=[256, 256], activation_class=nn.ReLU)
    actor = QValueActor(net, in_keys=["observation"], spec=env.action_spec)
    explore = EGreedyModule(env.action_spec, eps_init=1.0, eps_end=0.04, annealing_num_steps=total_frames // 6)
    collector = SyncDataCollector(
        env,
        TensorDictSequential(actor, explore),
        frames_per_batch=256,
        total_frames=total_frames,
        postproc=MultiStep(gamma=0.99, n_steps=3) if kind == "n-step" else None,
    )
    storage = LazyTensorStorage(100_000)
    if kind == "prioritized":
        buffer = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=storage, batch_size=64)
    else:
        buffer = TensorDictReplayBuffer(storage=storage, batch_size=64)
    loss = DQNLoss(actor, action_space=env.action_spec, delay_value=True)
    loss.make_value_estimator(gamma=0.99)
    target = HardUpdate(loss, value_network_update_interval=1)
    optim = torch.optim.Adam(loss.parameters(), lr=2.3e-3)
    curve = []
    for i, batch in enumerate(collector):
        buffer.extend(batch.reshape(-1))
        explore.step(batch.numel())
        if len(buffer) >= min(1000, total_frames // 4):
            target.step()
            for _ in range(128):
                sample = buffer.sample()
                value = loss(sample)["loss"]
                optim.zero_grad()
                value.backward()
                nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
                optim.step()
                if kind == "prioritized":
                    buffer.update_tensordict_priority(sample)
        collector.update_policy_weights_()
        if i % 8 == 7:
            curve.append(((i + 1) * 256, evaluate(eval_env, actor)))
    collector.shutdown()
    return curve


curves = {kind: train_dqn(kind) for kind in ("uniform", "n-step", "prioritized")}
for kind, curve in curves.items():
    print(f"{kind:>11}: eval return {curve[-1][1]:.0f} after {curve[-1][0]} frames")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for kind, curve in curves.items():
    ax.plot([f for f, _ in curve], [r for _, r in curve], label=kind)
ax.set_xlabel("frames")
ax.set_ylabel("eval return (greedy, mean of 3 episodes)")
ax.set_title("DQN on CartPole-v1: three replay-buffer choices")
ax.legend()
plt.show()

# %% [markdown]
# One seed per curve: read them as an illustration, not a ranking. On CartPole all three
# reach the maximum (500) within about 50k frames with these settings; n-step returns
# usually get there first, since a reward reaches the states three steps back in one update.
# `benchmarks/bench_dqn_cartpole.py` measures the uniform variant over five seeds.
#
# ## Frame stacking at sampling time
#
# With pixels, a policy needs a few consecutive frames to see motion. Stacking them in the
# env (the `CatFrames` env transform) stores every frame four times in the buffer. Stacking
# them when sampling stores each frame once: the buffer samples **slices** of consecutive
# steps of one trajectory (`SliceSampler`), and `CatFrames` as the buffer's transform stacks
# each step with the ones before it, padding at a trajectory's start, never across two
# trajectories. Here on CartPole's 4-number observation, for a result you can read:

# %%
env = GymEnv("CartPole-v1")
collector = SyncDataCollector(env, None, frames_per_batch=200, total_frames=200)
data = next(iter(collector))
collector.shutdown()
buffer = TensorDictReplayBuffer(
    storage=LazyTensorStorage(1000),
    sampler=SliceSampler(slice_len=8, traj_key=("collector", "traj_ids")),
    transform=CatFrames(N=4, dim=-1, in_keys=["observation"]),
    batch_size=32,
)
buffer.extend(data)
sample = buffer.sample()
print("stored observation:", tuple(data["observation"].shape), " sampled:", tuple(sample["observation"].shape))

# %% [markdown]
# A sampler that ignores trajectories (the default `RandomSampler`) cannot tell which items
# precede a sampled one; with `CatFrames` as its transform the buffer raises an error that
# says to use a `SliceSampler`, rather than stack unrelated frames.
#
# ## SAC on a MuJoCo task
#
# SAC learns a stochastic actor (a tanh-squashed Normal) and two Q-networks over
# (observation, action). The actor maximizes `min(Q1, Q2) - alpha * log pi`; the critics
# regress on `r + gamma * (min(Q1', Q2') - alpha * log pi(a'|s'))` computed with target
# copies, which `SoftUpdate` moves towards the live networks by `tau` after each update; and
# `alpha` is learned so that the policy's entropy stays near `-dim(action)`
# (`target_entropy="auto"`). `SACLoss` returns the three losses separately; here one
# optimizer takes their sum, since each term reaches only its own parameters.


# %%
def train_sac(total_frames, seed=0):
    torch.manual_seed(seed)
    env = TransformedEnv(GymEnv("InvertedPendulum-v5"), DoubleToFloat())  # MuJoCo observations are float64
    env.set_seed(seed)
    eval_env = TransformedEnv(GymEnv("InvertedPendulum-v5"), DoubleToFloat())
    eval_env.set_seed(seed + 1)
    n_obs, n_act = env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(
                MLP(out_features=2 * n_act, num_cells=[256, 256], activation_class=nn.ReLU), NormalParamExtractor()
            ),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
    )
    qvalue = ValueOperator(
        MLP(in_features=n_obs + n_act, out_features=1, num_cells=[256, 256], activation_class=nn.ReLU),
        in_keys=["observation", "action"],
    )
    actor(env.reset())  # initialises the lazy layer
    random_frames = min(1000, total_frames // 4)
    collector = SyncDataCollector(
        env, actor, frames_per_batch=100, total_frames=total_frames, init_random_frames=random_frames
    )
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100_000), batch_size=256)
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2)
    loss.make_value_estimator(gamma=0.99)
    target = SoftUpdate(loss, tau=0.005)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-4)
    curve = []
    for i, batch in enumerate(collector):
        buffer.extend(batch.reshape(-1))
        if len(buffer) >= random_frames:
            for _ in range(100):
                out = loss(buffer.sample())
                value = out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]
                optim.zero_grad()
                value.backward()
                optim.step()
                target.step()
        collector.update_policy_weights_()
        if i % 10 == 9:
            curve.append(((i + 1) * 100, evaluate(eval_env, actor, episodes=2, max_steps=1000)))
    collector.shutdown()
    return curve


sac_curve = train_sac(frames // 2)
print(f"SAC: eval return {sac_curve[-1][1]:.0f} after {sac_curve[-1][0]} frames (the maximum is 1000)")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot([f for f, _ in sac_curve], [r for _, r in sac_curve])
ax.set_xlabel("frames")
ax.set_ylabel("eval return (mean action, 2 episodes)")
ax.set_title("SAC on InvertedPendulum-v5")
plt.show()

# %% [markdown]
# ## What to change for your task
#
# - Another discrete task: change the env id and the network's sizes; raise
#   `annealing_num_steps` for tasks that need longer exploration.
# - Pixels: `ConvNet` or `DuelingCnnDQNet` as the Q-network, and frame stacking in the buffer
#   as above.
# - Another continuous task: SAC's settings above are the usual ones; `TD3Loss` and
#   `DDPGLoss` take the same actor / Q-network pair with a deterministic actor.
# - The main jobs `python -m tdrl.examples.dqn` and `python -m tdrl.examples.sac` wrap these
#   loops with a progress bar, logs, plots and checkpoints.
