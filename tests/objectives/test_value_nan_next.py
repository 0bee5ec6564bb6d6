"""NaN next observations (``compact_obs`` + ``NextStateReconstructor`` at trajectory ends) in the value estimators.

A NaN ``"next"`` input is replaced by the root input of the same step before the value
network runs, as TorchRL 0.14.1 does: the estimates are finite and equal TorchRL's
(differential, on the venv where it is installed); the caller's data keeps its NaN.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator

B, T, OBS = 2, 12, 3


def _data(flat: bool = False) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(B, T + 1, OBS, generator=g)
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    done[0, 4] = done[1, 7] = True
    terminated = done.clone()
    terminated[1, 7] = False  # a truncation: the substitute stands for the missing next observation
    nxt = obs[:, 1:].clone()
    nxt[done.squeeze(-1)] = float("nan")
    nxt[:, -1] = float("nan")  # the batch's last step: no next row
    data = TensorDict(
        {
            "observation": obs[:, :-1],
            "next": {
                "observation": nxt,
                "reward": torch.randn(B, T, 1, generator=g),
                "done": done,
                "terminated": terminated,
                "truncated": done & ~terminated,
            },
        },
        [B, T],
    )
    return data[0] if flat else data


def _net() -> TensorDictModule:
    torch.manual_seed(3)
    return TensorDictModule(nn.Linear(OBS, 1), ["observation"], ["state_value"])


ESTIMATORS = {
    "gae": lambda net: GAE(gamma=0.9, lmbda=0.8, value_network=net),
    "td0": lambda net: TD0Estimator(gamma=0.9, value_network=net),
    "td1": lambda net: TD1Estimator(gamma=0.9, value_network=net),
    "tdlambda": lambda net: TDLambdaEstimator(gamma=0.9, lmbda=0.8, value_network=net),
}


@pytest.mark.parametrize("flat", [False, True], ids=["batched", "flat"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimates_are_finite_and_use_the_root_observation(name, flat):
    data = _data(flat)
    out = ESTIMATORS[name](_net())(data.clone())
    assert torch.isfinite(out["advantage"]).all()
    assert torch.isfinite(out["value_target"]).all()
    # the same as giving the root observation where the next one is missing
    filled = data.clone()
    nxt = filled["next", "observation"]
    filled["next", "observation"] = torch.where(torch.isnan(nxt), filled["observation"], nxt)
    expected = ESTIMATORS[name](_net())(filled)
    torch.testing.assert_close(out["advantage"], expected["advantage"])
    assert torch.isnan(data["next", "observation"]).any()  # the input is not changed


def test_with_params_too():
    net = _net()
    params = TensorDict.from_module(net)
    out = GAE(gamma=0.9, lmbda=0.8, value_network=net)(_data().clone(), params=params, target_params=params)
    assert torch.isfinite(out["advantage"]).all()


def test_shifted_true_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"shifted=True is not supported.*Fix: drop shifted="):
        GAE(gamma=0.9, lmbda=0.8, value_network=_net(), shifted=True)
    assert GAE(gamma=0.9, lmbda=0.8, value_network=_net(), shifted=False).shifted is False


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_same_estimates_as_torchrl(name):
    value = pytest.importorskip("torchrl.objectives.value")
    theirs_cls = {
        "gae": value.GAE,
        "td0": value.TD0Estimator,
        "td1": value.TD1Estimator,
        "tdlambda": value.TDLambdaEstimator,
    }[name]
    kwargs = {"gamma": 0.9, **({"lmbda": 0.8} if name in ("gae", "tdlambda") else {})}
    ours = ESTIMATORS[name](_net())(_data().clone())
    theirs = theirs_cls(value_network=_net(), shifted=False, **kwargs)(_data().clone())
    torch.testing.assert_close(ours["advantage"], theirs["advantage"])
    torch.testing.assert_close(ours["value_target"], theirs["value_target"])
