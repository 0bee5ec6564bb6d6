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

The last rows time one reset and one step (the collectors' calls: ``env.reset()`` and
``env._step(td)``) of the transformed env, of its own base env, of the hand-written
loop (gymnasium, ``torch.as_tensor``, ``torch.addcmul(loc, x, scale).float()``, a step
count) and of gymnasium alone, in microseconds of CPU time per call, medians over interleaved rounds
(``python -m benchmarks.bench_transforms --hooks`` runs only those).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from benchmarks._common import interleaved, median_cpu_us, print_rows, row

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


# --- one reset, one step ----------------------------------------------------------------------------------------------
HOOK_CALLS = 400


def _hand(loc: torch.Tensor, scale: torch.Tensor):
    """The hand loop's reset and step: gymnasium, the observation normalized by hand, a step count."""
    import gymnasium as gym

    env = gym.make(ENV)
    env.reset(seed=0)
    action = torch.zeros(1).numpy()
    state = {"count": 0}

    def reset() -> None:
        obs, _ = env.reset()
        state["obs"] = torch.addcmul(loc, torch.as_tensor(obs), scale).float()
        state["count"] = 0

    def step() -> None:
        obs, reward, terminated, truncated, _ = env.step(action)
        state["obs"] = torch.addcmul(loc, torch.as_tensor(obs), scale).float()
        state["reward"] = reward
        state["count"] += 1
        if terminated or truncated:
            env.reset()

    def gym_reset() -> None:
        env.reset()

    def gym_step() -> None:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    return reset, step, gym_reset, gym_step


def _stepper(env, gym_env):
    """``env._step`` on a fixed root (the collectors' direct call); a finished episode restarts gymnasium."""
    from tdrl._compat import td_read

    root = env.reset()
    root.set("action", torch.zeros(1))

    def step() -> None:
        if td_read(env._step(root), "done").item():
            gym_env.reset()

    return step


def hook_rows(rounds: int = 9) -> list[dict]:
    """One reset and one step: the transformed env, its base env and the hand loop, us per call."""
    base, env = _tdrl_envs()
    norm = env.transform[0]
    hand_reset, hand_step, gym_reset, gym_step = _hand(norm.loc.clone(), norm.scale.clone())
    gym_env = base._env
    resets = median_cpu_us(
        {"gym": gym_reset, "hand": hand_reset, "base": base.reset, "transformed": env.reset},
        calls=HOOK_CALLS,
        rounds=rounds,
    )
    steps = median_cpu_us(
        {"gym": gym_step, "hand": hand_step, "base": _stepper(base, gym_env), "transformed": _stepper(env, gym_env)},
        calls=HOOK_CALLS,
        rounds=rounds,
    )
    rows = []
    for what, us in (("reset()", resets), ("_step(td)", steps)):
        chain = us["transformed"] - us["base"]
        rows.append(
            row(
                f"TransformedEnv(seed's 3 transforms).{what} vs the hand loop ({ENV}), us/call",
                us["transformed"],
                us["hand"],
                "us",
                "info",
                higher_is_better=False,
                note=f"gymnasium alone {us['gym']:.1f} us, base env alone {us['base']:.1f} us; "
                f"the transform chain adds {chain:.1f} us",
            )
        )
    return rows


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
        *hook_rows(),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--hooks", action="store_true", help="time only one reset and one step")
    args = parser.parse_args()
    if args.hooks:
        warnings.filterwarnings("ignore")
        torch.set_num_threads(1)
        for r in hook_rows():
            figures = f"tdrl {r['tdrl']:.1f} us, hand {r['reference']:.1f} us, ratio {r['ratio']:.2f}"
            print(f"{r['figure']}: {figures}; {r['note']}")
    else:
        print_rows(run())
