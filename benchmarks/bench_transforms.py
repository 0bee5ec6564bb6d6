"""The seed tutorial's transforms on top of the bare env: what do they cost a rollout?

Bar (issue 3): ``TransformedEnv(GymEnv, Compose(ObservationNorm, DoubleToFloat, StepCounter))
.rollout(N)`` costs at most 1.10x the bare ``GymEnv.rollout(N)`` (both without a policy), in
the same run: steps/s ratio >= 0.91. That chain is time-vectorizable, so the transformed env
runs the base env's fast rollout and maps the stacked result at once.

Rates are steps per second of this process's CPU time (``time.process_time``), best of
several interleaved rounds, so that other processes on a shared machine disturb the ratio
less; both envs replay the same seeded actions on the same gymnasium instance.

A second row shows the per-step road (a policy is given, so every step goes through
``TransformedEnv._step`` and the three transforms' hooks), against the bare env with the
same policy; and TorchRL 0.14.1's transformed env for reference.
"""

from __future__ import annotations

import time
import warnings

import torch

from benchmarks._common import interleaved, print_rows, row

ENV = "InvertedDoublePendulum-v4"
STEPS = 2000


def _zero_policy(td):
    return td.set("action", torch.zeros(1))


def _tdrl_envs():
    """The seed's transformed env and its own base env: both measure the same gymnasium instance."""
    from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv

    env = TransformedEnv(GymEnv(ENV), Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()))
    env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    return env.base_env, env


def _rate(env, policy=None, steps: int = STEPS):
    def run() -> float:
        torch.manual_seed(0)  # same actions, hence the same episodes, for the bare and the transformed env
        env.set_seed(0)
        start = time.process_time()
        ro = env.rollout(steps, policy, break_when_any_done=False)
        return ro.numel() / (time.process_time() - start)

    return run


def _torchrl_rate():
    try:
        from torchrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
        from torchrl.envs.libs.gym import GymEnv
    except Exception:
        return None
    env = TransformedEnv(GymEnv(ENV), Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()))
    env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    return _rate(env, steps=STEPS // 4)


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    bare, env = _tdrl_envs()
    fns = {"bare": _rate(bare), "transformed": _rate(env)}
    trl = _torchrl_rate()
    if trl is not None:
        fns["torchrl"] = trl
    best = interleaved(fns, rounds=9)
    stepped = interleaved(
        {"bare": _rate(bare, _zero_policy, STEPS // 2), "transformed": _rate(env, _zero_policy, STEPS // 2)}, rounds=5
    )
    return [
        row(
            f"rollout(N) through the seed's 3 transforms vs bare env ({ENV}), steps/s",
            best["transformed"],
            best["bare"],
            "steps/s",
            ">= 0.91 (cost <= 1.10x)",
            torchrl=best.get("torchrl"),
            note="vectorized road: base env's fast rollout, transforms over the stacked result",
        ),
        row(
            f"per-step road (policy given) through the seed's transforms vs bare env ({ENV}), steps/s",
            stepped["transformed"],
            stepped["bare"],
            "steps/s",
            "info",
            note="TransformedEnv._step + 3 transform hooks per step",
        ),
    ]


if __name__ == "__main__":
    print_rows(run())
