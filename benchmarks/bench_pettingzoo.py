"""PettingZoo backend: ``env.rollout`` of ``PettingZooEnv`` against PettingZoo's own step loop.

``simple_spread_v3`` (MPE, 3 agents, discrete actions), parallel API, episodes of 25 steps.
The reference steps the raw ``parallel_env`` with random actions drawn by its action spaces
and resets it when the episode ends; tdrl's rollout draws random actions from the group's
action spec, builds every step's TensorDict (the group's observations, rewards and done
flags stacked per agent) and resets on done. TorchRL 0.14.1's ``PettingZooWrapper`` rollout,
when installed, is measured beside them. No bar was set for this backend: the figure says
what the conversion to grouped TensorDicts costs per step.

Run: ``python -m benchmarks.bench_pettingzoo``
"""

from __future__ import annotations

import time
import warnings

from benchmarks._common import interleaved, print_rows, row

STEPS = 2_000


def _make():
    from mpe2 import simple_spread_v3

    return simple_spread_v3.parallel_env(N=3, max_cycles=25)


def _raw_loop():
    env = _make()
    env.reset(seed=0)
    spaces = {agent: env.action_space(agent) for agent in env.possible_agents}
    for agent, space in spaces.items():
        space.seed(hash(agent) % 1000)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(STEPS):
            if not env.agents:
                env.reset()
            env.step({agent: spaces[agent].sample() for agent in env.agents})
        return STEPS / (time.perf_counter() - start)

    return run


def _rollout(wrapper_cls):
    env = wrapper_cls(_make(), seed=0)

    def run() -> float:
        start = time.perf_counter()
        rollout = env.rollout(STEPS, break_when_any_done=False)
        return rollout.numel() / (time.perf_counter() - start)

    return run


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    from tdrl.envs import PettingZooWrapper

    contenders = {"raw": _raw_loop(), "tdrl": _rollout(PettingZooWrapper)}
    try:
        from torchrl.envs.libs.pettingzoo import PettingZooWrapper as TorchRLWrapper

        contenders["torchrl"] = _rollout(TorchRLWrapper)
    except ImportError:
        pass
    best = interleaved(contenders, rounds=5)
    return [
        row(
            "PettingZooEnv rollout, simple_spread_v3 (3 agents), vs PettingZoo's step loop",
            best["tdrl"],
            best["raw"],
            "steps/s",
            "none set",
            torchrl=best.get("torchrl"),
        )
    ]


if __name__ == "__main__":
    print_rows(run())
