"""The evaluation itself (:class:`~tdrl.collectors.Evaluator`'s): play whole episodes, turn them into metrics.

A ``_Runner`` owns the evaluation env and a private policy; ``run(weights, step)`` loads the
weights, collects ``num_trajectories`` whole episodes with a
:class:`~tdrl.collectors.SyncDataCollector` and returns TorchRL's episode metrics. It runs the
same way in the caller's thread, in a daemon thread or in a worker process
(:mod:`tdrl.collectors._eval_backends`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from tdrl.collectors.sync import SyncDataCollector
from tdrl.envs.common import EnvBase
from tdrl.envs.transforms import Compose, VecNorm
from tdrl.specs import NestedKey

__all__: list[str] = []

_SINGLE_ENV_STEPS = 64  # steps collected at a time from an env that is not batched (frames_per_batch=None)


def _is_env_factory(env: Any) -> bool:
    return callable(env) and not isinstance(env, EnvBase)


def _load_weights(policy: Any, weights: TensorDictBase) -> None:
    """Copies ``weights`` into ``policy``'s parameters and buffers, in place."""
    if not isinstance(policy, nn.Module):
        raise TypeError(
            f"Evaluator: weights were given, but the evaluation policy is a {type(policy).__name__}, not an "
            "nn.Module whose weights can be set. Pass weights=None, or a module as the policy."
        )
    target = TensorDict.from_module(policy)
    ours, theirs = set(target.keys(True, True)), set(weights.keys(True, True))
    if ours != theirs:
        raise KeyError(
            f"Evaluator: the weights do not fit the evaluation policy: missing {sorted(map(str, ours - theirs))}, "
            f"unexpected {sorted(map(str, theirs - ours))}. Pass the weights of a policy with the same architecture."
        )
    target.data.update_(weights)


def _episode_metrics(batch: TensorDictBase, reward_key: NestedKey) -> dict[str, Any]:
    """TorchRL's episode metrics of a padded batch of whole episodes ``[N, T]`` with ``("collector", "mask")``."""
    mask = batch.get(("collector", "mask"))
    n, t = mask.shape
    lengths = mask.sum(-1)
    last = (lengths - 1).clamp_min(0)
    rows = torch.arange(n)
    episode_reward = batch.get(("next", "episode_reward"), None)
    if episode_reward is not None:  # a RewardSum in the env: its running total at the last step
        returns = episode_reward.reshape(n, t, -1).sum(-1)[rows, last]
    else:
        reward = batch.get(reward_key, None)
        if reward is None:
            raise KeyError(
                f"Evaluator: the evaluation batch has no reward entry {reward_key!r} (and no RewardSum's "
                f"('next', 'episode_reward')); its keys are {sorted(map(str, batch.keys(True, True)))}. "
                "Pass reward_keys= naming the env's reward."
            )
        returns = (reward.reshape(n, t, -1).sum(-1) * mask).sum(-1)
    step_count = batch.get(("next", "step_count"), None)
    episode_lengths = step_count.reshape(n, t)[rows, last] if step_count is not None else lengths
    returns = returns.double()
    return {
        "reward": returns.mean().item(),
        "reward_std": returns.std().item() if n > 1 else 0.0,
        "num_episodes": n,
        "episode_length": episode_lengths.double().mean().item(),
        "frame_count": int(lengths.sum()),
    }


class _Runner:
    """The evaluation itself, the same in every mode: an env, a private policy, and ``run(weights)``."""

    def __init__(self, env: Any, policy: Any, policy_factory: Any, config: dict[str, Any]) -> None:
        self.env: EnvBase = env() if _is_env_factory(env) else env
        if not isinstance(self.env, EnvBase):
            raise TypeError(f"Evaluator: the env factory returned a {type(self.env).__name__}, not a tdrl EnvBase.")
        _freeze_vecnorm(self.env)
        self.policy = policy_factory(self.env) if policy_factory is not None else policy
        self.config = config
        numel = self.env.batch_size.numel()
        # a batched env steps once per internal batch, so that episodes are taken in the order they
        # ended (within a batch the collector files them sub-env by sub-env, which would favour the
        # short episodes of the first sub-envs); a single env takes a few steps at a time, and at
        # most that many steps past the last episode needed are wasted
        default = numel if numel > 1 else min(config["max_steps"] or _SINGLE_ENV_STEPS, _SINGLE_ENV_STEPS)
        self.frames_per_batch = config["frames_per_batch"] or default

    def run(self, weights: TensorDictBase | None, step: int, isolate_rng: bool) -> dict[str, Any]:
        config = self.config
        if weights is not None:
            _load_weights(self.policy, weights)
        seed = config["seed"]
        with torch.random.fork_rng(devices=[], enabled=isolate_rng):
            if seed is not None:
                if isolate_rng:  # (a thread must not reseed the training's RNG)
                    torch.manual_seed(seed)
                self.env.set_seed(seed)
            collector = SyncDataCollector(
                self.env,
                self.policy,
                frames_per_batch=self.frames_per_batch,
                total_frames=-1,
                max_frames_per_traj=config["max_steps"],
                exploration_type=config["exploration_type"],
                trajs_per_batch=config["num_trajectories"],
                **config["collector_kwargs"],
            )
            training = isinstance(self.policy, nn.Module) and self.policy.training
            if training:
                self.policy.eval()
            start = time.perf_counter()
            try:
                batch = next(iter(collector))
            finally:
                if training:
                    self.policy.train()
            elapsed = time.perf_counter() - start
        metrics = _episode_metrics(batch, config["reward_keys"])
        if elapsed > 0:
            metrics["fps"] = metrics["frame_count"] / elapsed
        metrics_fn = config["metrics_fn"]
        if metrics_fn is not None:
            for name, value in metrics_fn(batch).items():
                metrics[f"custom/{name}"] = value
        if config["dump_video"]:
            _dump_videos(self.env, step)
        metrics["_step"] = step
        return metrics


def _transforms(env: EnvBase) -> list:
    transform = getattr(env, "transform", None)
    if transform is None:
        return []
    return list(transform) if isinstance(transform, Compose) else [transform]


def _freeze_vecnorm(env: EnvBase) -> None:
    """Stops the evaluation env's VecNorm statistics from learning from evaluation episodes."""
    for transform in _transforms(env):
        if isinstance(transform, VecNorm):
            transform.freeze()


def _dump_videos(env: EnvBase, step: int) -> None:
    """Calls ``dump(step=...)`` on the env's transforms that record (``VideoRecorder``)."""
    for t in _transforms(env):
        dump = getattr(t, "dump", None)
        if callable(dump):
            dump(step=step)


# --- the thread backend ------------------------------------------------------------------------
