"""The per-step policy call: tdrl's ProbabilisticActor against the same policy written by hand.

The policy is the seed tutorial's: a 3x256 tanh MLP (11 observation features, as
InvertedDoublePendulum) with ``NormalParamExtractor`` and a TanhNormal over 1 action,
writing the action and its log-probability. One observation per call, under
``torch.no_grad()`` and ``ExplorationType.RANDOM``, as a collector runs it.

References, measured in the same run and interleaved with tdrl:

- hand-written: ``loc, scale = net(obs)``; ``Normal(loc, scale)``; ``u = d.sample()``;
  ``a = tanh(u)``; ``log_prob = (d.log_prob(u) - log(1 - a^2 + 1e-6)).sum(-1)``
  (torch defaults, i.e. argument validation on, as a user writes it);
- the same with ``validate_args=False`` (a stricter reference);
- TorchRL 0.14.1's ``ProbabilisticActor`` on the same network, when importable.

A row times the actor against itself with its direct TanhNormal draw switched off
(``tdrl.modules.actors._DIRECT_DRAW``: the distribution object's path, the same outputs and
draws), to show what the direct draw saves. A last row times ``ValueOperator`` against its
bare network (and TorchRL's ValueOperator).

Bar (issue 4): ProbabilisticActor <= 1.2x the hand-written call.

Run: ``python -m benchmarks.bench_policy``.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable

import torch
from torch import distributions as D
from torch import nn

try:  # run as a module (python -m benchmarks.bench_policy) or as a script
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover
    from _common import print_rows, row  # type: ignore[no-redef]

OBS_DIM, ACT_DIM, CELLS = 11, 1, 256


def _net() -> nn.Sequential:
    from tensordict.nn import NormalParamExtractor

    return nn.Sequential(
        nn.Linear(OBS_DIM, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, 2 * ACT_DIM),
        NormalParamExtractor(),
    )


def _per_call(fn: Callable[[], object], number: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _interleaved_min(fns: dict[str, Callable[[], object]], rounds: int, number: int) -> dict[str, float]:
    """Best seconds per call of each function, measured in turn ``rounds`` times (fair on a noisy box)."""
    for fn in fns.values():  # warm up
        _per_call(fn, number // 4 + 1)
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], _per_call(fn, number))
    return best


def _actor(lib: str, net: nn.Module):
    from tensordict.nn import TensorDictModule

    if lib == "tdrl":
        from tdrl.modules import ProbabilisticActor, TanhNormal
        from tdrl.specs import Bounded
    else:
        from torchrl.data import Bounded
        from torchrl.modules import ProbabilisticActor, TanhNormal
    spec = Bounded(low=-torch.ones(ACT_DIM), high=torch.ones(ACT_DIM))
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        spec=spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": spec.space.low, "high": spec.space.high},
        return_log_prob=True,
    )


def run(rounds: int = 10, number: int = 300) -> list[dict]:
    """Time one policy call each way; rows compare tdrl with the hand-written call."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from tensordict import TensorDict
    from tensordict.nn import InteractionType, set_interaction_type

    net = _net()
    obs = torch.randn(OBS_DIM)
    td = TensorDict(observation=obs)
    actor = _actor("tdrl", net)

    def hand() -> object:
        loc, scale = net(obs)
        d = D.Normal(loc, scale)
        u = d.sample()
        a = torch.tanh(u)
        return a, (d.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)

    def hand_novalidate() -> object:
        loc, scale = net(obs)
        d = D.Normal(loc, scale, validate_args=False)
        u = d.sample()
        a = torch.tanh(u)
        return a, (d.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)

    def ours() -> object:
        return actor(td)

    from tdrl.modules import actors as tdrl_actors

    def ours_general() -> object:
        tdrl_actors._DIRECT_DRAW["on"] = False
        try:
            return actor(td)
        finally:
            tdrl_actors._DIRECT_DRAW["on"] = True

    def mlp_only() -> object:
        return net(obs)

    from tdrl.modules import ValueOperator

    value_net = nn.Sequential(
        nn.Linear(OBS_DIM, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, 1),
    )
    value = ValueOperator(value_net, in_keys=["observation"])
    td_value = TensorDict(observation=obs)

    fns: dict[str, Callable[[], object]] = {
        "hand": hand,
        "hand_nv": hand_novalidate,
        "tdrl": ours,
        "tdrl_general": ours_general,
        "mlp": mlp_only,
        "value": lambda: value(td_value),
        "value_net": lambda: value_net(obs),
    }
    try:
        from torchrl.modules import ValueOperator as TorchRLValueOperator

        torchrl_actor = _actor("torchrl", net)
        td_trl = TensorDict(observation=obs)
        fns["torchrl"] = lambda: torchrl_actor(td_trl)
        torchrl_value = TorchRLValueOperator(value_net, in_keys=["observation"])
        td_trl_value = TensorDict(observation=obs)
        fns["torchrl_value"] = lambda: torchrl_value(td_trl_value)
    except ImportError:
        pass
    with torch.no_grad(), set_interaction_type(InteractionType.RANDOM):
        best = _interleaved_min(fns, rounds, number)
    us = {k: v * 1e6 for k, v in best.items()}
    torchrl_us = us.get("torchrl")
    note = f"ratio = reference / tdrl (>= 0.83 meets the bar); MLP alone {us['mlp']:.1f} us"
    return [
        row(
            "ProbabilisticActor(TanhNormal) call, 1 obs, vs hand-written",
            us["tdrl"],
            us["hand"],
            "us/call",
            "<= 1.2x hand-written",
            higher_is_better=False,
            torchrl=torchrl_us,
            note=note,
        ),
        row(
            "ProbabilisticActor(TanhNormal) call, 1 obs, vs hand (no validation)",
            us["tdrl"],
            us["hand_nv"],
            "us/call",
            "info",
            higher_is_better=False,
            torchrl=torchrl_us,
            note=note,
        ),
        row(
            "ProbabilisticActor(TanhNormal) call, 1 obs, vs its distribution-object path",
            us["tdrl"],
            us["tdrl_general"],
            "us/call",
            "info",
            higher_is_better=False,
            note="ratio = general path / direct draw (same outputs and random draws)",
        ),
        row(
            "ValueOperator call, 1 obs, vs the bare 3x256 network",
            us["value"],
            us["value_net"],
            "us/call",
            "info",
            higher_is_better=False,
            torchrl=us.get("torchrl_value"),
            note="ratio = network / ValueOperator; the rest is reading and writing the TensorDict",
        ),
    ]


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print(f"  {r['figure']}: tdrl/reference = {r['tdrl'] / r['reference']:.3f}x  ({r['note']})")
