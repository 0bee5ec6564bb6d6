# %% [markdown]
# # From one machine to a cluster: PPO with `RayCollector`
#
# Tutorial 1 trains PPO on the inverted double pendulum with a `SyncDataCollector`: the env
# steps in the same process as the learner. When the env is the slow part, or one machine is
# not enough, the collection can move to [Ray](https://docs.ray.io/) actors, on this machine
# or on a cluster, while the training loop stays as it is. This notebook takes the seed
# tutorial's loop and changes three things:
#
# 1. the env is built by a **function** (each Ray actor builds its own copy);
# 2. the collector is a **`RayCollector`** with two remote collectors;
# 3. after each round of optimization the new weights are sent to the actors with
#    **`update_policy_weights_()`** (one `ray.put`, read by every actor).
#
# It runs on a local Ray instance that the collector starts itself. The last section shows
# how to point the same program at a running cluster. Install the extra first:
# `pip install "tdrl[ray]"`.

# %%
import os
from collections import defaultdict
from functools import partial

import matplotlib.pyplot as plt
import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from tqdm.auto import tqdm

from tdrl.collectors.distributed import RayCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import ClipPPOLoss
from tdrl.objectives.value import GAE

torch.manual_seed(0)

# %% [markdown]
# ## Hyperparameters
#
# The seed tutorial's, with `num_collectors` added. In synchronous mode each of the two
# collectors gathers half of `frames_per_batch`, and the batch the loop receives has exactly
# `frames_per_batch` frames, as with one local collector.

# %%
total_frames = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 50_000))
frames_per_batch = 1000
num_collectors = 2
sub_batch_size = 64
num_epochs = 10
num_cells = 256
lr = 3e-4
max_grad_norm = 1.0
clip_epsilon = 0.2
gamma = 0.99
lmbda = 0.95
entropy_coef = 1e-4

# %% [markdown]
# ## The environment, as a function
#
# A Ray actor runs in another process (on a cluster, on another machine), so it cannot share
# the env object of this notebook: the collector gets a function that builds one. Everything
# the function needs must travel with it. The observation statistics are computed once here
# and bound to the function with `functools.partial`, so every actor normalizes with the same
# `loc` and `scale`.


# %%
def make_env(loc=None, scale=None):
    norm = (
        ObservationNorm(in_keys=["observation"])
        if loc is None
        else ObservationNorm(loc, scale, in_keys=["observation"])
    )
    return TransformedEnv(GymEnv("InvertedDoublePendulum-v5"), Compose(norm, DoubleToFloat(), StepCounter()))


probe = make_env()
probe.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
env_maker = partial(make_env, probe.transform[0].loc.clone(), probe.transform[0].scale.clone())
env = env_maker()  # the learner's copy: specs, evaluation
print(env.transform[0].loc[:4])

# %% [markdown]
# ## Policy and value network
#
# Unchanged from the seed tutorial.


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
policy(env.reset())  # materializes the lazy layers before the policy is shipped to the actors
value(env.reset())

# %% [markdown]
# ## The collector
#
# `RayCollector` starts a Ray runtime when none is running in this process, with the
# arguments in `ray_init_config` (`"address": "local"`: a new local one, even if a Ray cluster
# is already running on this machine) and creates one actor per entry of `create_env_fn`. Each actor asks Ray
# for the resources in `remote_configs` (here one CPU, no GPU) and runs a `SyncDataCollector`
# over its env with its own copy of the policy. `sync=True` waits for every actor and
# concatenates their frames; `sync=False` hands out each actor's batch as soon as it is ready
# (more throughput, but a batch may come from weights one update old, which PPO's clipped
# ratio tolerates only a little).

# %%
collector = RayCollector(
    [env_maker] * num_collectors,
    policy,
    frames_per_batch=frames_per_batch,
    total_frames=total_frames,
    sync=True,
    ray_init_config={"address": "local", "num_cpus": num_collectors, "include_dashboard": False},
    remote_configs={"num_cpus": 1},
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
# The seed tutorial's loop. The only new line is `collector.update_policy_weights_()` at the
# end of each iteration: the learner's weights are put once into Ray's object store and every
# actor reads them from there before its next batch.

# %%
logs = defaultdict(list)
pbar = tqdm(total=total_frames)
for i, tensordict_data in enumerate(collector):
    for _ in range(num_epochs):
        advantage_module(tensordict_data)
        replay_buffer.extend(tensordict_data.reshape(-1))
        for _ in range(frames_per_batch // sub_batch_size):
            subdata = replay_buffer.sample(sub_batch_size)
            loss_vals = loss_module(subdata)
            loss_value = loss_vals["loss_objective"] + loss_vals["loss_critic"] + loss_vals["loss_entropy"]
            loss_value.backward()
            torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
            optim.step()
            optim.zero_grad()
    collector.update_policy_weights_()
    logs["reward"].append(tensordict_data["next", "reward"].mean().item())
    logs["step_count"].append(tensordict_data["step_count"].max().item())
    pbar.update(tensordict_data.numel())
    if i % 10 == 0:
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            eval_rollout = env.rollout(1000, policy)
            logs["eval reward (sum)"].append(eval_rollout["next", "reward"].sum().item())
    scheduler.step()
pbar.close()
collector.shutdown()  # kills the actors, and the Ray runtime it started

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
for ax, key in zip(axes, ["reward", "step_count", "eval reward (sum)"]):
    ax.plot(logs[key])
    ax.set_title(key)
    ax.set_xlabel("iteration" if key != "eval reward (sum)" else "evaluation")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## On a real cluster
#
# Start Ray on the head node and join the workers to it (Ray's own commands):
#
# ```bash
# ray start --head --port=6379            # on the head node
# ray start --address=<head-ip>:6379      # on each worker node
# ```
#
# Then run the same program on the head node with `"address": "auto"` (or the head's address)
# in `ray_init_config`, instead of `"local"` and `num_cpus`, and ask for the resources each collector needs:
#
# ```python
# collector = RayCollector(
#     [env_maker] * 64,
#     policy,
#     frames_per_batch=64_000,
#     total_frames=10_000_000,
#     sync=False,
#     ray_init_config={"address": "auto"},
#     remote_configs={"num_cpus": 4},
#     collector_class=MultiSyncDataCollector,  # 4 env processes per actor
#     num_workers_per_collector=4,
# )
# ```
#
# Everything `env_maker` and the policy need (packages, data files) must exist on every node:
# install tdrl there, or pass Ray a `runtime_env` through `ray_init_config`. A collector that
# connects to a running cluster leaves it running on `shutdown()`; it only stops a runtime it
# started. The docs page "Distributed collection" gives the measured per-message costs and how
# far one learner scales with them.
