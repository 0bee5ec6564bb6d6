# %% [markdown]
# # Multi-agent PPO: MAPPO and IPPO on VMAS navigation
#
# Several agents share a 2-D arena. Each one must drive to its own goal without bumping into
# the others, seeing only what is around it: its position and velocity, where its goal is,
# and a ring of lidar rays that detect the other agents. The arena is VMAS's `navigation`
# scenario ([VMAS](https://github.com/proroklab/VectorizedMultiAgentSimulator), a simulator
# written in torch that steps many copies of a scenario at once, which makes collecting
# data cheap even on a CPU).
#
# We train the agents with PPO in its two common multi-agent forms, which differ only in the
# critic:
#
# - **MAPPO** (multi-agent PPO): a *centralised* critic. During training each agent's value
#   is estimated from the observations of *all* agents. The policy stays decentralised: at
#   run time an agent acts on its own observation only.
# - **IPPO** (independent PPO): a *decentralised* critic. Each agent's value is estimated
#   from its own observation, as if the other agents were part of the environment.
#
# In both, the agents share one policy network (they are interchangeable, so one set of
# weights serves them all, fed with each agent's own observation). The setup follows
# TorchRL's multi-agent PPO tutorial; every name below (`VmasEnv`, `MultiAgentMLP`,
# `ClipPPOLoss`, ...) is the TorchRL name, imported from `tdrl`.
#
# What we build, in order:
#
# 1. the **environment**: agent groups, the `("agents", ...)` keys and their specs, a
#    `RewardSum` transform for the episode return of each agent;
# 2. the **policy**: a parameter-shared `MultiAgentMLP` and a `ProbabilisticActor` with a
#    `TanhNormal` distribution;
# 3. the **critic**, centralised (MAPPO) or not (IPPO);
# 4. a **collector**, a **replay buffer** for minibatches, **GAE** and **ClipPPOLoss**,
#    pointed at the agents' keys with `set_keys`;
# 5. the **training loop** (with the one multi-agent twist: the env's `done` flags expanded
#    over the agents), run once per critic, and the two **learning curves**;
# 6. a **rendered episode** of each trained team.

# %%
import base64
import io
import os
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import HTML, display
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import RewardSum, TransformedEnv
from tdrl.envs.libs.vmas import VmasEnv
from tdrl.envs.utils import ExplorationType, MarlGroupMapType, check_env_specs, set_exploration_type
from tdrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from tdrl.objectives import ClipPPOLoss, ValueEstimators

# %% [markdown]
# ## Hyperparameters
#
# The budget is counted in *frames*: one frame is one step of one copy of the scenario
# (with all its agents). Each batch holds `frames_per_batch` frames: `num_envs` copies of
# the scenario run side by side for `max_steps` steps, exactly one episode each. 60,000
# frames per algorithm (ten batches) take a few minutes per algorithm on one CPU core; the
# test suite runs this notebook with a small budget through `TDRL_TUTORIAL_FRAMES`.

# %%
frames_per_algorithm = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 60_000))
max_steps = 100  # episode length
frames_per_batch = max(max_steps, min(6000, frames_per_algorithm) // max_steps * max_steps)
num_envs = frames_per_batch // max_steps  # scenario copies simulated at once
n_iters = max(1, frames_per_algorithm // frames_per_batch)
total_frames = n_iters * frames_per_batch

n_agents = 3
num_epochs = 30  # passes over each batch
minibatch_size = min(400, frames_per_batch)
lr = 3e-4
max_grad_norm = 1.0
clip_epsilon = 0.2
gamma = 0.99
lmbda = 0.9
entropy_coef = 1e-4
device = torch.device("cpu")
torch.manual_seed(0)
print(f"{n_iters} batches of {frames_per_batch} frames ({num_envs} envs x {max_steps} steps) per algorithm")

# %% [markdown]
# ## The environment
#
# `VmasEnv` builds a VMAS scenario by name. `num_envs` copies are simulated at once, so the
# env's `batch_size` is `[num_envs]`; extra keyword arguments (`n_agents`) go to the
# scenario. `continuous_actions=True` gives each agent a 2-D force to apply, each component
# in `[-1, 1]`.

# %%
env = VmasEnv(
    "navigation",
    num_envs=num_envs,
    continuous_actions=True,
    max_steps=max_steps,
    device=device,
    seed=0,
    n_agents=n_agents,
)
print(env)
print("batch_size:", env.batch_size)

# %% [markdown]
# ### Agent groups
#
# A multi-agent env has to decide how its agents' data is laid out. tdrl (like TorchRL)
# puts agents into **groups**: the agents of one group are stacked along one dimension,
# so that a single network can process them all in one call, and each group gets its own
# sub-TensorDict, named after the group. `env.group_map` says which agent is in which group.
#
# VMAS names the agents `agent_0`, `agent_1`, ...; agents named `<name>_<number>` are grouped
# by `<name>`, and a single group is called `"agents"`. Other groupings are a `group_map`
# argument away: a dict `{group: [agent names]}`, or one of the premade `MarlGroupMapType`s.
# With `ONE_GROUP_PER_AGENT` every agent gets its own entries (useful when agents differ,
# e.g. have different observation sizes, or must not share a network).

# %%
print("group_map:", env.group_map)
print("all in one group:", MarlGroupMapType.ALL_IN_ONE_GROUP.get_group_map(env.agent_names))
per_agent_env = VmasEnv("navigation", num_envs=2, n_agents=n_agents, group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT)
print("one group per agent:", per_agent_env.group_map)
print("its action keys:", per_agent_env.action_keys)

# %% [markdown]
# ### Keys and specs
#
# Everything about the agents lives under the group's key: `("agents", "observation")`,
# `("agents", "action")`, `("agents", "reward")`. Their shapes are
# `[num_envs, n_agents, ...]`: the batch dim first, then the agents. The env knows its keys
# (`env.action_key`, `env.reward_key`, `env.done_keys`), and the code below reads them from
# the env where it can.
#
# The done flags are the exception: VMAS ends an episode for all agents of a copy at once,
# so `"done"` and `"terminated"` are written once per copy, at the root, with shape
# `[num_envs, 1]`. Keep this in mind: it matters for the advantage computation below.

# %%
print("action_key:", env.action_key, "| reward_key:", env.reward_key, "| done_keys:", env.done_keys)
print("observation_spec:", env.observation_spec)
print("action_spec:", env.action_spec)
print("reward_spec:", env.reward_spec)
print("done_spec:", env.done_spec)

# %% [markdown]
# The specs are batched (they include `num_envs`). The networks and the action distribution
# see one copy at a time, so they use the *unbatched* action spec: `[n_agents, 2]` with
# bounds `[-1, 1]`.

# %%
print(env.full_action_spec_unbatched[env.action_key])

# %% [markdown]
# ### A transform for the episode return
#
# `RewardSum` keeps a running sum of a reward over the current episode. We point it at the
# group's reward, so each agent gets its own `("agents", "episode_reward")`; it restarts
# at every reset. This is the number we log.
#
# `check_env_specs` then runs a short rollout and checks that what the env writes matches
# its specs, transform included.

# %%
env = TransformedEnv(env, RewardSum(in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")]))
check_env_specs(env)

# %% [markdown]
# A short random rollout shows the layout: batch dims `[num_envs, steps]` at the root, one
# more dim of size `n_agents` under `"agents"` (the `info` entries are VMAS's reward
# components, per agent).

# %%
rollout = env.rollout(5)
print(rollout)

# %% [markdown]
# ## The policy
#
# `MultiAgentMLP` maps inputs of shape `[*batch, n_agents, n_agent_inputs]` to
# `[*batch, n_agents, n_agent_outputs]`. Two switches choose what kind of network it is:
#
# - `share_params`: one set of weights for every agent (`True`), or one per agent;
# - `centralised`: each agent's output is computed from *all* agents' inputs (`True`), or
#   from its own only.
#
# The policy is decentralised (an agent acts on what it sees) and shared (the agents are
# alike). It outputs a location and a scale per action component; `NormalParamExtractor`
# splits them and keeps the scale positive. `ProbabilisticActor` turns them into a
# `TanhNormal` distribution squashed into the action bounds, samples the action into
# `env.action_key`, and with `return_log_prob=True` also writes the sample's
# log-probability, which PPO needs: one per agent, in the group next to the action.

# %%
obs_dim = env.observation_spec["agents", "observation"].shape[-1]
action_dim = env.full_action_spec_unbatched[env.action_key].shape[-1]


def make_policy():
    net = nn.Sequential(
        MultiAgentMLP(
            n_agent_inputs=obs_dim,
            n_agent_outputs=2 * action_dim,
            n_agents=n_agents,
            centralised=False,
            share_params=True,
            device=device,
            depth=2,
            num_cells=256,
            activation_class=nn.Tanh,
        ),
        NormalParamExtractor(),
    )
    module = TensorDictModule(
        net, in_keys=[("agents", "observation")], out_keys=[("agents", "loc"), ("agents", "scale")]
    )
    action_spec = env.full_action_spec_unbatched[env.action_key]
    return ProbabilisticActor(
        module=module,
        spec=env.action_spec_unbatched,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )


policy = make_policy()
td = policy(env.reset())
print(
    "action:", td["agents", "action"].shape, f"| log-prob under {policy.log_prob_key!r}:", td[policy.log_prob_key].shape
)

# %% [markdown]
# ## The critic: centralised (MAPPO) or decentralised (IPPO)
#
# The critic writes one value per agent, `("agents", "state_value")` of shape
# `[*batch, n_agents, 1]`. The only difference between the two algorithms is the
# `centralised` switch of its `MultiAgentMLP`:
#
# - MAPPO: each agent's value is computed from the concatenated observations of all agents,
#   so the first layer reads `n_agents * obs_dim` numbers. The critic is only used for
#   training, so it may see more than an agent does at run time.
# - IPPO: each agent's value comes from its own observation (`obs_dim` numbers).
#
# The critic's weights are shared among agents too.


# %%
def make_critic(centralised):
    net = MultiAgentMLP(
        n_agent_inputs=obs_dim,
        n_agent_outputs=1,
        n_agents=n_agents,
        centralised=centralised,
        share_params=True,
        device=device,
        depth=2,
        num_cells=256,
        activation_class=nn.Tanh,
    )
    return TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])


for name, centralised in (("MAPPO", True), ("IPPO", False)):
    critic = make_critic(centralised)
    first = critic.module.params["0", "weight"]
    print(
        f"{name}: first layer {tuple(first.shape)}, value shape {tuple(critic(env.reset())['agents', 'state_value'].shape)}"
    )

# %% [markdown]
# ## Done flags per agent
#
# GAE walks back through each trajectory and needs to know where it ends. It reads the reward
# and the done flags from `"next"` and requires them, and the values, to have one shape. Here
# the reward and the values are per agent, `[num_envs, steps, n_agents, 1]`, while the done
# flags are per copy of the scenario, `[num_envs, steps, 1]`:

# %%
print("reward:", rollout["next", "agents", "reward"].shape, "| done:", rollout["next", "done"].shape)

# %% [markdown]
# An episode ends for all agents of a copy at the same step, so the fix is to copy the flag to
# every agent: add an agent dim and expand it to the reward's shape, written under the group
# as `("next", "agents", "done")` (and the same for `"terminated"`, which tells GAE not to
# bootstrap). Then we tell the loss (and its GAE) to read the agents' keys with `set_keys`.
# (`expand` gives a view of the env's flags, not a copy.)


# %%
def add_agent_done_flags(batch):
    shape = batch.get_item_shape(("next", env.reward_key))
    for flag in ("done", "terminated"):
        batch.set(("next", "agents", flag), batch.get(("next", flag)).unsqueeze(-1).expand(shape))
    return batch


print("per-agent done:", add_agent_done_flags(rollout.clone())["next", "agents", "done"].shape)

# %% [markdown]
# ## Collector, replay buffer, loss and training loop
#
# `train` builds everything for one algorithm and runs it:
#
# - `SyncDataCollector` runs the policy in the (batched) env and yields batches of
#   `frames_per_batch` frames, shaped `[num_envs, max_steps]`.
# - The `ReplayBuffer` holds the current batch only. Sampling without replacement hands out
#   minibatches of `minibatch_size` frames that cover the batch once per epoch.
# - `ClipPPOLoss` takes the policy and the critic. `set_keys` points it at the group's
#   entries: reward, action, value and the per-agent done flags. `make_value_estimator`
#   gives it a GAE, which reads the same keys; we call it on each batch with the critic's
#   parameters (the targets are the same values, detached).
# - Each batch: per-agent done flags, advantages (without gradients), then `num_epochs`
#   passes of minibatch gradient steps, then the collector gets the new policy weights.
#
# What we log is the mean episode return per agent: `("agents", "episode_reward")` at the
# steps where an episode ended.


# %%
def train(centralised, seed=0):
    torch.manual_seed(seed)
    env = TransformedEnv(
        VmasEnv(
            "navigation",
            num_envs=num_envs,
            continuous_actions=True,
            max_steps=max_steps,
            device=device,
            seed=seed,
            n_agents=n_agents,
        ),
        RewardSum(in_keys=[("agents", "reward")], out_keys=[("agents", "episode_reward")]),
    )
    policy, critic = make_policy(), make_critic(centralised)
    collector = SyncDataCollector(
        env, policy, frames_per_batch=frames_per_batch, total_frames=total_frames, device=device
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
        entropy_coef=entropy_coef,
        normalize_advantage=False,  # the advantages of different agents are on one scale already
    )
    loss_module.set_keys(
        reward=env.reward_key,
        action=env.action_key,
        value=("agents", "state_value"),
        done=("agents", "done"),
        terminated=("agents", "terminated"),
    )
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=gamma, lmbda=lmbda)
    gae = loss_module.value_estimator
    optim = torch.optim.Adam(loss_module.parameters(), lr)

    logs = {"frames": [], "episode_reward": [], "loss_critic": []}
    start, frames = time.time(), 0
    for batch in collector:
        add_agent_done_flags(batch)
        with torch.no_grad():
            gae(
                batch,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        replay_buffer.extend(batch.reshape(-1))
        for _ in range(num_epochs):
            for _ in range(frames_per_batch // minibatch_size):
                losses = loss_module(replay_buffer.sample())
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
                optim.step()
                optim.zero_grad()
        collector.update_policy_weights_()

        frames += batch.numel()
        done = batch["next", "agents", "done"]
        logs["frames"].append(frames)
        logs["episode_reward"].append(batch["next", "agents", "episode_reward"][done].mean().item())
        logs["loss_critic"].append(losses["loss_critic"].item())
        print(
            f"{'MAPPO' if centralised else 'IPPO'} {frames:>6} frames: episode reward per agent "
            f"{logs['episode_reward'][-1]:6.2f} ({time.time() - start:.0f}s)"
        )
    collector.shutdown()
    return policy, logs


# %% [markdown]
# ## Training MAPPO, then IPPO
#
# Same seed, same hyperparameters, same policy network; only the critic differs.

# %%
mappo_policy, mappo_logs = train(centralised=True)
ippo_policy, ippo_logs = train(centralised=False)

# %% [markdown]
# ## Learning curves
#
# The reward of navigation is shaped. At each step every agent receives how much closer the
# whole team got to its goals (the agents share this part: by default it is the decrease of
# the sum of the agents' distances to their goals), minus 1 for each agent it is colliding
# with, plus 0.01 at each step at which every agent is on its goal. Over an episode the
# shared part adds up to the distance the team had to cover: a team that reaches all its
# goals without a collision scores that distance (about 3.1 on average with three agents),
# plus up to 1 of bonus the sooner it gets there. A random team scores about 0, or less when
# it collides.

# %%
fig, (ax_reward, ax_critic) = plt.subplots(1, 2, figsize=(11, 4))
for name, logs in (("MAPPO (centralised critic)", mappo_logs), ("IPPO (decentralised critic)", ippo_logs)):
    ax_reward.plot(logs["frames"], logs["episode_reward"], marker="o", label=name)
    ax_critic.plot(logs["frames"], logs["loss_critic"], marker="o", label=name)
ax_reward.set_title("episode reward per agent (training batches)")
ax_critic.set_title("critic loss (last minibatch of each batch)")
for ax in (ax_reward, ax_critic):
    ax.set_xlabel("frames")
    ax.legend()
fig.tight_layout()
plt.show()
for name, logs in (("MAPPO", mappo_logs), ("IPPO", ippo_logs)):
    print(f"{name}: episode reward per agent {logs['episode_reward'][0]:.2f} -> {logs['episode_reward'][-1]:.2f}")

# %% [markdown]
# ## Watching the trained agents
#
# We play one episode in fresh copies of the scenario with each trained policy, acting
# deterministically (the squashed location of each agent's action distribution), report the
# mean episode reward per agent, and film the first copy. `env.rollout` takes a `callback`
# called after every step; ours asks VMAS to draw the scene: `env.render()` returns an RGB
# array. `break_when_any_done=False` plays the whole episode.
#
# VMAS draws with pyglet and OpenGL. Without them (pyglet not installed, no display and no
# headless OpenGL) rendering fails; the cell then says why and goes on without the film.


# %%
def play(policy, seed=1, film=True):
    """One deterministic episode in 8 fresh copies.

    Returns the mean episode reward per agent, the mean distance the team had to cover, and the frames (or None).
    """
    eval_env = VmasEnv(
        "navigation",
        num_envs=8,
        continuous_actions=True,
        max_steps=max_steps,
        device=device,
        seed=seed,
        n_agents=n_agents,
    )
    frames = []

    def film_first_copy(env, _):
        frames.append(env.render(mode="rgb_array", env_index=0))

    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        try:
            episode = eval_env.rollout(
                max_steps, policy, callback=film_first_copy if film else None, break_when_any_done=False
            )
        except Exception as err:  # no pyglet, no display, no OpenGL: play again without filming
            print(f"rendering skipped ({type(err).__name__}: {str(err).splitlines()[0]})")
            episode, frames = eval_env.rollout(max_steps, policy, break_when_any_done=False), None
    eval_env.close()
    # an agent's observation starts with its position, its velocity and its offset from its goal
    distance = episode[:, 0]["agents", "observation"][..., 4:6].norm(dim=-1).sum(-1).mean().item()
    return episode["next", "agents", "reward"].sum(1).mean().item(), distance, frames


def as_gif(frames, caption, size=240, every=2):
    """An inline animated GIF of the frames (Pillow comes with matplotlib)."""
    from PIL import Image

    images = [Image.fromarray(frame).resize((size, size)) for frame in frames[::every]]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=60 * every, loop=0)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<figure style="display:inline-block;margin:4px"><img src="data:image/gif;base64,{data}"><figcaption>{caption}</figcaption></figure>'


films = []
for name, trained in (("MAPPO", mappo_policy), ("IPPO", ippo_policy)):
    reward, distance, frames = play(trained)
    print(f"{name}: deterministic episode reward per agent {reward:.2f} (distance to cover: {distance:.2f})")
    if frames:
        films.append(as_gif(frames, f"{name}, {len(frames)} steps"))
if films:
    display(HTML("".join(films)))

# %% [markdown]
# In the films the agents are the coloured discs and each goal is the small disc of the
# matching colour; the lines around an agent are its lidar rays.
#
# ## What to try next
#
# - `share_params=False` in the policy gives every agent its own weights (heterogeneous
#   agents; `MultiAgentMLP` then batches the agents' layers in one call).
# - `MarlGroupMapType.ONE_GROUP_PER_AGENT` puts each agent in its own group; each group then
#   needs its own networks and its own loss keys.
# - Other VMAS scenarios (`VmasEnv.available_envs`), e.g. `"balance"` or `"transport"`, and
#   PettingZoo envs (`tdrl.envs.libs.pettingzoo.PettingZooEnv`) use the same group layout.
# - Off-policy multi-agent training: `MultiAgentMLP` works as a Q-network or as a
#   centralised critic for continuous-action losses too.
