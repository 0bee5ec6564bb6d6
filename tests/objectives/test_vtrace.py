"""V-trace (kernel and module) and the deprecated TD*Estimate names: semantics, errors, TorchRL parity."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, ValueOperator
from tdrl.objectives.value import (
    TD0Estimate,
    TD0Estimator,
    TD1Estimate,
    TD1Estimator,
    TDLambdaEstimate,
    TDLambdaEstimator,
    VTrace,
)
from tdrl.objectives.value.functional import td_lambda_return_estimate, vtrace_advantage_estimate

B, T, OBS, ACT = 2, 12, 3, 2


def _signals(seed: int, shape=(B, T, 1)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(shape, generator=g) < 0.15
    truncated = (torch.rand(shape, generator=g) < 0.15) & ~terminated
    out = {k: torch.randn(shape, generator=g) for k in ("log_pi", "log_mu", "value", "next_value", "reward")}
    out.update(done=terminated | truncated, terminated=terminated)
    return out


def _nets(act: int = ACT) -> tuple[TensorDictModule, ProbabilisticActor, ValueOperator]:
    torch.manual_seed(3)
    body = nn.Sequential(nn.Linear(OBS, 2 * act), NormalParamExtractor())
    value = nn.Linear(OBS, 1)
    params = TensorDictModule(body, ["observation"], ["loc", "scale"])
    actor = ProbabilisticActor(params, in_keys=["loc", "scale"], distribution_class=torch.distributions.Normal)
    return params, actor, ValueOperator(value, in_keys=["observation"])


def _rollout(params: TensorDictModule, seed: int = 0) -> TensorDict:
    """A rollout whose actions are the current policy's means, with random stored log-probs."""
    s = _signals(seed)
    obs = torch.randn(B, T, OBS, generator=torch.Generator().manual_seed(seed + 100))
    next_obs = torch.randn(B, T, OBS, generator=torch.Generator().manual_seed(seed + 200))
    with torch.no_grad():
        action = params(TensorDict({"observation": obs}, [B, T]))["loc"]
    nxt = {"observation": next_obs, "reward": s["reward"], "done": s["done"], "terminated": s["terminated"]}
    data = {"observation": obs, "action": action, "sample_log_prob": s["log_mu"].squeeze(-1), "next": nxt}
    return TensorDict(data, [B, T])


def _consistent(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inside a trajectory, the next state's value is the following step's (as a value network gives)."""
    following = torch.cat([s["value"][:, 1:], s["next_value"][:, -1:]], 1)
    s["next_value"] = torch.where(s["done"], s["next_value"], following)
    return s


# ------------------------------------------------------------------------------ kernel
def test_on_policy_vtrace_target_is_the_td1_return():
    s = _consistent(_signals(0))
    same = s["log_pi"]
    _, vs = vtrace_advantage_estimate(
        0.9, same, same, s["value"], s["next_value"], s["reward"], s["done"], s["terminated"]
    )
    td1 = td_lambda_return_estimate(0.9, 1.0, s["next_value"], s["reward"], s["done"], s["terminated"])
    torch.testing.assert_close(vs, td1)


def test_vtrace_trace_stops_where_the_ratio_is_zero():
    s = _signals(1)
    s["done"] = s["terminated"] = torch.zeros_like(s["done"])
    s = _consistent(s)
    log_pi = torch.zeros_like(s["log_pi"])
    log_mu = torch.zeros_like(log_pi)
    log_pi[:, 5] = -torch.inf  # pi never takes the step-5 action: no correction there, and the trace is cut
    value, next_value, reward, done = s["value"], s["next_value"], s["reward"], s["done"]
    adv, vs = vtrace_advantage_estimate(0.9, log_pi, log_mu, value, next_value, reward, done, done)
    torch.testing.assert_close(vs[:, 5], value[:, 5])
    torch.testing.assert_close(adv[:, 5], torch.zeros_like(adv[:, 5]))
    # on both sides of step 5, the on-policy return of that segment alone
    for part in (slice(0, 5), slice(6, T)):
        td1 = td_lambda_return_estimate(0.9, 1.0, next_value[:, part], reward[:, part], done[:, part], done[:, part])
        torch.testing.assert_close(vs[:, part], td1)


def test_vtrace_kernel_refuses_mismatched_shapes():
    s = _signals(0)
    with pytest.raises(ValueError, match="log_pi"):
        vtrace_advantage_estimate(
            0.9, s["log_pi"].squeeze(-1), s["log_mu"], s["value"], s["next_value"], s["reward"], s["done"]
        )


@pytest.fixture
def torchrl_value():
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchrl.objectives.value as trl_value
        from torchrl.objectives.value import functional as trl_f
    return trl_value, trl_f


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("rho", "c"), [(1.0, 1.0), (2.0, 0.5)])
def test_vtrace_kernel_matches_torchrl(torchrl_value, seed, rho, c):
    _, trl_f = torchrl_value
    s = _signals(seed)
    for gamma in (0.95, torch.full((B, T, 1), 0.8)):
        args = (gamma, s["log_pi"], s["log_mu"], s["value"], s["next_value"], s["reward"], s["done"], s["terminated"])
        ours = vtrace_advantage_estimate(*args, rho_thresh=rho, c_thresh=c)
        theirs = trl_f.vtrace_advantage_estimate(*args, rho_thresh=rho, c_thresh=c)
        torch.testing.assert_close(ours, theirs)


# ------------------------------------------------------------------------------ module
def test_vtrace_module_matches_the_kernel_on_the_taken_actions():
    params, actor, critic = _nets()
    data = _rollout(params)
    vtrace = VTrace(gamma=0.9, actor_network=actor, value_network=critic, rho_thresh=1.5, c_thresh=0.8)
    out = vtrace(data.clone())
    with torch.no_grad():
        log_pi = actor.get_dist(data.select("observation")).log_prob(data["action"]).sum(-1, keepdim=True)
        value, next_value = (
            critic(data.select("observation"))["state_value"],
            critic(data["next"].clone())["state_value"],
        )
    nxt = data["next"]
    adv, vs = vtrace_advantage_estimate(
        0.9, log_pi, data["sample_log_prob"].unsqueeze(-1), value, next_value,
        nxt["reward"], nxt["done"], nxt["terminated"], rho_thresh=1.5, c_thresh=0.8,
    )  # fmt: skip
    torch.testing.assert_close(out["advantage"], adv)
    torch.testing.assert_close(out["value_target"], vs)
    torch.testing.assert_close(vtrace.value_estimate(data.clone()), vs)


def test_vtrace_module_matches_torchrl(torchrl_value):
    """TorchRL's VTrace values the actor's deterministic action; with data whose actions are those, both agree.

    (TorchRL reads one log-prob per element of the action: a one-dim action keeps it per step.)
    """
    trl_value, _ = torchrl_value
    from torchrl.envs.utils import ExplorationType as TrlExplorationType
    from torchrl.envs.utils import set_exploration_type as trl_set_exploration_type
    from torchrl.modules import ProbabilisticActor as TrlActor
    from torchrl.modules import ValueOperator as TrlValueOperator

    params, actor, critic = _nets(act=1)
    trl_actor = TrlActor(params, in_keys=["loc", "scale"], distribution_class=torch.distributions.Normal)
    trl_critic = TrlValueOperator(critic.module, in_keys=["observation"])
    for average_adv in (False, True):
        data = _rollout(params, seed=4)
        data["action_log_prob"] = data["sample_log_prob"]
        ours = VTrace(gamma=0.9, actor_network=actor, value_network=critic, c_thresh=0.7, average_adv=average_adv)
        theirs = trl_value.VTrace(
            gamma=0.9, actor_network=trl_actor, value_network=trl_critic, c_thresh=0.7, average_adv=average_adv
        )
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            expected = ours(data.clone())
        with trl_set_exploration_type(TrlExplorationType.DETERMINISTIC):
            got = theirs(data.clone())
        torch.testing.assert_close(expected["advantage"], got["advantage"])
        torch.testing.assert_close(expected["value_target"], got["value_target"])


def test_vtrace_reads_action_log_prob_and_renamed_keys():
    params, actor, critic = _nets()
    data = _rollout(params)
    reference = VTrace(gamma=0.9, actor_network=actor, value_network=critic)(data.clone())
    renamed = data.clone()
    renamed.rename_key_("sample_log_prob", "action_log_prob")
    renamed.rename_key_("action", "act")
    vtrace = VTrace(gamma=0.9, actor_network=actor, value_network=critic).set_keys(action="act")
    torch.testing.assert_close(vtrace(renamed)["value_target"], reference["value_target"])


def test_vtrace_errors_name_the_missing_key_and_the_fix():
    params, actor, critic = _nets()
    vtrace = VTrace(gamma=0.9, actor_network=actor, value_network=critic)
    with pytest.raises(KeyError, match=r"sample_log_prob.*return_log_prob=True"):
        vtrace(_rollout(params).exclude("sample_log_prob"))
    with pytest.raises(KeyError, match=r"'action'.*set_keys"):
        vtrace(_rollout(params).exclude("action"))
    with pytest.raises(ValueError, match="gamma must be a scalar"):
        VTrace(gamma=torch.ones(3), actor_network=actor, value_network=critic)
    with pytest.raises(TypeError, match="get_dist"):
        VTrace(gamma=0.9, actor_network=critic, value_network=critic)
    with pytest.raises(TypeError, match="next_value= is not supported"):
        vtrace.value_estimate(_rollout(params), next_value=torch.zeros(B, T, 1))


def test_vtrace_gives_the_actor_no_gradient():
    params, actor, critic = _nets()
    vtrace = VTrace(gamma=0.9, actor_network=actor, value_network=critic, differentiable=True)
    out = vtrace(_rollout(params))
    out["value_target"].sum().backward()
    assert all(p.grad is None for p in params.parameters())
    assert critic.module.weight.grad is not None


# ------------------------------------------------------------------------------ deprecated names
@pytest.mark.parametrize(
    ("old", "new", "kwargs"),
    [
        (TD0Estimate, TD0Estimator, {}),
        (TD1Estimate, TD1Estimator, {}),
        (TDLambdaEstimate, TDLambdaEstimator, {"lmbda": 0.9}),
    ],
)
def test_deprecated_estimate_names_warn_and_compute_the_same(old, new, kwargs):
    s = _signals(2)
    data = TensorDict(
        {
            "state_value": s["value"],
            "next": {
                "state_value": s["next_value"],
                "reward": s["reward"],
                "done": s["done"],
                "terminated": s["terminated"],
            },
        },
        [B, T],
    )
    with pytest.warns(UserWarning, match=f"{old.__name__} is the old name of {new.__name__}"):
        estimator = old(gamma=0.9, value_network=None, **kwargs)
    assert isinstance(estimator, new)
    expected = new(gamma=0.9, value_network=None, **kwargs)(data.clone())["value_target"]
    torch.testing.assert_close(estimator(data.clone())["value_target"], expected)
