"""One ClipPPOLoss + Adam minibatch step against the same step written in plain torch.

Bar (issue 6): tdrl's step costs <= 1.15x the plain-torch step, in the same run.
The setup is the seed tutorial's: batch 64, 3x256 Tanh MLPs for the actor (TanhNormal on
[-1, 1]) and the critic, clip 0.2, entropy coefficient 1e-4 (one-sample Monte-Carlo
entropy), smooth-L1 critic, gradient clipping at 1.0, Adam 3e-4. Every variant clips and
steps a parameter list built once, so the figures differ only by the loss computation.
TorchRL's ClipPPOLoss runs the same step for comparison when it is installed. Figures
are CPU milliseconds of the single torch thread per step, interleaved
(``bench_gae.call_times``): on an idle machine that is the wall time.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from benchmarks._common import print_rows, row
from benchmarks.bench_gae import call_times

OBS, ACT, BATCH, CELLS = 11, 1, 64, 256  # InvertedDoublePendulum's observation / action sizes
CLIP, ENT, LR, MAX_NORM = 0.2, 1e-4, 3e-4, 1.0


def _mlp(out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(OBS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, out),
    )


def _nets() -> tuple[nn.Module, nn.Module]:
    from tdrl.modules import NormalParamExtractor

    torch.manual_seed(0)
    return nn.Sequential(_mlp(2 * ACT), NormalParamExtractor()), _mlp(1)


def _data(actor_net: nn.Module) -> TensorDict:
    from tdrl.modules import ProbabilisticActor, TanhNormal

    actor = ProbabilisticActor(
        TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    torch.manual_seed(1)
    with torch.no_grad():
        from tdrl.envs.utils import ExplorationType, set_exploration_type

        with set_exploration_type(ExplorationType.RANDOM):
            data = actor(TensorDict({"observation": torch.randn(BATCH, OBS)}, [BATCH]))
    data["advantage"] = torch.randn(BATCH, 1)
    data["value_target"] = torch.randn(BATCH, 1)
    data["state_value"] = torch.randn(BATCH, 1)
    return data


def _plain_parts(actor_net: nn.Module, critic_net: nn.Module, data: TensorDict) -> dict[str, Callable[[], object]]:
    """The step a user writes by hand (closed-form tanh-normal log-prob, MC entropy), in parts:
    ``forward`` (the loss), ``fwd+bwd`` (and its gradients, dropped), ``step`` (the update)."""
    actor_net, critic_net = copy.deepcopy(actor_net), copy.deepcopy(critic_net)
    params = list(actor_net.parameters()) + list(critic_net.parameters())
    optim = torch.optim.Adam(params, LR)
    obs, action = data["observation"], data["action"]
    old_lp, adv, target = data["sample_log_prob"], data["advantage"], data["value_target"]
    lim = 1.0 - torch.finfo(torch.float32).resolution
    log2, half_log_2pi = math.log(2.0), 0.5 * math.log(2 * math.pi)

    def log_prob(u, loc, scale):
        z = (u - loc) / scale
        lp = -0.5 * z * z - scale.log() - half_log_2pi - 2.0 * (log2 - u - F.softplus(-2.0 * u))
        return lp.sum(-1)

    def forward() -> torch.Tensor:
        loc, scale = actor_net(obs)
        lp = log_prob(action.clamp(-lim, lim).atanh(), loc, scale)
        u = loc + scale * torch.randn_like(loc)
        entropy = -log_prob(u, loc, scale)
        ratio = (lp - old_lp).exp().unsqueeze(-1)
        gain = torch.minimum(ratio * adv, ratio.clamp(1 - CLIP, 1 + CLIP) * adv)
        loss_critic = F.smooth_l1_loss(critic_net(obs), target)
        return -gain.mean() + loss_critic - ENT * entropy.mean()

    def forward_backward() -> None:
        forward().backward()
        optim.zero_grad()

    def step() -> None:
        forward().backward()
        nn.utils.clip_grad_norm_(params, MAX_NORM)
        optim.step()
        optim.zero_grad()

    return {"forward": forward, "fwd+bwd": forward_backward, "step": step}


def _plain(actor_net: nn.Module, critic_net: nn.Module, data: TensorDict) -> Callable[[], None]:
    """The plain-torch update (see ``_plain_parts``)."""
    return cast("Callable[[], None]", _plain_parts(actor_net, critic_net, data)["step"])


def _loss_parts(loss_module: nn.Module, data: TensorDict) -> dict[str, Callable[[], object]]:
    """A loss module's update in the parts of ``_plain_parts``."""
    params = list(loss_module.parameters())  # as the plain step: the loss is what is compared
    optim = torch.optim.Adam(params, LR)

    def forward() -> torch.Tensor:
        out = loss_module(data)
        return out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]

    def forward_backward() -> None:
        forward().backward()
        optim.zero_grad()

    def step() -> None:
        forward().backward()
        nn.utils.clip_grad_norm_(params, MAX_NORM)
        optim.step()
        optim.zero_grad()

    return {"forward": forward, "fwd+bwd": forward_backward, "step": step}


def _loss_step(loss_module: nn.Module, data: TensorDict) -> Callable[[], None]:
    return cast("Callable[[], None]", _loss_parts(loss_module, data)["step"])


def _tdrl_loss(actor_net: nn.Module, critic_net: nn.Module) -> nn.Module:
    from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from tdrl.objectives import ClipPPOLoss

    actor = ProbabilisticActor(
        TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    critic = ValueOperator(copy.deepcopy(critic_net), in_keys=["observation"])
    loss = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=CLIP,
        entropy_bonus=True,
        entropy_coef=ENT,
        critic_coef=1.0,
        loss_critic_type="smooth_l1",
    )
    return loss


def _tdrl_parts(actor_net: nn.Module, critic_net: nn.Module, data: TensorDict) -> dict[str, Callable[[], object]]:
    return _loss_parts(_tdrl_loss(actor_net, critic_net), data)


def _tdrl(actor_net: nn.Module, critic_net: nn.Module, data: TensorDict) -> Callable[[], None]:
    return _loss_step(_tdrl_loss(actor_net, critic_net), data)


def _torchrl(actor_net: nn.Module, critic_net: nn.Module, data: TensorDict):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
            from torchrl.objectives import ClipPPOLoss
    except Exception:
        return None
    actor = ProbabilisticActor(
        TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    critic = ValueOperator(copy.deepcopy(critic_net), in_keys=["observation"])
    loss = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=CLIP,
        entropy_bonus=True,
        entropy_coeff=ENT,
        critic_coeff=1.0,
        loss_critic_type="smooth_l1",
    )
    data = data.clone()
    data["action_log_prob"] = data["sample_log_prob"]
    return _loss_step(loss, data)


def run() -> list[dict]:
    torch.set_num_threads(1)
    actor_net, critic_net = _nets()
    data = _data(actor_net)
    steps = {"plain": _plain(actor_net, critic_net, data), "tdrl": _tdrl(actor_net, critic_net, data)}
    trl = _torchrl(actor_net, critic_net, data)
    if trl is not None:
        steps["torchrl"] = trl
    for step in steps.values():  # warm-up
        for _ in range(10):
            step()
    ms = {k: 1e3 * v for k, v in call_times(steps, rounds=20, per_round=10).items()}
    return [
        row(
            "ClipPPOLoss + Adam step, batch 64, 3x256 MLPs",
            ms["tdrl"],
            ms["plain"],
            "ms/step",
            "<= 1.15x plain torch",
            higher_is_better=False,
            torchrl=ms.get("torchrl"),
            note="ratio = plain / tdrl (> 0.87 meets the bar)",
        ),
    ]


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print(
            f"tdrl / plain = {r['tdrl'] / r['reference']:.3f}x"
            + ("" if r["torchrl"] is None else f"; torchrl / plain = {r['torchrl'] / r['reference']:.3f}x")
        )
