"""tdrl under ``torch.compile`` against eager tdrl and the hand-written plain-torch update.

Three figures, each measured with every contender in the same run, interleaved
(``bench_gae.call_times``: medians of the calling thread's CPU time, warm-up excluded):

- the seed tutorial's PPO minibatch update (``bench_ppo_step``: batch 64, 3x256 Tanh MLPs,
  ClipPPOLoss, gradient clipping, Adam);
- the SAC update (``bench_sac_update``: batch 256, 2x256 ReLU MLPs, two Q-networks, Adam,
  SoftUpdate);
- one policy call of the seed tutorial's actor on one observation, without gradient, as a
  collector makes it.

Contenders: ``plain`` (the update written by hand in plain torch, eager), ``eager``
(tdrl), ``compiled loss`` (``torch.compile(loss, fullgraph=True)``; backward, clipping and
Adam eager) and ``compiled loss+step`` (the optimizer step, with the clipping, compiled
too). The compile time (wall seconds of the first three calls, inductor on this CPU, with
inductor's on-disk caches turned off; the first compile in a process also pays inductor's
one-time start-up, so it is the figure a user's first run sees) is printed
separately and excluded from the per-update figures. Run ``python -m benchmarks.bench_compile``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from benchmarks import bench_ppo_step, bench_sac_update
from benchmarks._common import print_rows, row
from benchmarks.bench_gae import call_times

Step = Callable[[], object]


def _compile(fn, fullgraph: bool = True):
    return torch.compile(fn, fullgraph=fullgraph, dynamic=False)


def _first_calls(step: Step, calls: int = 3) -> float:
    """Wall seconds of the first ``calls`` calls: the compilation (and a few updates)."""
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------- PPO
def _ppo_steps(actor_net: nn.Module, critic_net: nn.Module, data: TensorDict) -> dict[str, Step]:
    from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from tdrl.objectives import ClipPPOLoss

    def loss_module() -> ClipPPOLoss:
        actor = ProbabilisticActor(
            TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
            in_keys=["loc", "scale"],
            distribution_class=TanhNormal,
            distribution_kwargs={"low": -1.0, "high": 1.0},
            return_log_prob=True,
        )
        critic = ValueOperator(copy.deepcopy(critic_net), in_keys=["observation"])
        return ClipPPOLoss(
            actor,
            critic,
            clip_epsilon=bench_ppo_step.CLIP,
            entropy_coef=bench_ppo_step.ENT,
            critic_coef=1.0,
            loss_critic_type="smooth_l1",
        )

    def update(loss: nn.Module, params: list[nn.Parameter], compile_step: bool) -> Step:
        optim = torch.optim.Adam(params, bench_ppo_step.LR)

        def clip_and_step() -> None:
            nn.utils.clip_grad_norm_(params, bench_ppo_step.MAX_NORM)
            optim.step()

        apply = _compile(clip_and_step, fullgraph=False) if compile_step else clip_and_step

        def step() -> None:
            out = loss(data)
            (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
            apply()
            optim.zero_grad()

        return step

    eager, compiled, compiled_all = loss_module(), loss_module(), loss_module()
    return {
        "plain": bench_ppo_step._plain(actor_net, critic_net, data),
        "eager": update(eager, list(eager.parameters()), False),
        "compiled loss": update(_compile(compiled), list(compiled.parameters()), False),
        "compiled loss+step": update(_compile(compiled_all), list(compiled_all.parameters()), True),
    }


# ----------------------------------------------------------------------------------------- SAC
def _sac_steps(actor_net: nn.Module, q1: nn.Module, q2: nn.Module, data: TensorDict) -> dict[str, Step]:
    from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from tdrl.objectives import SACLoss, SoftUpdate
    from tdrl.specs import Bounded

    def loss_module() -> SACLoss:
        actor = ProbabilisticActor(
            TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
            in_keys=["loc", "scale"],
            spec=Bounded(-1.0, 1.0, shape=(bench_sac_update.ACT,)),
            distribution_class=TanhNormal,
        )
        qvalue = ValueOperator(copy.deepcopy(q1), in_keys=["observation", "action"])
        loss = SACLoss(actor, qvalue, alpha_init=bench_sac_update.ALPHA0)
        loss.make_value_estimator("td0", gamma=bench_sac_update.GAMMA)
        return loss

    def update(loss: SACLoss, compiled_loss: nn.Module, compile_step: bool) -> Step:
        optim = torch.optim.Adam(list(loss.parameters()), bench_sac_update.LR)
        updater = SoftUpdate(loss, tau=bench_sac_update.TAU)
        apply = _compile(optim.step, fullgraph=False) if compile_step else optim.step
        batch = data.clone()

        def step() -> None:
            out = compiled_loss(batch)
            (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
            apply()
            optim.zero_grad()
            updater.step()

        return step

    eager, compiled, compiled_all = loss_module(), loss_module(), loss_module()
    return {
        "plain": bench_sac_update._plain(actor_net, q1, q2, data),
        "eager": update(eager, eager, False),
        "compiled loss": update(compiled, _compile(compiled), False),
        "compiled loss+step": update(compiled_all, _compile(compiled_all), True),
    }


# -------------------------------------------------------------------------------------- policy
def _policy_steps(actor_net: nn.Module) -> dict[str, Step]:
    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.modules import ProbabilisticActor, TanhNormal

    actor = ProbabilisticActor(
        TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    compiled = _compile(actor)
    obs = torch.randn(1, bench_ppo_step.OBS)
    plain_net = copy.deepcopy(actor_net)

    def plain() -> None:  # what a hand-written collection loop computes per step
        with torch.no_grad():
            loc, scale = plain_net(obs)
            (loc + scale * torch.randn_like(loc)).tanh()

    def call(policy: nn.Module) -> Step:
        def step() -> None:
            with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
                policy(TensorDict({"observation": obs}, [1]))

        return step

    return {"plain": plain, "eager": call(actor), "compiled": call(compiled)}


# ----------------------------------------------------------------------------------------- run
def _measure(name: str, steps: dict[str, Step], rounds: int, per_round: int) -> tuple[dict[str, float], dict]:
    compile_s = {k: _first_calls(step) for k, step in steps.items() if k.startswith("compiled")}
    for step in steps.values():  # warm-up
        for _ in range(10):
            step()
    ms = {k: 1e3 * v for k, v in call_times(steps, rounds=rounds, per_round=per_round).items()}
    print(f"{name}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()))
    print(f"{name}: compile time (first 3 calls, wall) " + ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items()))
    return ms, compile_s


def run() -> list[dict]:
    torch.set_num_threads(1)
    from torch._inductor import config as inductor_config

    inductor_config.force_disable_caches = True  # cold compiles: what a user's first run pays
    rows = []
    actor_net, critic_net = bench_ppo_step._nets()
    ppo, ppo_compile = _measure(
        "PPO", _ppo_steps(actor_net, critic_net, bench_ppo_step._data(actor_net)), rounds=20, per_round=5
    )
    sac_actor, q1, q2 = bench_sac_update._nets()
    sac, sac_compile = _measure("SAC", _sac_steps(sac_actor, q1, q2, bench_sac_update._data()), rounds=20, per_round=5)
    policy, policy_compile = _measure("policy", _policy_steps(actor_net), rounds=20, per_round=10)
    for label, ms, compile_s, best in (
        ("ClipPPOLoss update, batch 64, 3x256 (compiled)", ppo, ppo_compile, "compiled loss+step"),
        ("SACLoss update, batch 256, 2x256 (compiled)", sac, sac_compile, "compiled loss+step"),
        ("seed policy call, 1 observation (compiled)", policy, policy_compile, "compiled"),
    ):
        rows.append(
            row(
                label,
                ms[best],
                ms["eager"],
                "ms/call",
                "compiled < eager (no bar)",
                higher_is_better=False,
                note=(
                    f"eager / compiled; plain torch {ms['plain']:.3f} ms (plain / compiled "
                    f"{ms['plain'] / ms[best]:.2f}); compile "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items())
                ),
            )
        )
    return rows


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print(f"{r['figure']}: {r['note']}")
