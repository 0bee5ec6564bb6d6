"""A plain TensorDictSequential policy runs module by module (collectors, rollouts) with the same results."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.utils import set_skip_existing
from torch import nn

from tdrl.modules import MLP, EGreedyModule, QValueActor
from tdrl.modules._lean import LeanSequence, lean_policy
from tdrl.specs import OneHot


def _policy(**kwargs) -> TensorDictSequential:
    torch.manual_seed(0)
    spec = OneHot(3)
    actor = QValueActor(MLP(in_features=4, out_features=3, num_cells=[8]), in_keys=["observation"], spec=spec)
    explore = EGreedyModule(spec, eps_init=0.5, eps_end=0.5, annealing_num_steps=10)
    scale = TensorDictModule(lambda v: v * 2, in_keys=["action_value"], out_keys=["doubled"])
    return TensorDictSequential(actor, explore, scale, **kwargs)


def _obs(n: int = 5) -> TensorDict:
    return TensorDict(observation=torch.randn(n, 4), batch_size=[n])


def test_same_outputs_and_random_draws_as_the_sequence():
    policy = _policy()
    lean = lean_policy(policy)
    assert isinstance(lean, LeanSequence)
    td = _obs()
    torch.manual_seed(1)
    full = policy(td.clone())
    torch.manual_seed(1)
    fast = lean(td.clone())
    assert set(full.keys()) == set(fast.keys())
    for key in full.keys():
        torch.testing.assert_close(fast[key], full[key], rtol=0, atol=0)
    after_fast = torch.rand(3)
    torch.manual_seed(1)
    policy(td.clone())
    assert torch.equal(after_fast, torch.rand(3))  # the same random draws were consumed


def test_in_place_like_the_sequence():
    td = _obs()
    out = lean_policy(_policy())(td)
    assert out is td
    assert "action" in td.keys()


@pytest.mark.parametrize("kwargs", [{"selected_out_keys": ["action"]}, {"partial_tolerant": True}, {"inplace": False}])
def test_sequences_that_are_not_plain_keep_their_forward(kwargs):
    policy = _policy(**kwargs)
    assert lean_policy(policy) is policy


def test_a_subclass_or_a_plain_module_is_returned_as_is():
    class Mine(TensorDictSequential):
        pass

    spec = OneHot(3)
    actor = QValueActor(nn.Linear(4, 3), in_keys=["observation"], spec=spec)
    assert lean_policy(Mine(actor)).__class__ is Mine
    assert lean_policy(actor) is actor
    fn = lambda td: td  # noqa: E731
    assert lean_policy(fn) is fn


def test_a_hook_registered_later_is_honoured():
    policy = _policy()
    lean = lean_policy(policy)
    seen = []
    handle = policy.register_forward_hook(lambda module, args, out: seen.append("outer"))
    lean(_obs())
    assert seen == ["outer"]
    handle.remove()
    scale = policy.module[2]
    scale.register_forward_hook(lambda module, args, out: seen.append("inner"))
    lean(_obs())
    assert seen == ["outer", "inner"]  # the lean step gave way to the module's own call


def test_skip_existing_takes_the_sequence_forward():
    policy = _policy()
    lean = lean_policy(policy)
    td = _obs()
    td["doubled"] = torch.full((5, 3), 7.0)
    with set_skip_existing(True):
        out = lean(td)
    assert torch.equal(out["doubled"], torch.full((5, 3), 7.0))


def test_an_error_names_the_module_that_failed():
    policy = _policy()
    with pytest.raises(KeyError) as err:
        lean_policy(policy)(TensorDict(other=torch.zeros(2, 4), batch_size=[2]))
    assert "Failed while executing module '0'." in getattr(err.value, "__notes__", [])


def test_a_module_returning_a_new_tensordict():
    class NewTd(nn.Module):
        def forward(self, td):
            out = td.clone()
            out["extra"] = td["observation"].sum(-1)
            return out

    from tensordict.nn import TensorDictModuleBase

    class Wrapper(TensorDictModuleBase):
        in_keys = ["observation"]  # noqa: RUF012
        out_keys = ["extra"]  # noqa: RUF012

        def __init__(self):
            super().__init__()
            self.inner = NewTd()

        def forward(self, td):
            return self.inner(td)

    for inplace in (None, True):
        policy = TensorDictSequential(Wrapper(), inplace=inplace)
        td = _obs()
        full = policy(td.clone())
        fast = lean_policy(policy)(td.clone())
        torch.testing.assert_close(fast["extra"], full["extra"])
        given = td.clone()
        returned = lean_policy(policy)(given)
        assert (returned is given) == (inplace is True)  # as the sequence: in place only with inplace=True
        assert (policy(given) is given) == (inplace is True)
        assert "extra" in returned.keys()


def test_hooks_on_modules_run_directly_are_honoured():
    """The exploration step and the Q-network run their forward directly; a hook on either still runs."""
    policy = _policy()
    lean = lean_policy(policy)
    calls: list[str] = []
    explore, net = policy[1], policy[0].module[0].module
    explore.register_forward_hook(lambda *args: calls.append("explore"))
    net.register_forward_pre_hook(lambda *args: calls.append("net"))
    lean(_obs())
    assert calls == ["net", "explore"]


def test_a_global_hook_sends_every_module_through_its_call():
    from torch.nn.modules.module import register_module_forward_hook

    policy = _policy()
    lean = lean_policy(policy)
    seen: list[type] = []
    handle = register_module_forward_hook(lambda module, args, out: seen.append(type(module)))
    try:
        lean(_obs())
    finally:
        handle.remove()
    assert EGreedyModule in seen
    assert MLP in seen


def test_call_direct_equals_the_module_call():
    from tdrl.modules._lean import call_direct

    layer = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    assert torch.equal(call_direct(layer, x), layer(x))
    assert call_direct(lambda v: v + 1, 1) == 2  # a plain callable is called as it is


def test_a_q_value_actor_runs_fused_and_still_sees_hooks_added_later():
    policy = _policy()
    lean = lean_policy(policy)
    assert isinstance(lean, LeanSequence)
    assert lean.fused == [True, False, False]  # the QValueActor: network and greedy head in one step
    actor = policy[0]
    td = _obs(1)[0]  # one env, as a collector steps it
    torch.manual_seed(2)
    full = policy(td.clone())
    torch.manual_seed(2)
    fast = lean(td.clone())
    for key in full.keys():
        assert torch.equal(full[key], fast[key]), key
    seen = []
    handle = actor.module[0].register_forward_hook(lambda *args: seen.append("net"))  # the network's TensorDictModule
    lean(td.clone())
    handle.remove()
    handle = actor.register_forward_hook(lambda *args: seen.append("actor"))
    lean(td.clone())
    handle.remove()
    assert seen == ["net", "actor"]


def _module(**kwargs) -> TensorDictModule:
    torch.manual_seed(0)
    return TensorDictModule(
        nn.Sequential(nn.Linear(4, 2), nn.Tanh()), in_keys=["observation"], out_keys=["action"], **kwargs
    )


def test_a_plain_tensordict_module_runs_lean_with_the_same_result_in_place():
    from tdrl.modules._lean import LeanModule

    module = _module()
    lean = lean_policy(module)
    assert isinstance(lean, LeanModule)
    td = _obs()
    full = module(td.clone())
    given = td.clone()
    out = lean(given)
    assert out is given  # written in place and returned, as the module's forward does
    assert set(out.keys()) == set(full.keys())
    assert torch.equal(out["action"], full["action"])
    with pytest.raises(KeyError, match="observation"):
        lean(TensorDict(other=torch.zeros(5, 4), batch_size=[5]))


@pytest.mark.parametrize("kwargs", [{"inplace": False}, {"inplace": "empty"}, {"method": "forward"}])
def test_a_tensordict_module_that_is_not_plain_is_returned_as_is(kwargs):
    module = _module(**kwargs)
    assert lean_policy(module) is module


def test_a_lean_module_gives_way_to_hooks_and_skip_existing():
    from torch.nn.modules.module import register_module_forward_hook

    module = _module()
    lean = lean_policy(module)
    seen: list[str] = []
    handle = module.register_forward_hook(lambda *args: seen.append("module"))
    lean(_obs())
    handle.remove()
    handle = register_module_forward_hook(lambda module, args, out: seen.append(type(module).__name__))
    try:
        lean(_obs())
    finally:
        handle.remove()
    assert seen[0] == "module"
    assert "TensorDictModule" in seen[1:]
    td = _obs()
    td["action"] = torch.full((5, 2), 7.0)
    with set_skip_existing(True):
        assert torch.equal(lean(td)["action"], torch.full((5, 2), 7.0))
