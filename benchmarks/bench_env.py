"""The gymnasium wrapper against hand-written gymnasium code: a policy-free rollout, one step, one reset.

Bar (issue 2): tdrl's rollout reaches >= 0.9x the raw loop's steps/s, in the same run.
Both loops draw random actions and reset on done; tdrl also stores every step.

The step and reset rows (issue 22, "info" rows) time one call in microseconds of thread CPU
time, medians over interleaved rounds (``median_cpu_us``), against the hand-written call in
the same run:

- step: ``GymEnv.step(td)`` (the public call, with its action checks) and ``GymEnv._step(td)``
  (what the collectors call per frame) against ``gym_env.step(a)`` + ``torch.as_tensor(obs)``.
  Both sides run the same actions from the same seed; a finished episode is restarted with
  gymnasium's own ``reset`` on both sides, so the rows time the step alone.
- reset: ``GymEnv.reset()`` against ``torch.as_tensor(gym_env.reset()[0])``, and the seed
  tutorial's ``TransformedEnv`` (``ObservationNorm``, ``DoubleToFloat``, ``StepCounter``)
  against the same hand reset, which shows what the transforms add.

Run: ``python -m benchmarks.bench_env [--what rollout step reset] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch

from benchmarks._common import interleaved, median_cpu_us, print_rows, row

ENV = "InvertedDoublePendulum-v4"
STEPS = 2000
STEP_CALLS, RESET_CALLS = 2000, 1000


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


def rollout_rows() -> list[dict]:
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


# --- one step ---------------------------------------------------------------------------------------------------------
def _actions(name: str, count: int = 64) -> list:
    """``count`` actions drawn once from the env's own action space (seeded), cycled by both sides."""
    import gymnasium as gym

    space = gym.make(name).action_space
    space.seed(0)
    return [space.sample() for _ in range(count)]


def _hand_step(name: str, actions: list) -> Callable[[], None]:
    import gymnasium as gym

    env = gym.make(name)
    env.reset(seed=0)
    step, reset, as_tensor = env.step, env.reset, torch.as_tensor
    state = {"i": 0}

    def call() -> None:
        i = state["i"]
        state["i"] = (i + 1) % len(actions)
        obs, _, te, tr, _ = step(actions[i])
        as_tensor(obs)
        if te or tr:
            reset()

    return call


def _tdrl_step(name: str, actions: list, public: bool, **kwargs) -> Callable[[], None]:
    import numpy as np

    from tdrl._compat import td_read as read
    from tdrl.envs.libs.gym import GymEnv

    env = GymEnv(name, **kwargs)
    env.set_seed(0)
    root = env.reset()
    spec = env.action_spec
    tds = []
    for a in actions:
        td = root.clone()
        if isinstance(a, (int, np.integer)) and not kwargs.get("categorical_action_encoding"):
            td["action"] = torch.nn.functional.one_hot(torch.tensor(int(a)), spec.shape[-1])
        else:
            td["action"] = torch.as_tensor(np.asarray(a)).to(spec.dtype)
        tds.append(td)
    gym_reset = env._env.reset  # a finished episode restarts as the hand side's does: the row times the step
    step = env.step if public else env._step
    state = {"i": 0}

    def call() -> None:
        i = state["i"]
        state["i"] = (i + 1) % len(tds)
        out = step(tds[i])
        nxt = read(out, "next") if public else out
        if read(nxt, "done").item():  # (the collectors read the flag as cheaply)
            gym_reset()

    return call


def step_rows(rounds: int) -> list[dict]:
    cart, idp = _actions("CartPole-v1"), _actions(ENV)
    fns = {
        "hand cartpole": _hand_step("CartPole-v1", cart),
        "tdrl cartpole one-hot step": _tdrl_step("CartPole-v1", cart, public=True),
        "tdrl cartpole one-hot _step": _tdrl_step("CartPole-v1", cart, public=False),
        "tdrl cartpole index _step": _tdrl_step("CartPole-v1", cart, public=False, categorical_action_encoding=True),
        "hand idp": _hand_step(ENV, idp),
        "tdrl idp _step": _tdrl_step(ENV, idp, public=False),
    }
    us = median_cpu_us(fns, STEP_CALLS, rounds)
    hc, hi = us["hand cartpole"], us["hand idp"]
    figures = [
        ("GymEnv.step(td), CartPole-v1 one-hot, us/step", "tdrl cartpole one-hot step", hc),
        ("GymEnv._step(td), CartPole-v1 one-hot, us/step", "tdrl cartpole one-hot _step", hc),
        ("GymEnv._step(td), CartPole-v1 index, us/step", "tdrl cartpole index _step", hc),
        (f"GymEnv._step(td), {ENV}, us/step", "tdrl idp _step", hi),
    ]
    return [row(figure, us[name], ref, "us", "info", higher_is_better=False) for figure, name, ref in figures]


# --- one reset --------------------------------------------------------------------------------------------------------
def _hand_reset(name: str) -> Callable[[], None]:
    import gymnasium as gym

    env = gym.make(name)
    env.reset(seed=0)
    reset, as_tensor = env.reset, torch.as_tensor
    return lambda: as_tensor(reset()[0])


def _tdrl_reset(name: str, seed_transforms: bool = False) -> Callable[[], None]:
    from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv

    env = GymEnv(name)
    env.set_seed(0)
    if seed_transforms:
        env = TransformedEnv(env, Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()))
        env.transform[0].init_stats(num_iter=200, reduce_dim=0, cat_dim=0)
    env.reset()
    return lambda: env.reset()


def reset_rows(rounds: int) -> list[dict]:
    fns = {
        "hand cartpole": _hand_reset("CartPole-v1"),
        "tdrl cartpole": _tdrl_reset("CartPole-v1"),
        "hand idp": _hand_reset(ENV),
        "tdrl idp": _tdrl_reset(ENV),
        "tdrl idp seed transforms": _tdrl_reset(ENV, seed_transforms=True),
    }
    us = median_cpu_us(fns, RESET_CALLS, rounds)
    hc, hi = us["hand cartpole"], us["hand idp"]
    return [
        row("GymEnv.reset(), CartPole-v1, us/reset", us["tdrl cartpole"], hc, "us", "info", False),
        row(f"GymEnv.reset(), {ENV}, us/reset", us["tdrl idp"], hi, "us", "info", False),
        row(
            f"TransformedEnv(seed's 3 transforms).reset(), {ENV}, us/reset",
            us["tdrl idp seed transforms"],
            hi,
            "us",
            "info",
            False,
        ),
    ]


WHAT = {"rollout": lambda rounds: rollout_rows(), "step": step_rows, "reset": reset_rows}


def run(what: tuple[str, ...] = tuple(WHAT), rounds: int = 7) -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows: list[dict] = []
    for name in what:
        rows.extend(WHAT[name](rounds))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", nargs="+", default=list(WHAT), choices=list(WHAT))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print_rows(run(tuple(args.what), args.rounds))
