# %% [markdown]
# # PPO on the inverted double pendulum
#
# This notebook trains a policy to balance a double pendulum on a cart
# (gymnasium's `InvertedDoublePendulum-v5`, simulated by MuJoCo) with Proximal Policy
# Optimization. Every piece talks through a `TensorDict`: the env writes observations into
# one, the policy reads them and writes an action, the collector stacks steps into batches,
# the advantage module and the loss read and write named entries.
#
# The pieces, in the order we build them:
#
# 1. an **environment** with **transforms** (normalized observations, float32, a step counter);
# 2. a **policy** that outputs a TanhNormal distribution over actions, and a **value network**;
# 3. a **collector** that runs the policy in the env and hands out batches of frames;
# 4. a **replay buffer** we refill with each batch and sample minibatches from, without repetition;
# 5. **GAE** for advantages and **ClipPPOLoss** for the objective;
# 6. the **training loop**, with a deterministic evaluation now and then, and plots.
#
# PPO in one sentence: collect a batch with the current policy, then take several gradient steps
# on a clipped surrogate objective, `min(r * A, clip(r, 1 - eps, 1 + eps) * A)` with `r` the
# probability ratio of the new and the old policy and `A` the advantage, so that no single
# update moves the policy far from the one that collected the data.

# %%
import os
from collections import defaultdict

import matplotlib.pyplot as plt
import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from tqdm.auto import tqdm

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import ClipPPOLoss
from tdrl.objectives.value import GAE

torch.manual_seed(0)

# %% [markdown]
# ## Hyperparameters
#
# `total_frames` is the budget of environment steps. 50,000 frames take a couple of minutes
# on a laptop CPU and already show learning; a full training uses about 1M. (The test suite
# runs this notebook with a tiny budget through `TDRL_TUTORIAL_FRAMES`.)

# %%
total_frames = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 50_000))
frames_per_batch = 1000  # frames collected before each round of optimization
sub_batch_size = 64  # minibatch size
num_epochs = 10  # passes over each batch
num_cells = 256  # width of the hidden layers
lr = 3e-4
max_grad_norm = 1.0
clip_epsilon = 0.2
gamma = 0.99
lmbda = 0.95
entropy_coef = 1e-4
device = torch.device("cpu")

# %% [markdown]
# ## The environment
#
# `GymEnv` wraps a gymnasium env; extra keyword arguments go to `gymnasium.make`. Its
# observation is float64 (MuJoCo's precision), its action a box in `[-1, 1]`.
#
# Transforms adapt what the env emits, and each one updates the env's specs to match:
#
# - `ObservationNorm` standardizes the observation with a location and a scale;
# - `DoubleToFloat` casts float64 entries to float32, which is what our networks use;
# - `StepCounter` writes how many steps the current episode has lasted.

# %%
env = TransformedEnv(
    GymEnv("InvertedDoublePendulum-v5", device=device),
    Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()),
)

# %% [markdown]
# `ObservationNorm` does not know the statistics of the observation yet: `init_stats` runs
# random steps and sets `loc` and `scale` from what it saw (one value per observation dim).

# %%
env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
print("loc shape:", env.transform[0].loc.shape)

# %% [markdown]
# The specs describe every entry the env reads or writes. `check_env_specs` runs a few steps
# and compares what the env produced with what the specs promise.

# %%
print("observation_spec:", env.observation_spec)
print("action_spec:", env.action_spec)
print("reward_spec:", env.reward_spec)
check_env_specs(env)

# %% [markdown]
# A random rollout is a `TensorDict` with one row per step. What the env returned after each
# action sits under `"next"`.

# %%
rollout = env.rollout(3)
print(rollout)

# %% [markdown]
# ## Policy and value network
#
# The policy is a network that outputs `2 * action_dim` numbers, split by
# `NormalParamExtractor` into a location and a positive scale. `ProbabilisticActor` builds a
# `TanhNormal` distribution from them (a Gaussian squashed into the action box), samples the
# action, and — with `return_log_prob=True` — writes the sample's log-probability, which PPO
# needs for its probability ratio.


# %%
def mlp(out_features):
    return nn.Sequential(
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(out_features),
    )


actor_net = nn.Sequential(mlp(2 * env.action_spec.shape[-1]), NormalParamExtractor())
policy = ProbabilisticActor(
    module=TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"]),
    spec=env.action_spec,
    in_keys=["loc", "scale"],
    distribution_class=TanhNormal,
    distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
    return_log_prob=True,
)
value = ValueOperator(module=mlp(1), in_keys=["observation"])

print(policy(env.reset()))
print(value(env.reset())["state_value"])

# %% [markdown]
# ## Collector, replay buffer, advantage and loss
#
# The collector yields batches of exactly `frames_per_batch` frames until `total_frames`
# have been collected, resetting the env whenever an episode ends.
#
# For on-policy training the replay buffer only holds the current batch; sampling without
# replacement visits every frame once per epoch.
#
# `GAE` writes `"advantage"` and `"value_target"` into the batch; `ClipPPOLoss` returns the
# clipped objective, the critic loss and the entropy bonus as separate entries, which we add.

# %%
collector = SyncDataCollector(
    env, policy, frames_per_batch=frames_per_batch, total_frames=total_frames, split_trajs=False, device=device
)
replay_buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=frames_per_batch), sampler=SamplerWithoutReplacement())
advantage_module = GAE(gamma=gamma, lmbda=lmbda, value_network=value, average_gae=True)
loss_module = ClipPPOLoss(
    actor_network=policy,
    critic_network=value,
    clip_epsilon=clip_epsilon,
    entropy_bonus=True,
    entropy_coef=entropy_coef,
    critic_coef=1.0,
    loss_critic_type="smooth_l1",
)
optim = torch.optim.Adam(loss_module.parameters(), lr)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, max(1, total_frames // frames_per_batch), 0.0)

# %% [markdown]
# ## Training
#
# For each batch: recompute advantages at every epoch (they depend on the value network,
# which keeps learning), refill the buffer, and take a gradient step per minibatch. Every 10
# batches we evaluate the policy without sampling: under `ExplorationType.MEAN` the actor
# returns the mean of its action distribution (for the `TanhNormal`, the expectation of the
# squashed action; `ExplorationType.DETERMINISTIC` would give the squashed location instead).

# %%
logs = defaultdict(list)
pbar = tqdm(total=total_frames)
for i, batch in enumerate(collector):
    for _ in range(num_epochs):
        advantage_module(batch)
        replay_buffer.extend(batch.reshape(-1).cpu())
        for _ in range(frames_per_batch // sub_batch_size):
            losses = loss_module(replay_buffer.sample(sub_batch_size).to(device))
            loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
            optim.step()
            optim.zero_grad()
    logs["reward"].append(batch["next", "reward"].mean().item())
    logs["step_count"].append(batch["step_count"].max().item())
    if i % 10 == 0:
        with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
            eval_rollout = env.rollout(1000, policy)
        logs["eval return"].append(eval_rollout["next", "reward"].sum().item())
        logs["eval step_count"].append(eval_rollout["step_count"].max().item())
    pbar.update(batch.numel())
    pbar.set_postfix(reward=f"{logs['reward'][-1]:.2f}", eval_return=f"{logs['eval return'][-1]:.1f}")
    scheduler.step()
pbar.close()
collector.shutdown()

# %% [markdown]
# ## Results
#
# The average reward per step rises as the pendulum stays up longer, and so do the episode
# lengths. An episode is cut at 1000 steps: a policy that balances for the whole episode has
# solved the task (an evaluation return of about 9,350).

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 7))
axes[0, 0].plot(logs["reward"])
axes[0, 0].set_title("training reward (mean per step)")
axes[0, 1].plot(logs["step_count"])
axes[0, 1].set_title("max episode length (training)")
axes[1, 0].plot(logs["eval return"], marker="o")
axes[1, 0].set_title("evaluation return")
axes[1, 1].plot(logs["eval step_count"], marker="o")
axes[1, 1].set_title("evaluation episode length")
for ax in axes[1]:
    ax.set_xlabel("evaluation (every 10 batches)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Where next
#
# - Collect from several envs at once with `SerialEnv` / `ParallelEnv`, or `GymEnv(name, num_envs=N)`.
# - Write your own objective: the next notebook builds REINFORCE as a `LossModule`.
# - `python -m tdrl.examples.ppo --frames 1000000` runs this training at full length from the
#   command line and saves the learning curve, a CSV log and a checkpoint.
