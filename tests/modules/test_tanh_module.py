"""TanhModule: squashing onto the action box, its errors, and equality with TorchRL's in values and state dicts."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential

from tdrl.modules import MLP, TanhModule, ValueOperator
from tdrl.objectives import TD3Loss
from tdrl.specs import Bounded, Composite, Unbounded


def test_without_bounds_it_is_tanh_in_place():
    x = torch.randn(5, 3) * 3
    out = TanhModule(["param"])(TensorDict(param=x.clone(), batch_size=[5]))
    torch.testing.assert_close(out["param"], x.tanh())


def test_the_spec_gives_the_box_and_the_output_spans_it():
    spec = Bounded(torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 3.0]), shape=(2,))
    squash = TanhModule(["param"], ["action"], spec=spec)
    param = torch.tensor([[0.0, 0.0], [50.0, 50.0], [-50.0, -50.0]])
    action = squash(TensorDict(param=param, batch_size=[3]))["action"]
    torch.testing.assert_close(action[0], (spec.space.low + spec.space.high) / 2)  # tanh(0) = 0: the middle
    torch.testing.assert_close(action[1], spec.space.high)
    torch.testing.assert_close(action[2], spec.space.low)
    assert squash.spec is not None
    assert squash.spec["action"] is spec


def test_the_squash_is_increasing_and_keeps_the_gradient():
    param = torch.linspace(-4, 4, 41).unsqueeze(-1).requires_grad_()
    action = TanhModule(["param"], ["action"], low=-2.0, high=1.0)(TensorDict(param=param, batch_size=[41]))["action"]
    assert (action.diff(dim=0) > 0).all()
    (grad,) = torch.autograd.grad(action.sum(), param)
    # d/dx [low + (high - low) (tanh x + 1) / 2] = (high - low) / 2 * (1 - tanh^2 x)
    torch.testing.assert_close(grad, 1.5 * (1 - param.detach().tanh() ** 2))


def test_a_composite_spec_gives_each_output_its_bounds_and_nested_keys_name_the_buffers():
    spec = Composite(a=Bounded(-3.0, 0.0, shape=()), agent=Composite(b=Bounded(0.0, 3.0, shape=())))
    squash = TanhModule(["x", "y"], ["a", ("agent", "b")], spec=spec)
    assert set(squash.state_dict()) == {"a_low", "a_high", "agent_b_low", "agent_b_high"}
    out = squash(TensorDict(x=torch.full((4,), 30.0), y=torch.full((4,), -30.0), batch_size=[4]))
    torch.testing.assert_close(out["a"], torch.zeros(4))
    torch.testing.assert_close(out["agent", "b"], torch.zeros(4))


def test_clamp_keeps_the_output_inside_the_open_box():
    x = torch.tensor([-100.0, 100.0])
    plain = TanhModule(["x"])(TensorDict(x=x.clone()))["x"]
    clamped = TanhModule(["x"], clamp=True)(TensorDict(x=x.clone()))["x"]
    assert plain.abs().eq(1).all()
    assert (clamped.abs() < 1).all()


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match=re.escape("differ in length")):
        TanhModule(["a", "b"], ["c"])
    with pytest.raises(ValueError, match=re.escape("low=-1.0 for 'action' differs from the spec's low")):
        TanhModule(["p"], ["action"], spec=Bounded(-2.0, 2.0, shape=(1,)), low=-1.0)
    with pytest.raises(ValueError, match=re.escape("is below low")):
        TanhModule(["p"], low=1.0, high=-1.0)
    with pytest.raises(TypeError, match="spec must be a tdrl TensorSpec"):
        TanhModule(["p"], spec="box")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=re.escape("TanhModule reads the in_key 'param'")):
        TanhModule(["param"])(TensorDict(observation=torch.zeros(2)))


def test_an_unbounded_spec_leaves_the_default_box():
    out = TanhModule(["x"], spec=Unbounded(shape=(2,)))(TensorDict(x=torch.full((2,), 20.0)))["x"]
    torch.testing.assert_close(out, torch.ones(2))


def test_a_td3_actor_ending_in_a_tanh_module_trains_through_the_squash():
    spec = Bounded(-2.0, 2.0, shape=(1,))
    net = MLP(in_features=3, out_features=1, num_cells=[16])
    actor = TensorDictSequential(
        TensorDictModule(net, in_keys=["observation"], out_keys=["param"]),
        TanhModule(["param"], ["action"], spec=spec),
    )
    qvalue = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[16]), in_keys=["observation", "action"])
    loss = TD3Loss(actor, qvalue, action_spec=actor[1].spec)  # as TorchRL's TD3 example passes it
    torch.testing.assert_close(loss.max_action, spec.space.high)
    n = 8
    data = TensorDict(
        {
            "observation": torch.randn(n, 3),
            "action": torch.rand(n, 1) * 4 - 2,
            "next": {
                "observation": torch.randn(n, 3),
                "reward": torch.randn(n, 1),
                "done": torch.zeros(n, 1, dtype=torch.bool),
                "terminated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        [n],
    )
    out = loss(data)
    grads = torch.autograd.grad(out["loss_actor"], list(net.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------------------ TorchRL
CASES = {
    "default": {},
    "spec": {"spec": (-2.0, 2.0)},
    "low-high": {"low": 0.0, "high": 3.0},
    "clamp": {"low": -1.0, "high": 4.0, "clamp": True},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_gradients_and_state_dicts_equal_torchrl(case):
    trl_modules = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    kwargs = dict(CASES[case])
    ours_kwargs, theirs_kwargs = dict(kwargs), dict(kwargs)
    if "spec" in kwargs:
        low, high = kwargs["spec"]
        ours_kwargs["spec"] = Bounded(low, high, shape=(3,))
        theirs_kwargs["spec"] = trl_data.Bounded(low, high, shape=(3,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = trl_modules.TanhModule(["param"], ["action"], **theirs_kwargs)
    ours = TanhModule(["param"], ["action"], **ours_kwargs)
    # far from 0 too, where tanh saturates and clamp matters
    param = torch.cat([torch.randn(6, 3) * 2, torch.full((1, 3), 40.0), torch.full((1, 3), -40.0)]).requires_grad_()
    a_theirs = theirs(TensorDict(param=param, batch_size=[8]))["action"]
    a_ours = ours(TensorDict(param=param, batch_size=[8]))["action"]
    torch.testing.assert_close(a_ours, a_theirs, atol=1e-6, rtol=1e-6)
    weights = torch.randn(8, 3)
    (g_theirs,) = torch.autograd.grad((a_theirs * weights).sum(), param)
    (g_ours,) = torch.autograd.grad((a_ours * weights).sum(), param)
    torch.testing.assert_close(g_ours, g_theirs, atol=1e-6, rtol=1e-6)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    shape = theirs.action_low.shape
    fresh = TanhModule(["param"], ["action"], low=-torch.ones(shape), high=torch.ones(shape), clamp=ours.clamp)
    fresh.load_state_dict(theirs.state_dict())  # TorchRL's bounds load into ours
    torch.testing.assert_close(fresh(TensorDict(param=param.detach(), batch_size=[8]))["action"], a_ours.detach())
