"""PettingZoo backend: ``PettingZooEnv`` rollouts and collection against PettingZoo's own step loop.

``simple_spread_v3`` (MPE, 3 agents, discrete actions), parallel API, episodes of 25 steps.
The reference steps the raw ``parallel_env`` with random actions drawn by its action spaces
and resets it when the episode ends. tdrl is measured on three roads, each producing the
grouped TensorDicts (the group's observations, rewards and done flags stacked per agent):

- ``rollout``: ``env.rollout(N)`` without a policy (random actions from the group's action
  spec, drawn at once; PettingZoo's arrays written straight into the result's buffers);
- ``rollout with a policy``: ``env.rollout(N, policy)`` with a policy that writes random
  actions, so that every step builds its TensorDicts (the per-step path of ``_step``);
- ``collector``: a ``SyncDataCollector`` without a policy (random frames), batches of 1,000.

TorchRL 0.14.1's ``PettingZooWrapper`` rollout, when installed, is measured beside the first.
No bar was set for this backend: the figures say what the conversion to grouped TensorDicts
costs per step.

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


def _rollout(wrapper_cls, with_policy: bool = False):
    env = wrapper_cls(_make(), seed=0)
    policy = None
    if with_policy:
        spec = env.full_action_spec

        def policy(td):
            return td.update(spec.rand())

    def run() -> float:
        start = time.perf_counter()
        rollout = env.rollout(STEPS, policy=policy, break_when_any_done=False)
        return rollout.numel() / (time.perf_counter() - start)

    return run


def _collector():
    from tdrl.collectors import SyncDataCollector
    from tdrl.envs import PettingZooWrapper

    collector = SyncDataCollector(PettingZooWrapper(_make(), seed=0), None, frames_per_batch=1_000, total_frames=-1)
    batches = iter(collector)
    next(batches)  # the first batch validates the policy and the env

    def run() -> float:
        start = time.perf_counter()
        frames = sum(next(batches).numel() for _ in range(STEPS // 1_000))
        return frames / (time.perf_counter() - start)

    return run


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    from tdrl.envs import PettingZooWrapper

    contenders = {
        "raw": _raw_loop(),
        "tdrl": _rollout(PettingZooWrapper),
        "tdrl_policy": _rollout(PettingZooWrapper, with_policy=True),
        "tdrl_collector": _collector(),
    }
    try:
        from torchrl.envs.libs.pettingzoo import PettingZooWrapper as TorchRLWrapper

        contenders["torchrl"] = _rollout(TorchRLWrapper)
        contenders["torchrl_policy"] = _rollout(TorchRLWrapper, with_policy=True)
    except ImportError:
        pass
    best = interleaved(contenders, rounds=5)
    figure = "PettingZooEnv {}, simple_spread_v3 (3 agents), vs PettingZoo's step loop"
    return [
        row(figure.format("rollout"), best["tdrl"], best["raw"], "steps/s", "none set", torchrl=best.get("torchrl")),
        row(
            figure.format("rollout with a policy"),
            best["tdrl_policy"],
            best["raw"],
            "steps/s",
            "none set",
            torchrl=best.get("torchrl_policy"),
        ),
        row(figure.format("SyncDataCollector"), best["tdrl_collector"], best["raw"], "steps/s", "none set"),
    ]


if __name__ == "__main__":
    print_rows(run())
