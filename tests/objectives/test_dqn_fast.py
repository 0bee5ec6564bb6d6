"""DQNLoss's tensor-only step: taken exactly when it is the same computation, and then equal to the general path."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torch import nn

import tdrl.objectives.dqn as dqn_module
from tdrl.modules import QValueActor
from tdrl.objectives import DQNLoss
from tdrl.specs import Categorical, OneHot

OBS, N_ACT, N = 4, 3, 32


def batch(seed: int = 0, one_hot: bool = False) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    action = torch.randint(N_ACT, (N,), generator=g)
    terminated = torch.rand(N, 1, generator=g) < 0.2
    return TensorDict(
        {
            "observation": torch.randn(N, OBS, generator=g),
            "action": nn.functional.one_hot(action, N_ACT) if one_hot else action,
            "next": {
                "observation": torch.randn(N, OBS, generator=g),
                "reward": torch.randn(N, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        [N],
    )


def make_loss(one_hot: bool = False, **kwargs) -> DQNLoss:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.ReLU(), nn.Linear(16, N_ACT))
    loss = DQNLoss(QValueActor(net, spec=OneHot(N_ACT) if one_hot else Categorical(N_ACT)), **kwargs)
    with torch.no_grad():  # the live network moves away from the target copy
        for p in loss.value_network.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return loss


def run(loss: DQNLoss, data: TensorDict, fast: bool) -> tuple[torch.Tensor, list[torch.Tensor], TensorDict]:
    dqn_module._FAST_PATH["enabled"] = fast
    loss.__dict__["_fast_state"] = None
    try:
        out = loss(data)["loss"]
        out.sum().backward()
        grads = [p.grad.clone() for p in loss.value_network.parameters()]
        loss.zero_grad()
        taken = loss.__dict__["_fast_state"].plan is not None
    finally:
        dqn_module._FAST_PATH["enabled"] = True
    assert taken == fast
    return out.detach(), grads, data


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"double_dqn": True},
        {"delay_value": False},
        {"loss_function": "smooth_l1"},
        {"reduction": "sum"},
        {"loss_function": "smooth_l1", "reduction": "sum"},
        {"loss_function": "l1", "reduction": "sum"},
        {"use_prioritized_weights": False},
    ],
)
@pytest.mark.parametrize("one_hot", [False, True])
def test_the_fast_step_equals_the_general_path(kwargs, one_hot):
    loss = make_loss(one_hot=one_hot, **kwargs)
    loss.make_value_estimator("td0", gamma=0.9)
    general, general_grads, general_data = run(loss, batch(one_hot=one_hot), fast=False)
    fast, fast_grads, fast_data = run(loss, batch(one_hot=one_hot), fast=True)
    assert loss.__dict__["_fast_state"].plan is not None
    torch.testing.assert_close(fast, general, rtol=0, atol=1e-6)
    for f, g in zip(fast_grads, general_grads):
        torch.testing.assert_close(f, g, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast_data["td_error"], general_data["td_error"], rtol=0, atol=1e-6)
    assert not fast_data["td_error"].requires_grad


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float64])
def test_a_one_hot_action_of_any_dtype_gives_the_general_paths_values(dtype):
    loss = make_loss(one_hot=True)
    loss.make_value_estimator("td0", gamma=0.9)
    data = batch(one_hot=True)
    data["action"] = data["action"].to(dtype)
    general, general_grads, _ = run(loss, data.clone(), fast=False)
    fast, fast_grads, _ = run(loss, data.clone(), fast=True)
    assert torch.equal(fast, general)
    for f, g in zip(fast_grads, general_grads):
        assert torch.equal(f, g)


@pytest.mark.parametrize("distance", ["l1", "l2", "smooth_l1"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_distance_kernels_equal_the_functionals_and_pickle(distance, reduction):
    import pickle

    from tdrl.objectives._dqn_fast import distance_kernel

    functional = {"l1": nn.functional.l1_loss, "l2": nn.functional.mse_loss, "smooth_l1": nn.functional.smooth_l1_loss}
    a = torch.randn(64, requires_grad=True)
    b = torch.randn(64) * 2
    kernel = pickle.loads(pickle.dumps(distance_kernel(distance, reduction)))  # a loss holding its plan pickles
    got = kernel(a, b)
    (grad,) = torch.autograd.grad(got.sum(), a)
    expected = functional[distance](a, b, reduction=reduction)
    (expected_grad,) = torch.autograd.grad(expected.sum(), a)
    assert torch.equal(got, expected)
    assert torch.equal(grad, expected_grad)


def test_an_existing_td_error_entry_is_overwritten_in_place_with_the_general_paths_values():
    loss = make_loss()
    general_data = batch()
    run(loss, general_data, fast=False)
    data = batch()
    stale = torch.full((N, 1), -1.0)
    data["td_error"] = stale  # a replay sample that carries the TD errors of an earlier update
    run(loss, data, fast=True)
    assert data["td_error"] is stale  # written into, as the general path's inplace set does
    assert not stale.requires_grad
    torch.testing.assert_close(stale, general_data["td_error"], rtol=0, atol=1e-6)


def test_the_target_network_is_followed_after_a_target_update():
    loss = make_loss()
    before = loss(batch())["loss"].item()
    loss.target_value_network_params.update_(loss.value_network_params)
    after = loss(batch())["loss"].item()
    assert loss.__dict__["_fast_state"].plan is not None
    dqn_module._FAST_PATH["enabled"] = False
    loss.__dict__["_fast_state"] = None
    try:
        assert loss(batch())["loss"].item() == pytest.approx(after, abs=1e-6)
    finally:
        dqn_module._FAST_PATH["enabled"] = True
    assert after != pytest.approx(before)


def _masked(data: TensorDict) -> TensorDict:
    data["collector", "mask"] = torch.ones(N, dtype=torch.bool)
    return data


def _weighted(data: TensorDict) -> TensorDict:
    data["priority_weight"] = torch.rand(N)
    return data


def _multi_step(data: TensorDict) -> TensorDict:
    data["steps_to_next_obs"] = torch.full((N, 1), 2)
    return data


@pytest.mark.parametrize("change", [_masked, _weighted, _multi_step])
def test_batches_the_fast_step_does_not_cover_take_the_general_path(change, monkeypatch):
    loss = make_loss()
    calls = []
    general = type(loss)._select
    monkeypatch.setattr(type(loss), "_select", lambda self, *a: calls.append(a[1]) or general(self, *a))
    loss(batch())
    assert calls == []  # a plain batch: the tensor-only step
    data = change(batch())
    loss(data)
    assert loss.__dict__["_fast_state"].plan is not None  # the configuration fits; the batch does not
    assert calls, "the general path reads the network inputs through _select"
    assert "td_error" in data.keys()


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_loss().make_value_estimator("td_lambda", gamma=0.9, lmbda=0.8),
        lambda: make_loss(reduction="none"),
        lambda: make_loss(use_prioritized_weights=True),
    ],
)
def test_configurations_the_fast_step_does_not_cover_have_no_plan(build):
    loss = build()
    data = batch(one_hot=loss.action_space == "one_hot")
    if loss.use_prioritized_weights is True:
        data["priority_weight"] = torch.ones(N)
    loss(data)
    assert loss.__dict__["_fast_state"].plan is None


def test_a_changed_estimator_is_picked_up():
    loss = make_loss()
    loss(batch())
    assert loss.__dict__["_fast_state"].plan is not None
    loss.make_value_estimator("td1", gamma=0.9)
    loss(batch())
    assert loss.__dict__["_fast_state"].plan is None
    loss.make_value_estimator("td0", gamma=0.5)
    data = batch()
    got = loss(data)["loss"]
    reference = copy.deepcopy(loss)
    dqn_module._FAST_PATH["enabled"] = False
    try:
        reference.__dict__["_fast_state"] = None
        torch.testing.assert_close(reference(batch())["loss"], got)
    finally:
        dqn_module._FAST_PATH["enabled"] = True


def _fast_reference(loss: DQNLoss, data: TensorDict) -> torch.Tensor:
    """The general path's loss on a copy of ``loss``."""
    reference = copy.deepcopy(loss)
    dqn_module._FAST_PATH["enabled"] = False
    try:
        reference.__dict__["_fast_state"] = None
        return reference(data)["loss"]
    finally:
        dqn_module._FAST_PATH["enabled"] = True


@pytest.mark.parametrize(
    "change",
    [
        lambda loss: setattr(loss, "loss_function", "smooth_l1"),
        lambda loss: setattr(loss, "reduction", "sum"),
        lambda loss: setattr(loss, "double_dqn", True),
        lambda loss: loss.value_estimator.set_keys(reward="other_reward"),
        lambda loss: setattr(loss.value_estimator.tensor_keys, "terminated", "done"),
        lambda loss: loss.make_value_estimator("td0", gamma=0.5),
        lambda loss: loss.target_value_network_params.set(
            ("module", "0", "module", "0", "weight"),
            torch.zeros_like(loss.target_value_network_params["module", "0", "module", "0", "weight"]),
        ),
        lambda loss: loss.target_value_network_params.set(
            ("module", "0", "module", "2", "bias"),
            torch.ones_like(loss.target_value_network_params["module", "0", "module", "2", "bias"]),
            inplace=True,
        ),
        lambda loss: loss.load_state_dict({k: v * 0.5 for k, v in loss.state_dict().items()}, assign=True),
        lambda loss: loss.value_network.eval(),
    ],
)
def test_a_change_after_the_first_call_is_seen_by_the_next(change):
    loss = make_loss()
    loss.make_value_estimator("td0", gamma=0.9)
    data = batch()
    data["next", "other_reward"] = data["next", "reward"] * 2
    loss(data.clone())
    change(loss)
    got = loss(data.clone())["loss"]
    assert loss.__dict__["_fast_state"].plan is not None
    torch.testing.assert_close(got, _fast_reference(loss, data.clone()), rtol=0, atol=1e-6)


def test_a_loss_moved_to_another_dtype_replans_on_the_new_tensors():
    loss = make_loss()
    loss(batch())
    before = loss.__dict__["_fast_state"]
    loss.double()
    data = batch().apply(lambda t: t.double() if t.is_floating_point() else t)
    got = loss(data.clone())["loss"]
    assert got.dtype == torch.float64
    assert loss.__dict__["_fast_state"] is not before
    torch.testing.assert_close(got, _fast_reference(loss, data.clone()), rtol=0, atol=1e-9)


def test_the_target_probe_chain_ends_at_the_leaf_params_leaf_reads():
    from tdrl._compat import FAST_PATHS, params_leaf, params_leaf_chain

    loss = make_loss()
    key = loss._target_probe_key
    chain = params_leaf_chain(loss.target_value_network_params, key)
    if not FAST_PATHS["tensordict"]:
        assert chain is None
        return
    assert chain is not None
    assert [part for _, part, _ in chain] == list(key)
    assert chain[-1][2] is params_leaf(loss.target_value_network_params, key)
    assert all(entries.get(part) is held for entries, part, held in chain)
