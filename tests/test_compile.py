"""The policy, the value operator, GAE and the PPO, SAC and DQN losses under ``torch.compile``.

Each is compiled with ``fullgraph=True`` (a graph break anywhere, in tdrl or in
tensordict, fails the compile), run, and compared with the eager call: values, and the
gradients of the losses. Most tests use the ``aot_eager`` backend, which traces the
forward and the backward exactly as inductor receives them but skips code generation
(seconds instead of tens of seconds on CPU); one slow test per update runs inductor.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import MLP, NormalParamExtractor, ProbabilisticActor, QValueActor, TanhNormal, ValueOperator
from tdrl.objectives import A2CLoss, ClipPPOLoss, DQNLoss, ReinforceLoss, SACLoss
from tdrl.objectives.value import GAE
from tdrl.specs import Bounded, OneHot

OBS, ACT = 11, 1  # the seed tutorial's InvertedDoublePendulum sizes


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compile(fn, backend: str = "aot_eager"):
    return torch.compile(fn, fullgraph=True, backend=backend)


def _seed_actor(cells: int = 64, depth: int = 3, obs: int = OBS) -> ProbabilisticActor:
    """The seed tutorial's policy: MLP -> NormalParamExtractor -> ProbabilisticActor(TanhNormal)."""
    net = nn.Sequential(
        MLP(in_features=obs, out_features=2 * ACT, num_cells=[cells] * depth, activation_class=nn.Tanh),
        NormalParamExtractor(),
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=Bounded(-1.0, 1.0, shape=(ACT,)),
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )


def _critic(cells: int = 64, depth: int = 3) -> ValueOperator:
    return ValueOperator(
        MLP(in_features=OBS, out_features=1, num_cells=[cells] * depth, activation_class=nn.Tanh),
        in_keys=["observation"],
    )


def _transitions(batch: int, obs: int, action: torch.Tensor) -> TensorDict:
    return TensorDict(
        {
            "observation": torch.randn(batch, obs),
            "action": action,
            "next": {
                "observation": torch.randn(batch, obs),
                "reward": torch.randn(batch, 1),
                "done": torch.zeros(batch, 1, dtype=torch.bool),
                "terminated": torch.rand(batch, 1) < 0.1,
            },
        },
        [batch],
    )


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return grads


def _assert_close_dicts(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], **tol: float) -> None:
    assert actual.keys() == expected.keys()
    assert expected, "nothing to compare"
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, msg=lambda m, name=name: f"{name}: {m}", **tol)


# ---------------------------------------------------------------------------------------- modules
def test_seed_policy_compiles_without_break_and_matches_eager():
    actor = _seed_actor()
    data = TensorDict({"observation": torch.randn(16, OBS)}, [16])
    compiled = _compile(actor)
    with set_exploration_type(ExplorationType.RANDOM):  # read at call time: each type gets its own graph
        torch.manual_seed(3)
        eager = actor(data.clone())
        torch.manual_seed(3)
        sampled = compiled(data.clone())
    for key in ("loc", "scale", "action", "sample_log_prob"):
        torch.testing.assert_close(sampled[key], eager[key])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        deterministic = compiled(data.clone())
        torch.testing.assert_close(deterministic["action"], actor(data.clone())["action"])
    assert not torch.equal(deterministic["action"], sampled["action"])


def test_value_operator_compiles_without_break_and_matches_eager():
    critic = _critic()
    data = TensorDict({"observation": torch.randn(16, OBS)}, [16])
    torch.testing.assert_close(_compile(critic)(data.clone())["state_value"], critic(data.clone())["state_value"])


def test_gae_on_a_batch_compiles_without_break_and_matches_eager():
    critic = _critic()
    gae = GAE(gamma=0.99, lmbda=0.95, value_network=critic, average_gae=False)
    batch = _transitions(50, OBS, torch.zeros(50, ACT))
    batch["next", "done"] = batch["next", "terminated"].clone()

    def advantage(data: TensorDict) -> TensorDict:
        with torch.no_grad():
            return gae(data)

    eager = advantage(batch.clone())
    traced = _compile(advantage)(batch.clone())
    for key in ("advantage", "value_target", "state_value"):
        torch.testing.assert_close(traced[key], eager[key])


# ---------------------------------------------------------------------------------------- losses
def _ppo_setup(cells: int) -> tuple[ClipPPOLoss, TensorDict]:
    actor, critic = _seed_actor(cells), _critic(cells)
    loss = ClipPPOLoss(
        actor, critic, clip_epsilon=0.2, entropy_coef=1e-4, critic_coef=1.0, loss_critic_type="smooth_l1"
    )
    with torch.no_grad():
        data = actor(TensorDict({"observation": torch.randn(64, OBS)}, [64]))
    data["advantage"] = torch.randn(64, 1)
    data["value_target"] = torch.randn(64, 1)
    return loss, data


def _check_loss(loss: nn.Module, data: TensorDict, total, backend: str, **tol: float) -> TensorDict:
    """Runs ``loss`` eagerly and compiled on the same draws; compares outputs and gradients."""
    torch.manual_seed(5)
    eager = loss(data.clone())
    total(eager).backward()
    eager_grads = _grads(loss)
    compiled = _compile(loss, backend)
    torch.manual_seed(5)
    traced = compiled(data.clone())
    total(traced).backward()
    assert sorted(traced.keys()) == sorted(eager.keys())
    for key in eager.keys():
        torch.testing.assert_close(traced[key], eager[key], msg=lambda m, key=key: f"{key}: {m}", **tol)
    _assert_close_dicts(_grads(loss), eager_grads, **tol)
    return traced


def _ppo_total(out: TensorDict) -> torch.Tensor:
    return out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]


def test_clip_ppo_loss_forward_and_backward_compile_without_break():
    loss, data = _ppo_setup(cells=64)
    _check_loss(loss, data, _ppo_total, "aot_eager")


@pytest.mark.parametrize("loss_class", [A2CLoss, ReinforceLoss])
def test_a2c_and_reinforce_losses_compile_without_break(loss_class):
    loss, data = _ppo_setup(cells=16)
    loss = loss_class(loss.actor_network, loss.critic_network)
    _check_loss(loss, data, lambda out: sum(v for k, v in out.items() if k.startswith("loss_")), "aot_eager")


def test_clip_ppo_loss_skips_the_finite_check_only_when_compiled():
    loss, data = _ppo_setup(cells=16)
    data["advantage"][0] = float("nan")
    with pytest.raises(ValueError, match="advantage"):
        loss(data.clone())  # eager: the NaN is named
    out = _compile(loss)(data.clone())  # compiled: no host read, the NaN propagates
    assert torch.isnan(out["loss_objective"])


class _Concat(nn.Module):
    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.cat([observation, action], -1)


def _sac_setup(cells: int, batch: int, two_step_q: bool = False, **kwargs) -> tuple[SACLoss, TensorDict]:
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[cells] * 2), NormalParamExtractor()),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        spec=Bounded(-1.0, 1.0, shape=(1,)),
        distribution_class=TanhNormal,
    )
    if two_step_q:  # not one plain module: the ensemble runs through torch.vmap (or a loop)
        qvalue = TensorDictSequential(
            TensorDictModule(_Concat(), ["observation", "action"], ["observation_action"]),
            TensorDictModule(
                MLP(in_features=4, out_features=1, num_cells=[cells] * 2),
                ["observation_action"],
                ["state_action_value"],
            ),
        )
    else:
        qvalue = ValueOperator(
            MLP(in_features=4, out_features=1, num_cells=[cells] * 2), in_keys=["observation", "action"]
        )
    loss = SACLoss(actor, qvalue, **kwargs)
    loss.make_value_estimator("td0", gamma=0.99)
    return loss, _transitions(batch, 3, torch.rand(batch, 1) * 2 - 1)


def _sac_total(out: TensorDict) -> torch.Tensor:
    return out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]


@pytest.mark.parametrize(
    ("two_step_q", "deactivate_vmap"), [(False, False), (True, False), (True, True)], ids=["plain-q", "vmap", "loop"]
)
def test_sac_loss_forward_and_backward_compile_without_break(two_step_q, deactivate_vmap):
    loss, data = _sac_setup(cells=64, batch=64, two_step_q=two_step_q, deactivate_vmap=deactivate_vmap)
    _check_loss(loss, data, _sac_total, "aot_eager", rtol=1e-5, atol=1e-6)


def test_compiled_sac_loss_writes_the_td_error_and_follows_optimizer_steps():
    loss, data = _sac_setup(cells=16, batch=32)
    compiled = _compile(loss)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-2)
    for _ in range(2):  # the detached Q views and the member views follow the in-place steps
        batch = data.clone()
        torch.manual_seed(7)
        traced = compiled(batch)
        torch.manual_seed(7)
        eager = loss(data.clone())
        torch.testing.assert_close(traced["loss_actor"], eager["loss_actor"])
        torch.testing.assert_close(batch["td_error"], _eager_td_error(loss, data))
        _sac_total(traced).backward()
        optim.step()
        optim.zero_grad()


def _eager_td_error(loss: SACLoss, data: TensorDict) -> torch.Tensor:
    batch = data.clone()
    torch.manual_seed(7)
    loss(batch)
    return batch["td_error"]


def test_dqn_loss_forward_and_backward_compile_without_break():
    net = MLP(in_features=4, out_features=2, num_cells=[32, 32])
    actor = QValueActor(net, in_keys=["observation"], spec=OneHot(2))
    loss = DQNLoss(actor, action_space="one_hot", delay_value=True)
    loss.make_value_estimator("td0", gamma=0.9)
    with torch.no_grad():  # a target that differs from the live network
        for p in loss.target_value_network_params.values(True, True):
            p.add_(0.1)
    data = _transitions(64, 4, nn.functional.one_hot(torch.randint(2, (64,)), 2))
    _check_loss(loss, data, lambda out: out["loss"], "aot_eager")


# ---------------------------------------------------------------------------------------- inductor
@pytest.fixture
def _inductor_draws_like_eager():
    """Inductor's own random kernels draw other numbers than eager: use eager's for the comparison."""
    pytest.importorskip("torch._inductor")
    from torch._inductor import config

    with config.patch(fallback_random=True):
        yield


@pytest.mark.slow
@pytest.mark.usefixtures("_inductor_draws_like_eager")
def test_ppo_update_with_inductor_matches_eager():
    loss, data = _ppo_setup(cells=64)
    _check_loss(loss, data, _ppo_total, "inductor", rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("_inductor_draws_like_eager")
def test_sac_update_with_inductor_matches_eager():
    loss, data = _sac_setup(cells=64, batch=64)
    _check_loss(loss, data, _sac_total, "inductor", rtol=1e-4, atol=1e-5)
