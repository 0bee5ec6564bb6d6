# %% [markdown]
# # Writing your own loss: REINFORCE, with and without a baseline
#
# A tdrl loss is an `nn.Module` that reads a `TensorDict` of collected data and returns a
# `TensorDict` of named scalar losses. You sum them and call `backward()`. Nothing else is
# required: no registration, no special base class beyond `LossModule`, which adds key
# renaming and value estimators when you want them.
#
# This notebook writes REINFORCE twice — plain, then with a learned baseline — trains both
# on CartPole, and spends a section on the detail that most hand-written policy-gradient code
# gets wrong: the difference between an episode that **terminated** and one that was merely
# **cut short** (truncated, or still running when the batch ended).

# %%
import os

import matplotlib.pyplot as plt
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import OneHotCategorical, ProbabilisticActor, ValueOperator
from tdrl.objectives import LossModule
from tdrl.objectives.value import GAE, TD1Estimator
from tdrl.objectives.value.functional import generalized_advantage_estimate, reward2go

torch.manual_seed(0)
total_frames = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 60_000))

# %% [markdown]
# ## Returns, and where an episode ends
#
# REINFORCE weights the log-probability of each action by the return that followed it:
# `G_t = r_t + gamma * r_{t+1} + ...`, summed until the end of the episode.
#
# Take a batch of 10 steps with a reward of 1 each: a first episode that **terminated**
# after 3 steps, then a second one that was still running when the batch ended after 7.
# With `gamma = 1`, the reward-to-go restarts after the end of the first episode:

# %%
reward = torch.ones(10, 1)
done = torch.zeros(10, 1, dtype=torch.bool)
done[2] = True  # the first episode ends at step 3
print(reward2go(reward, done, gamma=1.0).flatten())

# %% [markdown]
# That gives `[3, 2, 1, 7, 6, 5, 4, 3, 2, 1]`. For the first episode it is exact. For the
# second it is not: the episode did not end at step 10, we simply stopped looking. Its true
# return is larger, and a value function can estimate the missing part.
#
# This is why tdrl's envs write two flags next to `done`:
#
# - `terminated`: the episode really ended (the pole fell). The value after it is 0:
#   **do not bootstrap**.
# - `truncated`: the episode was cut (time limit, or end of a batch). The state after it
#   has a value: **bootstrap from V(next state)**.
#
# Both stop the sum (`done = terminated | truncated`): the next step belongs to another
# episode. The estimators implement exactly this rule. With a value function that says 10
# everywhere, GAE with `lambda = 1` gives:

# %%
values = torch.full((10, 1), 10.0)
terminated = done.clone()
truncated = torch.zeros_like(done)
truncated[-1] = True  # the batch ended in the middle of episode 2
advantage, value_target = generalized_advantage_estimate(
    gamma=1.0,
    lmbda=1.0,
    state_value=values,
    next_state_value=values,
    reward=reward,
    done=terminated | truncated,
    terminated=terminated,
)
print("value targets:", value_target.flatten())

# %% [markdown]
# The first episode's targets are still `3, 2, 1`: it terminated, nothing comes after. The
# second's are `17, 16, ..., 11`: the 7 rewards we saw plus the value (10) of the state the
# batch stopped in. Mark that last step `terminated` instead and the targets silently drop
# to `7, ..., 1` — the classic bug that teaches an agent that running out of time is death.
#
# ## The environment and the policy
#
# CartPole: push a cart left or right to keep a pole up; reward 1 per step, at most 500
# steps. We run 8 copies at once (`num_envs=8`, a gymnasium vector env): batches have
# shape `[8, T]`. The policy outputs logits for a one-hot categorical distribution.

# %%
env = GymEnv("CartPole-v1", num_envs=8)
env.set_seed(0)
print("action spec:", env.action_spec)


def make_policy():
    net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["logits"]),
        spec=env.action_spec,
        in_keys=["logits"],
        distribution_class=OneHotCategorical,
        return_log_prob=True,
    )


# %% [markdown]
# ## REINFORCE as a `LossModule`
#
# The loss reads the batch, recomputes the log-probability of the actions taken under the
# current policy (`actor.get_dist(td).log_prob(action)`), and weights it by the returns.
#
# Without a baseline, the weights are the reward-to-go within each episode. In both versions
# the weights are standardized over the batch (a cheap variance reduction that also makes one
# learning rate fit both). With a baseline, a value network `V(s)` is
# subtracted: the weight becomes the advantage `A = G - V(s)`, computed by an estimator
# (`TD1Estimator` is the Monte-Carlo return with bootstrapping at truncation), and a second
# loss teaches `V` to predict the return.


# %%
class MyReinforce(LossModule):
    def __init__(self, actor, critic=None, gamma=0.99):
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.gamma = gamma
        if critic is not None:
            self.estimator = TD1Estimator(gamma=gamma, value_network=critic)

    def forward(self, td: TensorDict) -> TensorDict:
        if self.critic is None:
            weight = reward2go(td["next", "reward"], td["next", "done"], self.gamma, time_dim=td.ndim - 1)
        else:
            with torch.no_grad():
                self.estimator(td)  # writes "advantage" and "value_target"
            weight = td["advantage"]
        weight = (weight - weight.mean()) / (weight.std() + 1e-6)
        log_prob = self.actor.get_dist(td).log_prob(td["action"]).unsqueeze(-1)
        out = TensorDict({"loss_actor": -(log_prob * weight.detach()).mean()}, [])
        if self.critic is not None:
            value = self.critic(td.select("observation").clone())["state_value"]
            out["loss_value"] = (value - td["value_target"]).pow(2).mean()
        return out


# %% [markdown]
# ## Training
#
# Each iteration collects 8 x 125 = 1000 frames with `env.rollout`: done sub-envs are reset
# on the fly (`break_when_any_done=False`), and the last step of each row is marked
# `truncated` (`set_truncated=True`) so the baseline version bootstraps there. Outside a
# collector, a probabilistic actor returns its deterministic action unless told otherwise:
# `set_exploration_type(ExplorationType.RANDOM)` makes it sample.


# %%
def train(use_baseline: bool) -> list:
    torch.manual_seed(0)
    policy = make_policy()
    critic = (
        ValueOperator(nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 1)), in_keys=["observation"])
        if use_baseline
        else None
    )
    loss_module = MyReinforce(policy, critic)
    optim = torch.optim.Adam(loss_module.parameters(), lr=1e-2)
    curve, frames = [], 0
    while frames < total_frames:
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            batch = env.rollout(125, policy, break_when_any_done=False, set_truncated=True)
        losses = loss_module(batch)
        sum(losses.values()).backward()
        optim.step()
        optim.zero_grad()
        frames += batch.numel()
        episodes = batch["next", "done"].sum().item()
        # mean episode length in this batch (reward is 1 per step)
        curve.append((frames, batch.numel() / max(episodes, 1)))
    return curve


plain = train(use_baseline=False)
print("REINFORCE, last mean episode lengths:", [round(y) for _, y in plain[-3:]])
baseline = train(use_baseline=True)
print("with baseline, last mean episode lengths:", [round(y) for _, y in baseline[-3:]])

# %%
for name, curve in (("REINFORCE", plain), ("REINFORCE + baseline", baseline)):
    xs, ys = zip(*curve)
    plt.plot(xs, ys, label=name)
plt.xlabel("frames")
plt.ylabel("mean episode length in batch")
plt.legend()
plt.title("CartPole-v1 (maximum episode length: 500)")
plt.show()

# %% [markdown]
# ## What tdrl gives you ready-made
#
# `tdrl.objectives.ReinforceLoss` is the same loss with the corners filled in: key renaming
# (`set_keys`), any estimator (`make_value_estimator("gae" | "td0" | "td1" | "td_lambda")`),
# clipped value losses, and errors that name a missing key and who writes it. `A2CLoss` and
# `ClipPPOLoss` follow the same pattern. The estimators are plain modules too: `GAE` below
# writes the advantage of a whole batch in one vectorized pass over time.

# %%
critic = ValueOperator(nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 1)), in_keys=["observation"])
with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
    batch = env.rollout(50, make_policy(), break_when_any_done=False, set_truncated=True)
    GAE(gamma=0.99, lmbda=0.95, value_network=critic)(batch)
print(batch["advantage"].shape, batch["value_target"].shape)
env.close()
