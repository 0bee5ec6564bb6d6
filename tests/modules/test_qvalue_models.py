"""QValueModule / QValueActor and MLP."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.modules import MLP, QValueActor, QValueModule
from tdrl.specs import Bounded, Categorical, Composite, MultiOneHot, OneHot


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


VALUES = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])


def test_qvalue_module_categorical_and_one_hot():
    td = QValueModule(action_space="categorical")(TensorDict(action_value=VALUES.clone(), batch_size=[2]))
    assert td["action"].tolist() == [1, 0]
    assert td["chosen_action_value"].tolist() == [[3.0], [5.0]]
    td = QValueModule(spec=OneHot(3))(TensorDict(action_value=VALUES.clone(), batch_size=[2]))
    assert td["action"].tolist() == [[False, True, False], [True, False, False]]
    assert td["action"].dtype == torch.bool


def test_qvalue_module_spec_shape_one_keeps_dim():
    td = QValueModule(spec=Categorical(3, shape=(1,)))(TensorDict(action_value=VALUES.clone(), batch_size=[2]))
    assert td["action"].shape == (2, 1)
    assert Categorical(3, shape=(2, 1)).is_in(td["action"])


def test_qvalue_module_reads_the_action_leaf_of_a_composite_spec():
    module = QValueModule(spec=Composite(action=OneHot(3)))
    assert module.action_space == "one_hot"
    td = module(TensorDict(action_value=VALUES.clone(), batch_size=[2]))
    assert td["action"].dtype == torch.bool
    assert module.spec["action"] == OneHot(3)


def test_qvalue_module_mask_and_mult_one_hot():
    mask = torch.tensor([[True, False, True], [False, True, True]])
    td = TensorDict(action_value=VALUES.clone(), mask=mask, batch_size=[2])
    QValueModule(action_space="categorical", action_mask_key="mask")(td)
    assert td["action"].tolist() == [2, 2]
    values = torch.tensor([[1.0, 2.0, 0.0, 5.0, 1.0]])
    td = QValueModule(spec=MultiOneHot([2, 3]))(TensorDict(action_value=values, batch_size=[1]))
    assert td["action"].long().tolist() == [[0, 1, 0, 1, 0]]
    assert td["chosen_action_value"].item() == 7.0


def test_qvalue_module_bad_input():
    with pytest.raises(ValueError, match="action space"):
        QValueModule()
    with pytest.raises(ValueError, match="discrete action spec"):
        QValueModule(spec=Bounded(-1.0, 1.0, shape=(2,)))
    with pytest.raises(ValueError, match="does not match"):
        QValueModule(action_space="one_hot", spec=Categorical(3))
    with pytest.raises(KeyError, match=r"'action_value'.*\['q'\]"):
        QValueModule(action_space="categorical")(TensorDict(q=VALUES, batch_size=[2]))


def test_qvalue_actor_plain_and_tensordict_module():
    net = nn.Linear(4, 3)
    actor = QValueActor(net, spec=OneHot(3))
    td = actor(TensorDict(observation=torch.randn(5, 4), batch_size=[5]))
    torch.testing.assert_close(td["chosen_action_value"], td["action_value"].max(-1, keepdim=True)[0])
    assert actor.spec["action"].is_in(td["action"])
    module = TensorDictModule(net, in_keys=["obs"], out_keys=["action_value"])
    actor2 = QValueActor(module, action_space="categorical")
    td2 = actor2(TensorDict(obs=td["observation"], batch_size=[5]))
    assert td2["action"].tolist() == td["action"].long().argmax(-1).tolist()
    with pytest.raises(KeyError, match="action values"):
        QValueActor(TensorDictModule(net, in_keys=["obs"], out_keys=["q"]), action_space="categorical")


class _TupleNet(nn.Module):
    """A network that returns its values in a 1-tuple (a TensorDictModule accepts either)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.linear(obs),)


@pytest.mark.parametrize("spec", [OneHot(3), Categorical(3), Categorical(3, shape=(1,))], ids=str)
@pytest.mark.parametrize("batch", [(), (5,)])
@pytest.mark.parametrize("safe", [False, True])
@pytest.mark.parametrize("tuple_net", [False, True])
def test_qvalue_actor_one_step_path_equals_the_module_by_module_path(spec, batch, safe, tuple_net):
    """The actor's single-step forward writes what its TensorDict module and greedy head write."""
    net = _TupleNet() if tuple_net else nn.Linear(4, 3)
    actor = QValueActor(net, spec=spec, safe=safe)
    assert actor.__dict__["_fused"] is not None  # the configuration the single step is for
    obs = torch.randn(*batch, 4)
    fused = actor(TensorDict(observation=obs, batch_size=batch))
    handle = actor.module[0].register_forward_hook(lambda *args: None)  # takes tensordict's path
    try:
        reference = actor(TensorDict(observation=obs, batch_size=batch))
    finally:
        handle.remove()
    assert (
        set(fused.keys()) == set(reference.keys()) == {"observation", "action", "action_value", "chosen_action_value"}
    )
    for key in reference.keys():
        assert torch.equal(fused[key], reference[key]), key
        assert fused[key].dtype == reference[key].dtype, key


@pytest.mark.parametrize("dtype", [torch.long, torch.bool])
def test_one_env_one_hot_actions_are_new_tensors(dtype):
    """One env's one-hot action is a copy of an identity row: equal to one_hot, sharing memory with nothing."""
    actor = QValueActor(nn.Linear(4, 3), spec=OneHot(3, dtype=dtype))
    obs = torch.randn(4)
    first = actor(TensorDict(observation=obs))["action"]
    second = actor(TensorDict(observation=obs))["action"]
    index = int(actor.module[0](TensorDict(observation=obs))["action_value"].argmax())
    expected = torch.nn.functional.one_hot(torch.tensor(index), 3).to(dtype)
    assert torch.equal(first, expected)
    assert torch.equal(second, expected)
    assert first.dtype == dtype
    assert first.shape == (3,)
    assert first.is_contiguous()
    assert first.data_ptr() != second.data_ptr()
    first.zero_()  # writing into a step's action changes neither the next step's nor the cached identity
    assert torch.equal(actor(TensorDict(observation=obs))["action"], expected)


def test_qvalue_actor_one_step_path_respects_head_hooks_and_missing_keys():
    actor = QValueActor(nn.Linear(4, 2), spec=OneHot(2))
    seen = []
    handle = actor.module[1].register_forward_hook(lambda module, args, out: seen.append(out["action"].clone()))
    try:
        td = actor(TensorDict(observation=torch.randn(4)))
    finally:
        handle.remove()
    assert len(seen) == 1
    assert torch.equal(seen[0], td["action"])
    with pytest.raises(KeyError, match="observation"):
        actor(TensorDict(obs=torch.randn(4)))


def test_mlp_shapes_and_options():
    mlp = MLP(in_features=3, out_features=2, num_cells=[8, 8], activation_class=nn.ReLU)
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert mlp(torch.randn(4, 3)).shape == (4, 2)
    lazy = MLP(out_features=1, depth=3, num_cells=16)
    assert isinstance(lazy[0], nn.LazyLinear)
    assert lazy.depth == 3
    assert lazy(torch.randn(7, 9)).shape == (7, 1)
    q = MLP(out_features=1, num_cells=[4])
    assert q(torch.randn(2, 3), torch.randn(2, 1)).shape == (2, 1)  # inputs concatenated
    assert MLP(in_features=2, out_features=(3, 2))(torch.randn(5, 2)).shape == (5, 3, 2)
    last = MLP(in_features=2, out_features=2, num_cells=[4], activate_last_layer=True, bias_last_layer=False)
    assert isinstance(last[-1], nn.Tanh)
    assert last[-2].bias is None
    drop = MLP(
        in_features=2,
        out_features=2,
        num_cells=[4],
        dropout=0.5,
        norm_class=nn.LayerNorm,
        norm_kwargs={"normalized_shape": 4},
    )
    assert [type(m) for m in drop] == [nn.Linear, nn.Dropout, nn.LayerNorm, nn.Tanh, nn.Linear]
    assert len(MLP(in_features=2, out_features=1)) == 1


def test_mlp_single_bias_last_layer_shares_one_learned_bias():
    mlp = MLP(in_features=3, out_features=4, num_cells=[8], single_bias_last_layer=True)
    last, shared = mlp[-2], mlp[-1]
    assert last.bias is None
    assert shared.bias.shape == (1,)
    assert shared.bias.item() == 0.0
    x = torch.randn(5, 3)
    with torch.no_grad():
        shared.bias.fill_(0.7)
    torch.testing.assert_close(mlp(x), last(mlp[1](mlp[0](x))) + 0.7)
    mlp(x).sum().backward()
    assert shared.bias.grad.item() == pytest.approx(20.0)  # every one of the 5 x 4 outputs adds it once
    # no bias at all wins over a shared one; a lazy first layer still works
    assert len(MLP(in_features=3, out_features=2, single_bias_last_layer=True, bias_last_layer=False)) == 1
    assert MLP(out_features=2, single_bias_last_layer=True)(torch.randn(2, 6)).shape == (2, 2)


def test_mlp_per_layer_keyword_arguments():
    mlp = MLP(
        in_features=2,
        out_features=1,
        num_cells=[4, 4],
        activation_class=nn.LeakyReLU,
        activation_kwargs=[{"negative_slope": 0.1}, {"negative_slope": 0.2}],
        norm_class=nn.LayerNorm,
        norm_kwargs=[{"normalized_shape": 4}, {"normalized_shape": 4, "elementwise_affine": False}],
        layer_kwargs=[{}, {"bias": False}, {"dtype": torch.float64}],
    )
    assert [m.negative_slope for m in mlp if isinstance(m, nn.LeakyReLU)] == [0.1, 0.2]
    assert [m.elementwise_affine for m in mlp if isinstance(m, nn.LayerNorm)] == [True, False]
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [m.bias is not None for m in linears] == [True, False, True]
    assert linears[-1].weight.dtype == torch.float64


def test_mlp_bad_input():
    with pytest.raises(ValueError, match="out_features"):
        MLP(in_features=2)
    with pytest.raises(ValueError, match="without depth"):
        MLP(out_features=1, num_cells=32)
    with pytest.raises(ValueError, match="agree"):
        MLP(out_features=1, num_cells=[3, 3], depth=3)
    with pytest.raises(ValueError, match=r"activation_kwargs has 1 dicts but the MLP has 2 activations \(depth=2"):
        MLP(out_features=1, num_cells=[3, 3], activation_kwargs=[{}])
    with pytest.raises(ValueError, match=r"layer_kwargs has 2 dicts but the MLP has 3 linear layers"):
        MLP(out_features=1, num_cells=[3, 3], layer_kwargs=[{}, {}])


# --- distributional (C51) -------------------------------------------------------------------------
def test_distributional_module_acts_on_the_expected_return_and_honours_the_mask():
    from tdrl.modules import DistributionalQValueModule

    support = torch.tensor([-1.0, 0.0, 1.0])
    # action 0: surely 0; action 1: -1 or +1 with 0.4 / 0.6 (expected +0.2); action 2: surely -1
    probs = torch.tensor([[[0.0, 0.4, 1.0], [1.0, 0.0, 0.0], [0.0, 0.6, 0.0]]]).clamp_min(1e-9)
    td = TensorDict(action_value=probs.log(), mask=torch.tensor([[True, False, True]]), batch_size=[1])
    assert DistributionalQValueModule("categorical", support=support)(td.clone())["action"].tolist() == [1]
    masked = DistributionalQValueModule("one_hot", support=support, action_mask_key="mask")(td.clone())
    assert masked["action"].tolist() == [[1, 0, 0]]
    torch.testing.assert_close(masked["action_value"], probs.log())  # the log-probabilities are kept
    assert "chosen_action_value" not in masked.keys()


def test_distributional_actor_normalizes_over_the_atoms_and_keeps_the_support():
    from tdrl.modules import DistributionalQValueActor

    support = torch.linspace(-2, 2, 5)
    net = nn.Sequential(nn.Linear(3, 10), nn.Unflatten(-1, (5, 2)))
    actor = DistributionalQValueActor(net, support=support, spec=Categorical(2))
    td = actor(TensorDict(observation=torch.randn(4, 3), batch_size=[4]))
    torch.testing.assert_close(td["action_value"].exp().sum(-2), torch.ones(4, 2))
    assert td["action"].shape == (4,)
    assert actor.support is support
    assert actor.action_space == "categorical"
    with pytest.raises(KeyError, match="not the action values 'action_value'"):
        DistributionalQValueActor(TensorDictModule(nn.Linear(3, 2), ["observation"], ["q"]), support=support)
    with pytest.raises(ValueError, match=r"must be \[\.\.\., 5, n_actions\].*got shape \(4, 2\)"):
        DistributionalQValueActor(nn.Linear(3, 2), support=support, spec=Categorical(2))(
            TensorDict(observation=torch.randn(4, 3), batch_size=[4])
        )
    with pytest.raises(ValueError, match="one_hot and categorical action spaces only"):
        DistributionalQValueActor(nn.Linear(3, 2), support=support, spec=MultiOneHot([2, 2]))
