"""The native torch Pendulum (``batch_size=[1024]``) against one gymnasium ``Pendulum-v1``.

Bar (issue 9): the native env's frames/s reach >= 50x a single gymnasium ``Pendulum-v1``'s,
measured in the same run, against both the raw ``gym.step`` loop and tdrl's ``GymEnv``
rollout. Every contender draws random actions, resets on done and (except the raw loop)
stores each step; the native env steps all 1024 pendulums in one torch call.
"""

from __future__ import annotations

import time
import warnings

import torch

from benchmarks._common import interleaved, print_rows, row

BATCH = 1024
NATIVE_STEPS = 200  # steps of the whole batch: 204,800 frames
GYM_STEPS = 4000


def _raw_gym_loop():
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.action_space.seed(0)

    def run() -> float:
        sample, step, reset = env.action_space.sample, env.step, env.reset
        start = time.perf_counter()
        for _ in range(GYM_STEPS):
            _, _, te, tr, _ = step(sample())
            if te or tr:
                reset()
        return GYM_STEPS / (time.perf_counter() - start)

    return run


def _gym_env_rollout():
    from tdrl.envs.libs.gym import GymEnv

    env = GymEnv("Pendulum-v1")
    env.set_seed(0)

    def run() -> float:
        start = time.perf_counter()
        ro = env.rollout(GYM_STEPS, break_when_any_done=False)
        return ro.numel() / (time.perf_counter() - start)

    return run


def _native_rollout():
    from tdrl.envs.custom import PendulumEnv

    env = PendulumEnv(batch_size=[BATCH])
    env.set_seed(0)
    env.rollout(5, break_when_any_done=False)  # warm-up

    def run() -> float:
        start = time.perf_counter()
        ro = env.rollout(NATIVE_STEPS, break_when_any_done=False)
        return ro.numel() / (time.perf_counter() - start)

    return run


def _torchrl_native_rollout():
    try:
        from torchrl.envs import PendulumEnv as TRLPendulumEnv
    except Exception:
        return None
    try:
        env = TRLPendulumEnv(seed=0)
        start_td = env.reset(env.gen_params(batch_size=[BATCH]))  # TorchRL batches through the input
        env.rollout(2, tensordict=start_td.clone(), auto_reset=False, break_when_any_done=False)
    except Exception:
        return None

    def run() -> float:
        start = time.perf_counter()
        ro = env.rollout(NATIVE_STEPS // 4, tensordict=start_td.clone(), auto_reset=False, break_when_any_done=False)
        return ro.numel() / (time.perf_counter() - start)

    return run


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    fns = {"native": _native_rollout(), "raw": _raw_gym_loop(), "gymenv": _gym_env_rollout()}
    trl = _torchrl_native_rollout()
    if trl is not None:
        fns["torchrl"] = trl
    best = interleaved(fns, rounds=5)
    note = f"native PendulumEnv(batch_size=[{BATCH}]) rollout; reference: one gymnasium Pendulum-v1"
    return [
        row(
            "native torch Pendulum [1024] vs raw gym.step loop, frames/s",
            best["native"],
            best["raw"],
            "frames/s",
            ">= 50",
            torchrl=best.get("torchrl"),
            note=note,
        ),
        row(
            "native torch Pendulum [1024] vs GymEnv rollout, frames/s",
            best["native"],
            best["gymenv"],
            "frames/s",
            ">= 50",
            torchrl=best.get("torchrl"),
            note=note,
        ),
    ]


if __name__ == "__main__":
    print_rows(run())
