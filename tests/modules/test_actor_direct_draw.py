"""ProbabilisticActor's direct TanhNormal draw (``_DistModule._draw_direct``) against its general path.

Each test calls an actor with the direct draw allowed and again, from the same random
state and on a copy of the input, with it switched off (``actors._DIRECT_DRAW``); the
TensorDicts written (keys, values, in order) and the random state afterwards must be
bitwise equal. The fallback tests check that the direct draw declines what it does not
plan for, and that the result is still the general path's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhDelta, TanhNormal, actors
from tdrl.specs import Bounded

OBS = 5


class _ScaleOne(nn.Module):
    """``loc`` of ``act`` features and one shared ``scale`` (broadcast by the distribution)."""

    def __init__(self, act: int) -> None:
        super().__init__()
        self.lin = nn.Linear(OBS, act + 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.lin(obs)
        return out[..., :-1], nn.functional.softplus(out[..., -1:]) + 0.01


def make_actor(act: int = 2, *, module: nn.Module | None = None, in_keys=None, **kwargs) -> ProbabilisticActor:
    torch.manual_seed(1)
    if module is None:
        module = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * act), NormalParamExtractor())
    kwargs.setdefault("distribution_class", TanhNormal)
    kwargs.setdefault("distribution_kwargs", {"low": -1.0, "high": 1.0})
    kwargs.setdefault("return_log_prob", True)
    return ProbabilisticActor(
        TensorDictModule(module, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"] if in_keys is None else in_keys,
        **kwargs,
    )


def both_ways(
    actor: ProbabilisticActor, td: TensorDict, exploration: ExplorationType = ExplorationType.RANDOM
) -> tuple[TensorDict, TensorDict]:
    """The actor's output with the direct draw and without, from the same random state."""
    actor(td.clone())  # the first call checks the spec (general path) and builds the box
    state = torch.get_rng_state()
    with set_exploration_type(exploration):
        direct = actor(td.clone())
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    actors._DIRECT_DRAW["on"] = False
    try:
        with set_exploration_type(exploration):
            general = actor(td.clone())
    finally:
        actors._DIRECT_DRAW["on"] = True
    assert torch.equal(after, torch.get_rng_state())
    return direct, general


def assert_same(direct: TensorDict, general: TensorDict) -> None:
    assert list(direct.keys(True, True)) == list(general.keys(True, True))
    for key in general.keys(True, True):
        a, b = direct.get(key), general.get(key)
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        assert a.requires_grad == b.requires_grad, key
        assert torch.equal(a, b), key


def obs(*batch: int, dtype: torch.dtype = torch.float32) -> TensorDict:
    return TensorDict(observation=torch.randn(*batch, OBS, dtype=dtype) * 3, batch_size=list(batch))


CONFIGS: dict[str, Callable[[], ProbabilisticActor]] = {
    "seed tutorial (tensor bounds)": lambda: make_actor(
        1,
        spec=Bounded(-torch.ones(1), torch.ones(1)),
        distribution_kwargs={"low": -torch.ones(1), "high": torch.ones(1)},
    ),
    "box [-2, 3]": lambda: make_actor(3, distribution_kwargs={"low": -2.0, "high": 3.0}),
    "per-dim box": lambda: make_actor(
        2, distribution_kwargs={"low": torch.tensor([-1.0, 0.0]), "high": torch.tensor([0.5, 4.0])}
    ),
    "older min/max names": lambda: make_actor(2, distribution_kwargs={"min": -3.0, "max": 3.0}),
    "tanh_loc": lambda: make_actor(2, distribution_kwargs={"tanh_loc": True, "upscale": 2.0}),
    "event_dims=0": lambda: make_actor(2, distribution_kwargs={"event_dims": 0}),
    "no log-prob": lambda: make_actor(2, return_log_prob=False),
    "no alias, own key": lambda: make_actor(2, log_prob_key="lp", log_prob_alias=None),
    "nested action": lambda: make_actor(2, out_keys=[("agents", "action")]),
    "shared scale": lambda: make_actor(3, module=_ScaleOne(3)),
    "dict in_keys": lambda: make_actor(2, in_keys={"loc": "loc", "scale": "scale"}),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_direct_draw_equals_general_path(name: str, batch: tuple) -> None:
    actor = CONFIGS[name]()
    td = obs(*batch)
    with set_exploration_type(ExplorationType.RANDOM):
        assert actor._head._draw_direct(actor(td.clone())) is not None
    with torch.no_grad():
        assert_same(*both_ways(actor, td))


def test_direct_draw_float64_builds_its_box_on_the_general_path_first() -> None:
    actor = make_actor(2).double()
    td = obs(3, dtype=torch.float64)
    head = actor._head
    with set_exploration_type(ExplorationType.RANDOM):
        assert head._draw_direct(td.clone().update({"loc": torch.zeros(3, 2, dtype=torch.float64)})) is None
        direct, general = both_ways(actor, td)
    assert direct["action"].dtype == torch.float64
    assert_same(direct, general)


def test_direct_draw_keeps_gradients() -> None:
    actor = make_actor(2, distribution_kwargs={"low": -2.0, "high": 2.0})
    direct, general = both_ways(actor, obs(4))
    grads = []
    for out in (direct, general):
        actor.zero_grad()
        (out["action"].sum() + out["sample_log_prob"].sum()).backward()
        grads.append([p.grad.clone() for p in actor.parameters()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("exploration", [ExplorationType.DETERMINISTIC, ExplorationType.MEAN, ExplorationType.MODE])
def test_fallback_non_random_exploration(exploration: ExplorationType) -> None:
    actor = make_actor(2)
    td = actor(obs(4))
    with set_exploration_type(exploration):
        assert actor._head._draw_direct(td) is None
        assert_same(*both_ways(actor, obs(4), exploration))


def _tanh_delta_actor() -> ProbabilisticActor:
    torch.manual_seed(1)
    return ProbabilisticActor(
        TensorDictModule(nn.Linear(OBS, 2), ["observation"], ["param"]),
        in_keys=["param"],
        distribution_class=TanhDelta,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )


FALLBACKS: dict[str, Callable[[], ProbabilisticActor]] = {
    "safe": lambda: make_actor(2, spec=Bounded(-0.5, 0.5, shape=(2,)), safe=True),
    "TanhDelta": lambda: _tanh_delta_actor(),
    "TanhNormal subclass": lambda: make_actor(2, distribution_class=type("MyTanhNormal", (TanhNormal,), {})),
    "torch Normal": lambda: make_actor(2, distribution_class=torch.distributions.Normal, distribution_kwargs={}),
}


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_fallback_configurations(name: str) -> None:
    actor = FALLBACKS[name]()
    td = obs(4)
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        assert actor._head._draw_direct(actor(td.clone())) is None
        assert_same(*both_ways(actor, td))


def test_fallback_first_call_checks_the_spec() -> None:
    actor = make_actor(2, spec=Bounded(-1.0, 1.0, shape=(3,)))  # the network gives 2 actions, not 3
    with set_exploration_type(ExplorationType.RANDOM), pytest.raises(ValueError, match="spec has shape"):
        actor(obs(4))


def test_fallback_missing_entry_raises_the_general_error() -> None:
    actor = make_actor(2)
    actor(obs(4))
    head = actor._head
    with set_exploration_type(ExplorationType.RANDOM):
        assert head._draw_direct(TensorDict(loc=torch.zeros(2))) is None
        with pytest.raises(KeyError, match="scale"):
            head(TensorDict(loc=torch.zeros(2)))


def test_fallback_after_the_builder_changes() -> None:
    actor = make_actor(2)
    td = obs(4)
    actor(td.clone())
    head = actor._head
    head._build = TanhNormal  # a plain class instead of the builder: the distribution object's path
    with set_exploration_type(ExplorationType.RANDOM):
        assert head._draw_direct(actor(td.clone())) is None
        assert_same(*both_ways(actor, td))


def test_fallback_under_compile_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    actor = make_actor(2)
    td = actor(obs(4))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with set_exploration_type(ExplorationType.RANDOM):
        assert actor._head._draw_direct(td) is None


def test_forward_hook_on_the_actor_still_runs() -> None:
    actor = make_actor(2)
    seen = []
    actor.register_forward_hook(lambda module, args, out: seen.append(sorted(out.keys())))
    with set_exploration_type(ExplorationType.RANDOM):
        direct, general = both_ways(actor, obs(4))
    assert_same(direct, general)
    assert len(seen) == 3
    assert "action" in seen[-1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (1,), (3,), (4, 2)])
def test_noise_of_a_contiguous_loc_is_randn(dtype: torch.dtype, shape: tuple) -> None:
    from tdrl.modules.distributions.tanh_normal import _standard_normal

    loc = torch.zeros(shape, dtype=dtype)
    state = torch.get_rng_state()
    fast = _standard_normal(loc.shape, loc)
    torch.set_rng_state(state)
    reference = torch.randn(shape, dtype=dtype)
    assert torch.equal(fast, reference)
    strided = torch.zeros(4, 6, dtype=dtype)[:, :3]  # a chunk of a network's output: not contiguous
    torch.set_rng_state(state)
    fast = _standard_normal(strided.shape, strided)
    torch.set_rng_state(state)
    assert torch.equal(fast, torch.randn(4, 3, dtype=dtype))
