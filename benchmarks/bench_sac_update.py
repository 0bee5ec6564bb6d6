"""One SACLoss + Adam + SoftUpdate update against the same update written in plain torch.

Bar (issue 17): tdrl's update costs <= 1.1x the plain-torch update, in the same run.
The setup is Pendulum-sized (observation 3, action 1), batch 256, actor and two
Q-networks of 2x256 ReLU, TanhNormal actor, learnable alpha with target entropy -1,
TD(0) targets with gamma 0.99, smooth-L1 Q loss, Adam 3e-4, Polyak tau 0.005. The plain
update is what a CleanRL-style program writes: two Q modules called one after the other,
a closed-form tanh-normal log-prob, a parameter loop for the target update. TorchRL's
SACLoss runs the same update for comparison when it is installed. Figures are CPU
milliseconds of the single torch thread per update (``bench_gae.call_times``).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from benchmarks._common import print_rows, row
from benchmarks.bench_gae import call_times

OBS, ACT, BATCH, CELLS = 3, 1, 256, 256
GAMMA, LR, TAU, ALPHA0 = 0.99, 3e-4, 0.005, 1.0


def _mlp(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, CELLS), nn.ReLU(), nn.Linear(CELLS, CELLS), nn.ReLU(), nn.Linear(CELLS, out))


class _Q(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp(OBS + ACT, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1))


def _nets() -> tuple[nn.Module, nn.Module, nn.Module]:
    from tdrl.modules import NormalParamExtractor

    torch.manual_seed(0)
    return nn.Sequential(_mlp(OBS, 2 * ACT), NormalParamExtractor()), _Q(), _Q()


def _data() -> TensorDict:
    torch.manual_seed(1)
    terminated = torch.zeros(BATCH, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.randn(BATCH, OBS),
            "action": torch.rand(BATCH, ACT) * 2 - 1,
            "next": {
                "observation": torch.randn(BATCH, OBS),
                "reward": torch.randn(BATCH, 1),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        [BATCH],
    )


def _plain(actor_net: nn.Module, q1: nn.Module, q2: nn.Module, data: TensorDict):
    actor_net, q1, q2 = copy.deepcopy(actor_net), copy.deepcopy(q1), copy.deepcopy(q2)
    q1_target, q2_target = copy.deepcopy(q1), copy.deepcopy(q2)
    log_alpha = torch.zeros((), requires_grad=True)
    q_params = list(q1.parameters()) + list(q2.parameters())
    target_pairs = list(zip(list(q1_target.parameters()) + list(q2_target.parameters()), q_params))
    params = list(actor_net.parameters()) + q_params + [log_alpha]
    optim = torch.optim.Adam(params, LR)
    log2, half_log_2pi = math.log(2.0), 0.5 * math.log(2 * math.pi)
    target_entropy = -float(ACT)

    def sample(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = actor_net(o)
        u = loc + scale * torch.randn_like(loc)
        z = (u - loc) / scale
        lp = -0.5 * z * z - scale.log() - half_log_2pi - 2.0 * (log2 - u - F.softplus(-2.0 * u))
        return u.tanh(), lp.sum(-1, keepdim=True)

    def step() -> None:
        # the batch is read each step, as a training loop reads a fresh sample
        obs, action = data["observation"], data["action"]
        next_obs, reward = data["next", "observation"], data["next", "reward"]
        not_terminated = (~data["next", "terminated"]).float()
        alpha = log_alpha.detach().exp()
        with torch.no_grad():
            next_action, next_lp = sample(next_obs)
            next_q = torch.min(q1_target(next_obs, next_action), q2_target(next_obs, next_action))
            target = reward + GAMMA * not_terminated * (next_q - alpha * next_lp)
        loss_q = F.smooth_l1_loss(q1(obs, action), target) + F.smooth_l1_loss(q2(obs, action), target)
        new_action, lp = sample(obs)
        for p in q_params:
            p.requires_grad_(False)
        min_q = torch.min(q1(obs, new_action), q2(obs, new_action))
        for p in q_params:
            p.requires_grad_(True)
        loss_actor = (alpha * lp - min_q).mean()
        loss_alpha = (-log_alpha * (lp.detach() + target_entropy)).mean()
        (loss_q + loss_actor + loss_alpha).backward()
        optim.step()
        optim.zero_grad()
        with torch.no_grad():
            for target_p, p in target_pairs:
                target_p.lerp_(p, TAU)

    return step


def _loss_step(loss_module: nn.Module, updater, data: TensorDict):
    params = list(loss_module.parameters())
    optim = torch.optim.Adam(params, LR)

    def step() -> None:
        out = loss_module(data)
        (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
        optim.step()
        optim.zero_grad()
        updater.step()

    return step


def _tdrl(actor_net: nn.Module, q: nn.Module, data: TensorDict):
    from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from tdrl.objectives import SACLoss, SoftUpdate
    from tdrl.specs import Bounded

    actor = ProbabilisticActor(
        TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=Bounded(-1.0, 1.0, shape=(ACT,)),
        distribution_class=TanhNormal,
    )
    loss = SACLoss(actor, ValueOperator(copy.deepcopy(q), in_keys=["observation", "action"]), alpha_init=ALPHA0)
    loss.make_value_estimator("td0", gamma=GAMMA)
    return _loss_step(loss, SoftUpdate(loss, tau=TAU), data.clone())


def _torchrl(actor_net: nn.Module, q: nn.Module, data: TensorDict):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchrl.data import Bounded
            from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
            from torchrl.objectives import SACLoss, SoftUpdate, ValueEstimators
    except Exception:
        return None
    actor = ProbabilisticActor(
        TensorDictModule(copy.deepcopy(actor_net), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=Bounded(-torch.ones(ACT), torch.ones(ACT), (ACT,)),
        distribution_class=TanhNormal,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = SACLoss(actor, ValueOperator(copy.deepcopy(q), in_keys=["observation", "action"]), alpha_init=ALPHA0)
        loss.make_value_estimator(ValueEstimators.TD0, gamma=GAMMA)
        updater = SoftUpdate(loss, tau=TAU)
    return _loss_step(loss, updater, data.clone())


def run() -> list[dict]:
    torch.set_num_threads(1)
    actor_net, q1, q2 = _nets()
    data = _data()
    steps = {"plain": _plain(actor_net, q1, q2, data), "tdrl": _tdrl(actor_net, q1, data)}
    trl = _torchrl(actor_net, q1, data)
    if trl is not None:
        steps["torchrl"] = trl
    for step in steps.values():  # warm-up
        for _ in range(10):
            step()
    ms = {k: 1e3 * v for k, v in call_times(steps, rounds=20, per_round=5).items()}
    return [
        row(
            "SACLoss + Adam + SoftUpdate, batch 256, 2x256 MLPs",
            ms["tdrl"],
            ms["plain"],
            "ms/update",
            "<= 1.1x plain torch",
            higher_is_better=False,
            torchrl=ms.get("torchrl"),
            note="ratio = plain / tdrl (> 0.91 meets the bar)",
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
