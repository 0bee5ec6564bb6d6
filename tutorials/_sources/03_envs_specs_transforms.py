# %% [markdown]
# # Environments, specs and transforms — and swapping the simulator
#
# An environment in tdrl is a function from one `TensorDict` to the next. `reset()` returns
# the first observation; `step(td)` reads `td["action"]` and writes what follows under
# `td["next"]`: the observation, the reward, and three flags — `done`, `terminated` and
# `truncated`. Specs describe every one of those entries. Transforms sit between the
# simulator and your code and change what it emits — with their specs.
#
# This notebook covers, in order: specs; writing an env of your own; `check_env_specs`;
# transforms; and finally training one PPO loop over five simulator backends with only the
# env constructor changed.

# %%
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # dm_control renders offscreen; no display needed

import torch
from tensordict import TensorDict

from tdrl.envs import (
    CatFrames,
    Compose,
    DoubleToFloat,
    EnvBase,
    RewardSum,
    StepCounter,
    TransformedEnv,
    check_env_specs,
)
from tdrl.envs.libs.gym import GymEnv
from tdrl.specs import Bounded, Composite, Unbounded

# %% [markdown]
# ## Specs
#
# A spec is a shape, a dtype and a set of legal values. It can draw a random legal value,
# say whether a value is legal (and why not), and project a value onto the legal set.

# %%
action = Bounded(low=-2.0, high=2.0, shape=(1,))
print(action)
print("random:", action.rand(), " zero:", action.zero())
print("is 3.0 legal?", action.is_in(torch.tensor([3.0])), "-", action.mismatch(torch.tensor([3.0])))
print("projected:", action.project(torch.tensor([3.0])))

# %% [markdown]
# `Composite` nests specs under keys the way a `TensorDict` nests tensors, so one spec can
# describe a whole step. Its `rand()` and `zero()` return TensorDicts.

# %%
spec = Composite(
    observation=Unbounded(shape=(3,)),
    next=Composite(reward=Unbounded(shape=(1,))),
)
print(spec["next", "reward"])
print(spec.rand())

# %% [markdown]
# ## An env of your own
#
# Subclass `EnvBase`, declare the specs in `__init__`, and write `_reset`, `_step` and
# `_set_seed`. Here: a point on a line that the action pushes; the episode terminates when
# the point leaves `[-1, 1]`. The base class gives you `rollout`, `rand_step`, error
# checking of the action, and the default `done`/`terminated`/`truncated` specs.


# %%
class Line(EnvBase):
    def __init__(self):
        super().__init__()
        self.observation_spec = Composite(position=Unbounded(shape=(1,)))
        self.action_spec = Bounded(low=-0.5, high=0.5, shape=(1,))
        self.reward_spec = Unbounded(shape=(1,))
        self.rng = torch.Generator().manual_seed(0)

    def _reset(self, tensordict):
        self.x = torch.rand(1, generator=self.rng) - 0.5
        return TensorDict({"position": self.x.clone()}, [])

    def _step(self, tensordict):
        self.x = self.x + tensordict["action"]
        out = self.x.abs() > 1
        return TensorDict(
            {
                "position": self.x.clone(),
                "reward": -self.x.abs(),
                "done": out,
                "terminated": out,
                "truncated": torch.zeros_like(out),
            },
            [],
        )

    def _set_seed(self, seed):
        self.rng.manual_seed(seed)


line = Line()
check_env_specs(line)
print(line.rollout(20))

# %% [markdown]
# `check_env_specs` steps the env and compares every entry with its spec. Forget to declare
# an entry — or write one with the wrong shape — and it says which key and what it expected:


# %%
class Leaky(Line):
    def _step(self, tensordict):
        return super()._step(tensordict).set("velocity", tensordict["action"])


try:
    check_env_specs(Leaky())
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# Errors on the step itself are just as specific:

# %%
td = line.reset()
try:
    line.step(td.set("action", torch.zeros(2)))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Transforms
#
# `TransformedEnv(env, transform)` runs transforms on everything the env emits. Each
# transform updates the specs to match its output, so `check_env_specs` still holds:
#
# - `StepCounter(max_steps=50)` counts steps and *truncates* episodes at 50 (`truncated`
#   and `done` set, `terminated` not: the agent did not fail, it ran out of time);
# - `RewardSum` keeps the running return of the episode in `"episode_reward"`;
# - `CatFrames(N, dim=-1)` stacks the last N observations (restarting at each episode).

# %%
env = TransformedEnv(
    GymEnv("Pendulum-v1"),
    Compose(
        DoubleToFloat(),
        StepCounter(max_steps=50),
        RewardSum(),
        CatFrames(N=4, dim=-1, in_keys=["observation"], out_keys=["stacked"]),
    ),
)
check_env_specs(env)
print(env.observation_spec)
ro = env.rollout(100)
print(
    "steps:",
    ro.batch_size[0],
    " truncated at the end:",
    ro["next", "truncated"][-1].item(),
    " terminated:",
    ro["next", "terminated"][-1].item(),
)
print("episode return:", ro["next", "episode_reward"][-1].item())
print("stacked observation:", ro["stacked"].shape)

# %% [markdown]
# A transform is also a plain module on TensorDicts: called on data, it applies the same map
# (to the root and to `"next"`), which is how it works inside a replay buffer.

# %%
print(DoubleToFloat()(GymEnv("Pendulum-v1").rollout(3))["next", "observation"].dtype)

# %% [markdown]
# ## One training loop, five simulators
#
# A training loop written against tdrl's env API does not know which simulator it runs on.
# Everything the loop needs — observations, actions, rewards, done flags and their specs —
# comes through the same `TensorDict` entries whatever the backend. So swapping the simulator
# is a one-line change: the env constructor.
#
# We train the same PPO agent on the pendulum swing-up task through five backends:
#
# | backend | constructor | batch size |
# |---|---|---|
# | gymnasium | `GymEnv("Pendulum-v1")` | `[]` |
# | gymnasium vector env | `GymEnv("Pendulum-v1", num_envs=4)` | `[4]` |
# | tdrl's batched envs | `SerialEnv(4, lambda: GymEnv("Pendulum-v1"))` | `[4]` |
# | native torch | `PendulumEnv(batch_size=[8])` | `[8]` |
# | DeepMind Control Suite | `DMControlEnv("pendulum", "swingup", concat_observations=True)` | `[]` |
#
# The native torch `PendulumEnv` is gymnasium's `Pendulum-v1` rewritten in torch: it steps all
# its pendulums in one vectorized call, on any device, and we check below that it gives the
# same transitions as gymnasium's. dm_control's pendulum is another model of the same problem
# (different physics, a reward in `[0, 1]` instead of a cost), so its numbers are not
# comparable with the others — but the loop runs on it unchanged.

# %%
import os
import time
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
from tdrl.envs.batched import SerialEnv
from tdrl.envs.custom import PendulumEnv
from tdrl.envs.libs.dm_control import DMControlEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type, step_mdp
from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import ClipPPOLoss
from tdrl.objectives.value import GAE

torch.manual_seed(0)
torch.set_num_threads(1)  # networks this small run faster on one thread
total_frames = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 30_000))  # per backend

# %% [markdown]
# ### The backends
#
# Each entry is a function that builds the env: the only thing that differs between runs.

# %%
BACKENDS = {
    "gymnasium": lambda: GymEnv("Pendulum-v1"),
    "gymnasium vector (4)": lambda: GymEnv("Pendulum-v1", num_envs=4),
    "SerialEnv (4)": lambda: SerialEnv(4, lambda: GymEnv("Pendulum-v1")),
    "native torch (8)": lambda: PendulumEnv(batch_size=[8]),
    "dm_control": lambda: DMControlEnv("pendulum", "swingup", concat_observations=True),
}

for name, make_env in BACKENDS.items():
    env = make_env()
    obs = env.observation_spec["observation"]
    print(
        f"{name:>22}: batch {tuple(env.batch_size)}, observation {tuple(obs.shape)} {obs.dtype}, "
        f"action {tuple(env.action_spec.shape)} in [{env.action_spec.space.low.min().item()}, "
        f"{env.action_spec.space.high.max().item()}]"
    )
    env.close()

# %% [markdown]
# The shapes differ only by the batch dims in front. dm_control reports its observations
# by name (`orientation`, `velocity`); `concat_observations=True` joins them into one
# `"observation"` vector, which is what our policy reads. Its observations are float64
# (MuJoCo's precision); the `DoubleToFloat` transform in the loop casts them for the network.
#
# ### Same task, same numbers
#
# Before trusting a swap, check it. The native torch pendulum and gymnasium's draw their
# initial states from different random generators, so we put gymnasium's pendulum in the
# native one's initial state (`"th"`, `"thdot"`: the native env keeps its state in the
# TensorDict) and apply the same 200 random torques to both.

# %%
native, gym_env = PendulumEnv(), GymEnv("Pendulum-v1")
native.set_seed(0)
td_native = native.reset()
td_gym = gym_env.reset()
gym_env.env.unwrapped.state = np.array([td_native["th"].item(), td_native["thdot"].item()])

worst = 0.0
for action in native.action_spec.rand((200,)):
    td_native = native.step(td_native.set("action", action))
    td_gym = gym_env.step(td_gym.set("action", action))
    for key in ("observation", "reward"):
        worst = max(worst, (td_native["next", key] - td_gym["next", key]).abs().max().item())
    assert td_native["next", "truncated"].item() == td_gym["next", "truncated"].item()
    td_native, td_gym = step_mdp(td_native), step_mdp(td_gym)
print(f"largest difference over a whole episode: {worst:.1e}")

# %% [markdown]
# ### The training loop
#
# This is the PPO loop of the first tutorial, packed in a function of the base env. Two
# lines are written so that they hold for a batched env too:
#
# - `ObservationNorm.init_stats` averages over time *and* over the env's batch dims;
# - a batched env's action spec carries its batch dims (`[4, 1]` for four pendulums), while
#   the policy's `TanhNormal` needs the bounds of one env (`[1]`): we index the first one.


# %%
def train(base_env, total_frames, frames_per_batch=1000, num_epochs=4, sub_batch_size=100, num_cells=64):
    env = TransformedEnv(base_env, Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()))
    env.transform[0].init_stats(
        num_iter=200, reduce_dim=tuple(range(base_env.batch_dims + 1)), cat_dim=base_env.batch_dims
    )
    check_env_specs(env)

    def mlp(out_features):
        return nn.Sequential(
            nn.LazyLinear(num_cells), nn.Tanh(), nn.LazyLinear(num_cells), nn.Tanh(), nn.LazyLinear(out_features)
        )

    one_env = (0,) * env.batch_dims
    policy = ProbabilisticActor(
        module=TensorDictModule(
            nn.Sequential(mlp(2 * env.action_spec.shape[-1]), NormalParamExtractor()),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low[one_env], "high": env.action_spec.space.high[one_env]},
        return_log_prob=True,
    )
    value = ValueOperator(module=mlp(1), in_keys=["observation"])
    policy(env.reset())
    value(env.reset())

    collector = SyncDataCollector(env, policy, frames_per_batch=frames_per_batch, total_frames=total_frames)
    replay_buffer = ReplayBuffer(
        storage=LazyTensorStorage(max_size=frames_per_batch), sampler=SamplerWithoutReplacement()
    )
    advantage_module = GAE(gamma=0.99, lmbda=0.95, value_network=value, average_gae=True)
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=0.2,
        entropy_bonus=True,
        entropy_coef=1e-4,
        critic_coef=1.0,
        loss_critic_type="smooth_l1",
    )
    optim = torch.optim.Adam(loss_module.parameters(), 3e-4)

    logs = defaultdict(list)
    start = time.perf_counter()
    for batch in collector:
        for _ in range(num_epochs):
            advantage_module(batch)
            replay_buffer.extend(batch.reshape(-1))
            for _ in range(frames_per_batch // sub_batch_size):
                losses = loss_module(replay_buffer.sample(sub_batch_size))
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
                optim.step()
                optim.zero_grad()
        logs["reward"].append(batch["next", "reward"].mean().item())
    logs["seconds"] = time.perf_counter() - start
    with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
        logs["eval reward"] = env.rollout(200, policy)["next", "reward"].mean().item()
    collector.shutdown()
    env.close()
    return logs


# %% [markdown]
# ### Swap and run
#
# The same call for every backend; only `make_env` changes.

# %%
results = {}
for name, make_env in BACKENDS.items():
    torch.manual_seed(0)
    base_env = make_env()
    base_env.set_seed(0)
    results[name] = train(base_env, total_frames)
    print(
        f"{name:>22}: {total_frames / results[name]['seconds']:7.0f} frames/s (training included), "
        f"mean reward {results[name]['reward'][0]:.3f} -> {results[name]['reward'][-1]:.3f}, "
        f"eval {results[name]['eval reward']:.3f}"
    )

# %% [markdown]
# The gymnasium vector env and `SerialEnv` print the same numbers: under the same seeds
# they produce the same transitions (tdrl's parity tests check this, partial resets
# included), so the same agent learns the same way. The four `Pendulum-v1` backends learn
# alike (their rewards are costs, highest at 0 when the pendulum stands still upright); dm_control's reward is sparse (1 near upright, 0
# elsewhere), so it stays at 0 until the agent first swings the pendulum up.
# With 30,000 frames per backend the agent has only begun to learn; give it 200,000 to see
# the pendulum swing up.

# %%
fig, (ax_gym, ax_dm) = plt.subplots(1, 2, figsize=(11, 4))
for name, logs in results.items():
    ax = ax_dm if name == "dm_control" else ax_gym
    ax.plot(np.arange(1, len(logs["reward"]) + 1) * 1000, logs["reward"], label=name)
ax_gym.set_title("Pendulum-v1 dynamics (four backends)")
ax_dm.set_title("dm_control pendulum swingup")
for ax in (ax_gym, ax_dm):
    ax.set_xlabel("frames")
    ax.set_ylabel("mean reward per step")
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### How fast is each backend?
#
# Without a policy in the way, a rollout measures the simulator and the wrapper alone. The
# native torch env steps a whole batch in one call, so its frames/s grows with the batch
# size until the CPU (or GPU) is busy; gymnasium steps one pendulum at a time in Python,
# and so does its vector env (it loops over its copies): vector envs pay off when each
# step is expensive (MuJoCo) and the copies run in worker processes (`vectorization_mode="async"`).


# %%
def frames_per_second(env, steps):
    env.rollout(2, break_when_any_done=False)
    start = time.perf_counter()
    frames = env.rollout(steps, break_when_any_done=False).numel()
    return frames / (time.perf_counter() - start)


speeds = {
    "gymnasium": frames_per_second(GymEnv("Pendulum-v1"), 1000),
    "gymnasium vector (4)": frames_per_second(GymEnv("Pendulum-v1", num_envs=4), 250),
    "native torch (8)": frames_per_second(PendulumEnv(batch_size=[8]), 200),
    "native torch (1024)": frames_per_second(PendulumEnv(batch_size=[1024]), 200),
}
for name, fps in speeds.items():
    print(f"{name:>22}: {fps:12,.0f} frames/s  ({fps / speeds['gymnasium']:6.1f}x gymnasium)")

# %% [markdown]
# ### Where next
#
# - `PendulumEnv(device="cuda")` keeps the whole simulation on the GPU, next to the policy.
# - `DMControlEnv(..., from_pixels=True)` adds rendered frames under `"pixels"` (set
#   `MUJOCO_GL=egl` on a machine without a display).
# - `ParallelEnv` runs each copy of an env in its own process, for simulators that are slow
#   per step.
