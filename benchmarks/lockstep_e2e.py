"""Lockstep: the seed tutorial on tdrl and the hand-written PPO program, side by side.

``hand_tutorial`` in ``bench_e2e.py`` (plain torch, gymnasium, numpy GAE) learned faster at 50k
frames than the seed tutorial on tdrl. This runs both programs' loops from equal starting points,
iteration by iteration, and says where they first part:

- equal initial weights (the hand program's networks are copies of the tutorial's materialized
  lazy layers) and equal observation statistics (the tutorial's ``ObservationNorm``, fitted by
  ``init_stats``, used by both);
- equal env states: each reset of the hand program's env is set to the state tdrl's env was reset
  to (mujoco ``qpos``/``qvel``), so both meet the same initial states in the same order;
- equal random draws: the torch generator is seeded before each batch's collection (one normal
  draw per step in both), minibatch indices are the ones tdrl's sampler gave, and the generator is
  seeded before each minibatch's loss (the one-sample entropy draw).

Per iteration it compares, step by step, the observation, action, reward, ``terminated``,
``truncated``/``done`` and next observation of the collected batch; per epoch the value targets
and standardized advantages; per minibatch the three loss terms, the gradient norm before
clipping and the weights after Adam's step. The first quantity to differ beyond float noise is
reported; with ``--resync`` the hand program's weights are reset to tdrl's after every
iteration, so float noise never accumulates and each iteration is compared from equal weights.

Knobs that make the hand program take one of the tutorial's choices (all on by default, so that
what remains is a difference nobody has named yet): ``--hand-floor`` (``library``: the scale is
``softplus(x + b) + 0.01`` as ``NormalParamExtractor``; ``hand``: ``softplus(x + b).clamp_min(1e-4)``),
and ``--hand-eval`` (``train``: the evaluation every 10 batches runs on the training env, as the
tutorial does; ``separate``: on a second env, as the hand program does).

``--max-episode-steps 5`` shortens gymnasium's time limit so that most episodes end truncated:
the bootstrapping of the next value at a truncation (and not at a termination) is then on
every few steps of the batch.

Run: ``python -m benchmarks.lockstep_e2e --iterations 50 [--seed 0] [--resync]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

ENV = "InvertedDoublePendulum-v4"
FRAMES_PER_BATCH, SUB_BATCH, EPOCHS, CELLS = 1000, 64, 10, 256
GAMMA, LMBDA, CLIP, ENT_COEF = 0.99, 0.95, 0.2, 1e-4

# what counts as "parted": beyond these, a difference is not float noise (float32 pipelines that
# agree to ~1e-6 relative; the weights after many Adam steps to ~1e-5)
TOL = {"obs": 1e-4, "action": 1e-4, "reward": 1e-4, "target": 1e-3, "advantage": 1e-3, "loss": 1e-4, "weight": 1e-4}


@dataclass
class Parting:
    """The first place the two programs differ, per quantity: ``(iteration, where, difference)``."""

    first: dict[str, tuple[int, str, float]] = field(default_factory=dict)

    def note(self, quantity: str, iteration: int, where: str, diff: float, tol: float | None = None) -> None:
        limit = TOL.get(quantity, 0.0) if tol is None else tol
        if quantity not in self.first and (diff > limit or math.isnan(diff)):
            self.first[quantity] = (iteration, where, diff)


def build_tdrl(seed: int, frames: int, max_episode_steps: int | None = None) -> dict[str, Any]:
    """The seed tutorial's objects on tdrl, built with the tutorial's calls (see ``seed_tutorial``)."""
    import torch
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torch import nn

    from tdrl.collectors import SyncDataCollector
    from tdrl.data.replay_buffers import ReplayBuffer
    from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from tdrl.data.replay_buffers.storages import LazyTensorStorage
    from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from tdrl.objectives import ClipPPOLoss
    from tdrl.objectives.value import GAE

    torch.manual_seed(seed)
    env = TransformedEnv(
        GymEnv(ENV, **_make_kwargs(max_episode_steps)),
        Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()),
    )
    env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    env.set_seed(seed)

    def mlp(out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.LazyLinear(CELLS), nn.Tanh(), nn.LazyLinear(CELLS), nn.Tanh(), nn.LazyLinear(CELLS), nn.Tanh(),
            nn.LazyLinear(out),
        )  # fmt: skip

    actor_net, critic_net = mlp(2 * env.action_spec.shape[-1]), mlp(1)
    policy = ProbabilisticActor(
        module=TensorDictModule(nn.Sequential(actor_net, NormalParamExtractor()), ["observation"], ["loc", "scale"]),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=True,
    )
    value = ValueOperator(module=critic_net, in_keys=["observation"])
    policy(env.reset())
    value(env.reset())
    resets = _record_resets(env.base_env._env)
    collector = SyncDataCollector(
        env, policy, frames_per_batch=FRAMES_PER_BATCH, total_frames=frames, split_trajs=False
    )
    buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=FRAMES_PER_BATCH), sampler=SamplerWithoutReplacement())
    indices = _record_indices(buffer)
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=CLIP,
        entropy_bonus=True,
        entropy_coeff=ENT_COEF,
        critic_coeff=1.0,
        loss_critic_type="smooth_l1",
    )
    optim = torch.optim.Adam(loss_module.parameters(), 3e-4)
    return {
        "env": env,
        "policy": policy,
        "actor_net": actor_net,
        "critic_net": critic_net,
        "collector": collector,
        "buffer": buffer,
        "indices": indices,
        "resets": resets,
        "advantage": GAE(gamma=GAMMA, lmbda=LMBDA, value_network=value, average_gae=True),
        "loss_module": loss_module,
        "optim": optim,
        "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optim, frames // FRAMES_PER_BATCH, 0.0),
    }


def _make_kwargs(max_episode_steps: int | None) -> dict[str, Any]:
    """``gymnasium.make``'s arguments: a shorter time limit sends many episodes down the truncation path."""
    return {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}


def _record_resets(gym_env: Any) -> list:
    """Wraps the gymnasium env's ``reset`` (on the instance) to log the mujoco state it reset to."""
    log: list = []
    reset = gym_env.reset

    def recording_reset(*args: Any, **kwargs: Any) -> Any:
        out = reset(*args, **kwargs)
        data = gym_env.unwrapped.data
        log.append((data.qpos.copy(), data.qvel.copy()))
        return out

    gym_env.reset = recording_reset
    return log


def _record_indices(buffer: Any) -> list:
    """Wraps the buffer's sampler (on the instance) to log the indices of each minibatch."""
    log: list = []
    sampler = buffer._sampler
    sample = sampler.sample

    def recording_sample(storage: Any, batch_size: int) -> Any:
        index, info = sample(storage, batch_size)
        log.append(index.clone())
        return index, info

    sampler.sample = recording_sample
    return log


class Hand:
    """The loop of ``hand_tutorial``, from given weights and statistics, with injected draws."""

    def __init__(
        self,
        tdrl: dict[str, Any],
        seed: int,
        frames: int,
        floor: str,
        eval_on: str,
        max_episode_steps: int | None = None,
    ) -> None:
        import gymnasium as gym
        import torch

        self.actor, self.critic = copy.deepcopy(tdrl["actor_net"]), copy.deepcopy(tdrl["critic_net"])
        self.params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optim = torch.optim.Adam(self.params, 3e-4)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optim, frames // FRAMES_PER_BATCH, 0.0)
        norm = tdrl["env"].transform[0]
        # y = x * scale + loc (ObservationNorm's standard_normal=False form)
        self.norm_scale, self.norm_loc = norm.scale.double(), norm.loc.double()
        self.env = gym.make(ENV, **_make_kwargs(max_episode_steps))
        self.eval_env = gym.make(ENV, **_make_kwargs(max_episode_steps)) if eval_on == "separate" else self.env
        self.eval_env.reset(seed=seed + 1)
        self.floor = floor
        self.obs: Any = None

    def normalize(self, obs: Any) -> Any:
        import torch

        return (torch.from_numpy(obs) * self.norm_scale + self.norm_loc).float()

    def head(self, x: Any) -> tuple[Any, Any]:
        import torch.nn.functional as F

        loc, raw = self.actor(x).chunk(2, -1)
        if self.floor == "library":  # biased_softplus_1.0: softplus(x + inv_softplus(0.99)) + 0.01
            scale = F.softplus(raw + math.log(math.expm1(0.99))) + 0.01
        else:
            scale = F.softplus(raw + math.log(math.e - 1.0)).clamp_min(1e-4)
        return loc, scale

    @staticmethod
    def log_prob(u: Any, loc: Any, scale: Any) -> Any:
        import torch.nn.functional as F

        z = (u - loc) / scale
        half_log_2pi, log2 = 0.5 * math.log(2 * math.pi), math.log(2.0)
        return (-0.5 * z * z - scale.log() - half_log_2pi - 2.0 * (log2 - u - F.softplus(-2.0 * u))).sum(-1)

    def reset_to(self, state: tuple) -> Any:
        self.env.reset()
        self.env.unwrapped.set_state(*state)
        return self.env.unwrapped._get_obs()


def run(
    iterations: int,
    seed: int,
    resync: bool,
    floor: str,
    eval_on: str,
    verbose: bool = True,
    max_episode_steps: int | None = None,
) -> dict:
    """Both loops for ``iterations`` batches; returns the first parting per quantity and per-iteration maxima."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.modules import TanhNormal

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    frames = iterations * FRAMES_PER_BATCH
    t = build_tdrl(seed, frames, max_episode_steps)
    hand = Hand(t, seed, frames, floor, eval_on, max_episode_steps)
    lim = 1.0 - torch.finfo(torch.float32).resolution
    parting, rows = Parting(), []
    it = iter(t["collector"])
    tdrl_params = [*t["actor_net"].parameters(), *t["critic_net"].parameters()]
    n_loss_params = len(list(t["loss_module"].parameters()))
    if n_loss_params != len(tdrl_params):
        parting.note("optimizer params", 0, f"loss_module.parameters() has {n_loss_params}", 1.0)
    used_resets = 0
    for i in range(iterations):
        # --- collection ----------------------------------------------------------------------
        t["resets"].clear() if i else None
        torch.manual_seed(10_000 + i)
        batch = next(it)
        torch.manual_seed(10_000 + i)
        resets, used_resets = t["resets"], 0
        if hand.obs is None:  # the collector's start: the reset whose observation opens the batch
            for k, state in enumerate(resets):
                hand.obs = hand.reset_to(state)
                used_resets = k + 1
                if float((hand.normalize(hand.obs) - batch["observation"][0]).abs().max()) < TOL["obs"]:
                    break
        n = FRAMES_PER_BATCH
        obs_buf, next_buf = torch.empty(n, 11), torch.empty(n, 11)
        act_buf, logp_buf = torch.empty(n, 1), torch.empty(n)
        rew, term, done = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
        x = hand.normalize(hand.obs)
        row: dict[str, Any] = {"iteration": i}
        diffs = {"obs": 0.0, "action": 0.0, "reward": 0.0, "next_obs": 0.0, "log_prob": 0.0}
        flags_differ = 0
        with torch.no_grad():
            for s in range(n):
                loc, scale = hand.head(x)
                u = loc + scale * torch.randn_like(loc)
                a = u.tanh().clamp(-lim, lim)
                obs, reward, terminated, truncated, _ = hand.env.step(a.numpy())
                obs_buf[s], act_buf[s], logp_buf[s] = x, a, hand.log_prob(a.atanh(), loc, scale)
                next_buf[s] = hand.normalize(obs)
                rew[s], term[s], done[s] = reward, terminated, terminated or truncated
                where = f"step {s}"
                for name, ours, theirs in (
                    ("obs", x, batch["observation"][s]),
                    ("action", a, batch["action"][s]),
                    ("reward", torch.tensor([reward], dtype=torch.float32), batch["next", "reward"][s]),
                    ("next_obs", next_buf[s], batch["next", "observation"][s]),
                    ("log_prob", logp_buf[s], batch["sample_log_prob"][s]),
                ):
                    d = float((ours - theirs).abs().max())
                    diffs[name] = max(diffs[name], d)
                    parting.note(name, i, where, d, TOL.get(name, 1e-4))
                theirs_flags = (
                    bool(batch["next", "terminated"][s]),
                    bool(batch["next", "truncated"][s]),
                    bool(batch["next", "done"][s]),
                )
                if theirs_flags != (bool(terminated), bool(truncated), bool(terminated or truncated)):
                    flags_differ += 1
                    parting.note("done flags", i, f"{where}: tdrl {theirs_flags}, hand {(terminated, truncated)}", 1.0)
                if terminated or truncated:
                    if used_resets < len(resets):
                        obs = hand.reset_to(resets[used_resets])
                        used_resets += 1
                    else:
                        obs, _ = hand.env.reset()
                        parting.note("reset count", i, f"{where}: tdrl reset fewer times", 1.0)
                x = hand.normalize(obs)
        hand.obs = obs
        if used_resets != len(resets):
            parting.note("reset count", i, f"tdrl reset {len(resets)} times, hand {used_resets}", 1.0)
        row.update(
            diffs,
            flags_differ=flags_differ,
            episodes_ended=int(done.sum()),
            truncated=int(batch["next", "truncated"].sum()),
        )
        # --- the update ------------------------------------------------------------------------
        maxima = {"target": 0.0, "advantage": 0.0, "loss": 0.0, "grad_norm": 0.0, "weight": 0.0}
        t["indices"].clear()
        mb = 0
        for epoch in range(EPOCHS):
            t["advantage"](batch)
            t["buffer"].extend(batch.reshape(-1))
            with torch.no_grad():
                value = hand.critic(obs_buf).squeeze(-1).numpy()
                next_value = hand.critic(next_buf).squeeze(-1).numpy()
            delta = rew + GAMMA * (1.0 - term) * next_value - value
            adv = np.empty(n, np.float32)
            last = 0.0
            for s in range(n - 1, -1, -1):
                last = delta[s] + GAMMA * LMBDA * (1.0 - done[s]) * last
                adv[s] = last
            target = torch.from_numpy(adv + value).unsqueeze(-1)
            advantage = torch.from_numpy((adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)).unsqueeze(-1)
            for name, ours, theirs in (
                ("target", target, batch["value_target"]),
                ("advantage", advantage, batch["advantage"]),
            ):
                d = float((ours - theirs).abs().max() / (theirs.abs().max() + 1.0))
                maxima[name] = max(maxima[name], d)
                parting.note(name + ("" if epoch == 0 else " (drift)"), i, f"epoch {epoch}", d, TOL[name])
            for k in range(FRAMES_PER_BATCH // SUB_BATCH):
                sample = t["buffer"].sample(SUB_BATCH)
                idx = t["indices"][-1]
                torch.manual_seed(20_000_000 + 1000 * i + mb)
                losses = t["loss_module"](sample)
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                g_tdrl = float(torch.nn.utils.clip_grad_norm_(t["loss_module"].parameters(), 1.0))
                t["optim"].step()
                t["optim"].zero_grad()
                # the hand program's minibatch, with tdrl's indices and the same entropy draw
                torch.manual_seed(20_000_000 + 1000 * i + mb)
                o, a_old, lp_old = obs_buf[idx], act_buf[idx], logp_buf[idx]
                loc, scale = hand.head(o)
                lp = hand.log_prob(a_old.atanh(), loc, scale)
                entropy = -hand.log_prob(loc + scale * torch.randn_like(loc), loc, scale)
                ratio = (lp - lp_old).exp().unsqueeze(-1)
                adv_b = advantage[idx]
                gain = torch.minimum(ratio * adv_b, ratio.clamp(1 - CLIP, 1 + CLIP) * adv_b)
                terms = {
                    "loss_objective": -gain.mean(),
                    "loss_critic": F.smooth_l1_loss(hand.critic(o), target[idx]),
                    "loss_entropy": -ENT_COEF * entropy.mean(),
                }
                sum(terms.values()).backward()
                g_hand = float(torch.nn.utils.clip_grad_norm_(hand.params, 1.0))
                hand.optim.step()
                hand.optim.zero_grad()
                where = f"epoch {epoch} minibatch {k}"
                # the first minibatch starts from equal weights (with --resync); later ones from
                # weights that float noise has moved apart through Adam's steps
                drift = "" if mb == 0 else " (drift)"
                for name, value_ in terms.items():
                    d = abs(float(value_) - float(losses[name])) / (abs(float(losses[name])) + 1.0)
                    maxima["loss"] = max(maxima["loss"], d)
                    parting.note("loss" + drift, i, f"{where} {name}", d, TOL["loss"])
                d = abs(g_hand - g_tdrl) / (g_tdrl + 1.0)
                if mb == 0:  # from equal weights (with --resync): no amplification yet
                    row["loss_first_minibatch"] = max(
                        abs(float(v) - float(losses[name])) / (abs(float(losses[name])) + 1.0)
                        for name, v in terms.items()
                    )
                    row["grad_first_minibatch"] = d
                maxima["grad_norm"] = max(maxima["grad_norm"], d)
                parting.note("grad_norm" + drift, i, where, d, 1e-3)
                d = max(float((p - q).abs().max()) for p, q in zip(hand.params, tdrl_params, strict=True))
                maxima["weight"] = max(maxima["weight"], d)
                parting.note("weight" + drift, i, where, d, TOL["weight"])
                mb += 1
        row.update(maxima, minibatch_sizes=sorted({len(x) for x in t["indices"]}))
        row["lr"] = (t["optim"].param_groups[0]["lr"], hand.optim.param_groups[0]["lr"])
        t["scheduler"].step()
        hand.scheduler.step()
        if resync:  # weights and Adam's moments back to tdrl's, so the next batch starts equal
            with torch.no_grad():
                for p, q in zip(hand.params, tdrl_params, strict=True):
                    p.copy_(q)
                    theirs, ours = t["optim"].state[q], hand.optim.state[p]
                    for key in ("exp_avg", "exp_avg_sq", "step"):
                        ours[key].copy_(theirs[key])
        # --- the evaluation every 10 batches --------------------------------------------------
        if i % 10 == 0:
            t["resets"].clear()
            with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
                ro = t["env"].rollout(1000, t["policy"])
            row["eval_tdrl"] = float(ro["next", "reward"].sum())
            if eval_on == "train":
                # as the tutorial: the evaluation resets and steps the training env, while the
                # collector keeps the observation it last saw (replay tdrl's reset)
                eval_obs = hand.reset_to(t["resets"][-1])
                total = 0.0
                with torch.no_grad():
                    for _ in range(1000):
                        loc, scale = hand.head(hand.normalize(eval_obs))
                        action = TanhNormal(loc, scale).mean  # ExplorationType.MEAN, as the tutorial
                        eval_obs, r, term_, trunc_, _ = hand.env.step(action.numpy())
                        total += float(r)
                        if term_ or trunc_:
                            break
                row["eval_hand"] = total
            t["resets"].clear()
        rows.append(row)
        if verbose:
            print(json.dumps(_rounded(row)), flush=True)
    t["collector"].shutdown()
    return {"first_parting": parting.first, "iterations": rows}


def _rounded(row: dict) -> dict:
    return {k: (float(f"{v:.3g}") if isinstance(v, float) else v) for k, v in row.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resync", action="store_true", help="copy tdrl's weights into the hand program each batch")
    parser.add_argument("--hand-floor", choices=["library", "hand"], default="library")
    parser.add_argument("--hand-eval", choices=["train", "separate"], default="train")
    parser.add_argument("--max-episode-steps", type=int, help="a shorter time limit (gymnasium's), to test truncation")
    args = parser.parse_args()
    out = run(
        args.iterations,
        args.seed,
        args.resync,
        args.hand_floor,
        args.hand_eval,
        max_episode_steps=args.max_episode_steps,
    )
    print("first parting (quantity: iteration, where, difference):", file=sys.stderr)
    for quantity, (iteration, where, diff) in sorted(out["first_parting"].items(), key=lambda kv: kv[1][0]):
        print(f"  {quantity}: iteration {iteration}, {where}, {diff:.3g}", file=sys.stderr)
