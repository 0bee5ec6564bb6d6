"""env.rollout without a policy against the raw gymnasium step loop (and TorchRL's rollout).

Bar (issue 2): tdrl's rollout reaches >= 0.9x the raw loop's steps/s, in the same run.
Both loops draw random actions and reset on done; tdrl also stores every step.
"""

from __future__ import annotations

import warnings

import torch

from benchmarks._common import interleaved, print_rows, row

ENV = "InvertedDoublePendulum-v4"
STEPS = 2000


def _raw_loop() -> float:
    import gymnasium as gym

    env = gym.make(ENV)
    env.reset(seed=0)
    env.action_space.seed(0)

    def run() -> float:
        import time

        sample, step, reset = env.action_space.sample, env.step, env.reset
        start = time.perf_counter()
        for _ in range(STEPS):
            _, _, te, tr, _ = step(sample())
            if te or tr:
                reset()
        return STEPS / (time.perf_counter() - start)

    return run


def _tdrl_rollout() -> float:
    from tdrl.envs.libs.gym import GymEnv

    env = GymEnv(ENV)
    env.set_seed(0)

    def run() -> float:
        import time

        start = time.perf_counter()
        ro = env.rollout(STEPS, break_when_any_done=False)
        elapsed = time.perf_counter() - start
        return ro.numel() / elapsed

    return run


def _torchrl_rollout():
    try:
        from torchrl.envs.libs.gym import GymEnv as TRLGymEnv
    except Exception:
        return None
    env = TRLGymEnv(ENV)

    def run() -> float:
        import time

        start = time.perf_counter()
        ro = env.rollout(STEPS // 4, break_when_any_done=False)
        return ro.numel() / (time.perf_counter() - start)

    return run


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    fns = {"raw": _raw_loop(), "tdrl": _tdrl_rollout()}
    trl = _torchrl_rollout()
    if trl is not None:
        fns["torchrl"] = trl
    best = interleaved(fns, rounds=5)
    return [
        row(
            f"env.rollout, no policy ({ENV}), steps/s",
            best["tdrl"],
            best["raw"],
            "steps/s",
            ">= 0.9",
            torchrl=best.get("torchrl"),
        ),
    ]


if __name__ == "__main__":
    print_rows(run())
