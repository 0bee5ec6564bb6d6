"""The seed tutorial's pipeline on the real env, piece by piece, against TorchRL 0.14.1.

Both libraries get the same networks, the same observation statistics and the same env
seed. With a deterministic policy the collected batches must be equal entry by entry; from
one batch, a whole PPO iteration (GAE, then 10 epochs of 15 minibatches of ClipPPOLoss and
Adam, with the same minibatch indices and the same entropy draws) must end at the same
weights. Together they say that a learning-curve difference between the two libraries on
the seed tutorial is seed noise, not a different algorithm.
"""

from __future__ import annotations

import copy
import importlib
import warnings

import pytest
import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn

pytest.importorskip("torchrl")
pytest.importorskip("mujoco")

ENV = "InvertedDoublePendulum-v4"
OBS_DIM = 11


def _lib(lib: str):
    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    return imp


def _mlp(out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(OBS_DIM, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out))


def _env(lib: str, loc: torch.Tensor, scale: torch.Tensor):
    imp = _lib(lib)
    envs = imp("envs")
    env = envs.TransformedEnv(
        imp("envs.libs.gym").GymEnv(ENV),
        envs.Compose(
            envs.ObservationNorm(loc=loc.clone(), scale=scale.clone(), in_keys=["observation"]),
            envs.DoubleToFloat(),
            envs.StepCounter(),
        ),
    )
    env.set_seed(0)
    return env


def _modules(lib: str, env, policy_net: nn.Module, value_net: nn.Module):
    modules = _lib(lib)("modules")
    policy = modules.ProbabilisticActor(
        TensorDictModule(copy.deepcopy(policy_net), ["observation"], ["loc", "scale"]),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=modules.TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=True,
    )
    value = modules.ValueOperator(module=copy.deepcopy(value_net), in_keys=["observation"])
    return policy, value


def _collector(lib: str):
    collectors = _lib(lib)("collectors")
    # TorchRL 0.14 calls it Collector; tdrl has both names
    return getattr(collectors, "SyncDataCollector", None) or collectors.Collector


@pytest.fixture
def nets():
    torch.manual_seed(0)
    policy_net = nn.Sequential(_mlp(2), NormalParamExtractor())
    with torch.no_grad():  # a policy that acts strongly, so episodes end at varied times
        policy_net[0][-1].weight.mul_(20)
    stats = (torch.randn(OBS_DIM, dtype=torch.float64) * 0.1, 1 + torch.rand(OBS_DIM, dtype=torch.float64))
    return policy_net, _mlp(1), stats


def test_collected_batches_match_torchrl(nets):
    policy_net, value_net, (loc, scale) = nets
    batches = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lib in ("torchrl", "tdrl"):
            env = _env(lib, loc, scale)
            policy, _ = _modules(lib, env, policy_net, value_net)
            explore = _lib(lib)("envs.utils").ExplorationType.DETERMINISTIC
            collector = _collector(lib)(env, policy, frames_per_batch=300, total_frames=600, exploration_type=explore)
            batches[lib] = [b.clone() for b in collector]
            collector.shutdown()
    keys = [
        ("observation",),
        ("action",),
        ("step_count",),
        ("next", "observation"),
        ("next", "reward"),
        ("next", "done"),
        ("next", "terminated"),
        ("next", "truncated"),
        ("next", "step_count"),
    ]
    assert sum(int(b["next", "done"].sum()) for b in batches["tdrl"]) >= 5  # resets happen inside
    for theirs, ours in zip(batches["torchrl"], batches["tdrl"], strict=True):
        for key in keys:
            torch.testing.assert_close(
                ours.get(key), theirs.get(key), rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}"
            )


def _ppo_parts(lib: str, env, policy_net: nn.Module, value_net: nn.Module):
    imp = _lib(lib)
    policy, value = _modules(lib, env, policy_net, value_net)
    advantage = imp("objectives.value").GAE(gamma=0.99, lmbda=0.95, value_network=value, average_gae=True)
    loss = imp("objectives").ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=0.2,
        entropy_bonus=True,
        entropy_coeff=1e-4,
        critic_coeff=1.0,
        loss_critic_type="smooth_l1",
    )
    return policy, advantage, loss, torch.optim.Adam(loss.parameters(), 3e-4)


def test_one_ppo_iteration_matches_torchrl(nets):
    policy_net, value_net, (loc, scale) = nets
    with torch.no_grad():
        policy_net[0][-1].weight.div_(20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = _env("torchrl", loc, scale)
        theirs = _ppo_parts("torchrl", env, policy_net, value_net)
        ours = _ppo_parts("tdrl", _env("tdrl", loc, scale), policy_net, value_net)
        collector = _collector("torchrl")(env, theirs[0], frames_per_batch=1000, total_frames=1000)
        batch = next(iter(collector))
        collector.shutdown()
    data = {"torchrl": batch.clone(), "tdrl": batch.clone()}
    data["tdrl"]["sample_log_prob"] = batch["action_log_prob"]
    order = torch.Generator().manual_seed(1)
    for epoch in range(10):
        perm = torch.randperm(1000, generator=order)
        for lib, (_, advantage, _, _) in (("torchrl", theirs), ("tdrl", ours)):
            advantage(data[lib])
        torch.testing.assert_close(data["tdrl"]["advantage"], data["torchrl"]["advantage"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(data["tdrl"]["value_target"], data["torchrl"]["value_target"], atol=1e-3, rtol=1e-4)
        for k in range(15):
            index = perm[k * 64 : (k + 1) * 64]
            for lib, (_, _, loss_module, optim) in (("torchrl", theirs), ("tdrl", ours)):
                torch.manual_seed(100 * epoch + k)  # the same Monte-Carlo entropy draw
                out = loss_module(data[lib][index].clone())
                (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
                optim.step()
                optim.zero_grad()
    moved = 0.0
    for p_theirs, p_ours, p_start in zip(
        theirs[2].parameters(), ours[2].parameters(), [*policy_net.parameters(), *value_net.parameters()], strict=True
    ):
        torch.testing.assert_close(p_ours, p_theirs, atol=2e-5, rtol=1e-4)
        moved = max(moved, (p_ours - p_start).abs().max().item())
    assert moved > 1e-3  # the iteration did train
