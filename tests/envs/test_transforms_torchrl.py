"""Differential tests against TorchRL 0.14.1: the same gymnasium env, seed and actions give the same outputs."""

from __future__ import annotations

import warnings

import pytest
import torch

torchrl = pytest.importorskip("torchrl")


def _replay(actions: torch.Tensor):
    state = {"t": 0}

    def policy(td):
        td.set("action", actions[state["t"]])
        state["t"] += 1
        return td

    return policy


@pytest.mark.parametrize(
    ("name", "max_steps", "steps"), [("InvertedDoublePendulum-v4", 7, 80), ("Pendulum-v1", 30, 230)]
)
def test_step_counter_matches_torchrl(name, max_steps, steps):
    from torchrl.envs import StepCounter as TorchRLStepCounter
    from torchrl.envs import TransformedEnv as TorchRLTransformedEnv
    from torchrl.envs.libs.gym import GymEnv as TorchRLGymEnv

    from tdrl.envs import StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TorchRLTransformedEnv(TorchRLGymEnv(name), TorchRLStepCounter(max_steps=max_steps))
        ours = TransformedEnv(GymEnv(name), StepCounter(max_steps=max_steps))
    theirs.set_seed(0)  # TorchRL resets with the seed at once ...
    ours.set_seed(0)
    ours.reset()  # ... tdrl at the next reset: consume it so both rollouts start from the second reset
    low, high = ours.action_spec.space.low, ours.action_spec.space.high
    actions = low + (high - low) * torch.rand(steps, *low.shape, generator=torch.Generator().manual_seed(0))
    a = theirs.rollout(steps, _replay(actions), break_when_any_done=False)
    b = ours.rollout(steps, _replay(actions), break_when_any_done=False)
    for key in [
        "step_count",
        ("next", "step_count"),
        ("next", "truncated"),
        ("next", "done"),
        ("next", "terminated"),
        ("next", "reward"),
        "observation",
        ("next", "observation"),
    ]:
        assert torch.equal(a.get(key), b.get(key)), key
    assert b["next", "truncated"].any()
    assert (b["step_count"] == 0).sum() > 2
    theirs.close()
    ours.close()
