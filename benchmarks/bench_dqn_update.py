"""One DQNLoss + Adam + SoftUpdate step against the same step written in plain torch.

Bar (issue 17): tdrl's step costs <= 1.1x the plain-torch step, in the same run.
The setup is the DQN main job's on CartPole-v1: a 2x256 ReLU MLP from 4 observations to 2
action values, index actions, the TD(0) target from a target network, smooth-L1 loss,
gradient clipping at 10, Adam 2.3e-3, and a Polyak update of the target (tau 0.005) after
each step; minibatches of 64 (the job's) and 256. The plain step computes exactly this; the
tdrl step also writes each sample's TD error into the batch (for a prioritized buffer),
which DQNLoss always does. TorchRL's DQNLoss runs the same step for comparison when it is
installed. Figures are CPU milliseconds of the single torch thread per step, interleaved
(``bench_gae.call_times``): on an idle machine that is the wall time.

Run: ``python -m benchmarks.bench_dqn_update``
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from benchmarks._common import print_rows, row
from benchmarks.bench_gae import call_times

OBS, N_ACT, CELLS = 4, 2, 256
GAMMA, LR, MAX_NORM, TAU = 0.99, 2.3e-3, 10.0, 0.005


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(OBS, CELLS), nn.ReLU(), nn.Linear(CELLS, CELLS), nn.ReLU(), nn.Linear(CELLS, N_ACT))


def _data(batch: int) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    terminated = torch.rand(batch, 1, generator=g) < 0.05
    return TensorDict(
        {
            "observation": torch.randn(batch, OBS, generator=g),
            "action": torch.randint(N_ACT, (batch,), generator=g),
            "next": {
                "observation": torch.randn(batch, OBS, generator=g),
                "reward": torch.ones(batch, 1),
                "done": terminated.clone(),
                "terminated": terminated,
                "truncated": torch.zeros(batch, 1, dtype=torch.bool),
            },
        },
        [batch],
    )


def _plain(net: nn.Module, data: TensorDict):
    """The step a user writes by hand."""
    net = copy.deepcopy(net)
    target_net = copy.deepcopy(net).requires_grad_(False)
    params = list(net.parameters())
    target_params = list(target_net.parameters())
    optim = torch.optim.Adam(params, LR)
    obs, action = data["observation"], data["action"].unsqueeze(-1)
    next_obs, reward = data["next", "observation"], data["next", "reward"].squeeze(-1)
    not_terminated = (~data["next", "terminated"]).squeeze(-1).float()

    def step() -> None:
        q = net(obs).gather(-1, action).squeeze(-1)
        with torch.no_grad():
            target = reward + GAMMA * not_terminated * target_net(next_obs).max(-1).values
        loss = F.smooth_l1_loss(q, target)
        loss.backward()
        nn.utils.clip_grad_norm_(params, MAX_NORM)
        optim.step()
        optim.zero_grad()
        with torch.no_grad():
            torch._foreach_lerp_(target_params, params, TAU)

    return step


def _loss_step(loss_module: nn.Module, updater, data: TensorDict):
    params = list(loss_module.parameters())  # as the plain step: the loss is what is compared
    optim = torch.optim.Adam(params, LR)

    def step() -> None:
        loss = loss_module(data)["loss"]
        loss.backward()
        nn.utils.clip_grad_norm_(params, MAX_NORM)
        optim.step()
        optim.zero_grad()
        updater.step()

    return step


def _tdrl(net: nn.Module, data: TensorDict):
    from tdrl.modules import QValueActor
    from tdrl.objectives import DQNLoss, SoftUpdate
    from tdrl.specs import Categorical

    loss = DQNLoss(QValueActor(copy.deepcopy(net), spec=Categorical(N_ACT)), loss_function="smooth_l1")
    loss.make_value_estimator("td0", gamma=GAMMA)
    return _loss_step(loss, SoftUpdate(loss, tau=TAU), data.clone())


def _torchrl(net: nn.Module, data: TensorDict):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchrl.data import Categorical
            from torchrl.modules import QValueActor
            from torchrl.objectives import DQNLoss, SoftUpdate, ValueEstimators
    except Exception:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = Categorical(N_ACT)
        loss = DQNLoss(
            QValueActor(copy.deepcopy(net), in_keys=["observation"], spec=spec),
            loss_function="smooth_l1",
            action_space=spec,
        )
        loss.make_value_estimator(ValueEstimators.TD0, gamma=GAMMA)
        updater = SoftUpdate(loss, tau=TAU)
    return _loss_step(loss, updater, data.clone())


def run() -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    for batch in (64, 256):
        net, data = _net(), _data(batch)
        steps = {"plain": _plain(net, data), "tdrl": _tdrl(net, data)}
        trl = _torchrl(net, data)
        if trl is not None:
            steps["torchrl"] = trl
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step in steps.values():  # warm-up
                for _ in range(10):
                    step()
            ms = {k: 1e3 * v for k, v in call_times(steps, rounds=20, per_round=10).items()}
        rows.append(
            row(
                f"DQNLoss + Adam + SoftUpdate step, batch {batch}, 2x256 MLP",
                ms["tdrl"],
                ms["plain"],
                "ms/step",
                "<= 1.1x plain torch",
                higher_is_better=False,
                torchrl=ms.get("torchrl"),
                note="ratio = plain / tdrl (> 0.91 meets the bar)",
            )
        )
    return rows


if __name__ == "__main__":
    print_rows(run())
