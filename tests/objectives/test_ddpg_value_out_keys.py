"""DDPGLoss finds the Q entry of a critic that writes more than one key (the competitive MADDPG tutorial's)."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.objectives import DDPGLoss


def _group_critic(group):
    cat = TensorDictModule(
        lambda obs, action: torch.cat([obs, action], -1),
        in_keys=[(group, "observation"), (group, "action")],
        out_keys=[(group, "obs_action")],
    )
    q = TensorDictModule(nn.Linear(5, 1), in_keys=[(group, "obs_action")], out_keys=[(group, "state_action_value")])
    return TensorDictSequential(cat, q)


def _group_actor(group):
    return TensorDictModule(nn.Linear(3, 2), in_keys=[(group, "observation")], out_keys=[(group, "action")])


def test_a_critic_writing_its_input_and_its_q_values_builds_and_trains_after_set_keys():
    loss = DDPGLoss(_group_actor("g"), _group_critic("g"), delay_value=True, loss_function="l2")
    assert loss.tensor_keys.state_action_value == ("g", "state_action_value")
    loss.set_keys(reward=("g", "reward"), done=("g", "done"), terminated=("g", "terminated"))
    n = 6
    td = TensorDict(
        {
            "g": {"observation": torch.randn(n, 4, 3), "action": torch.randn(n, 4, 2)},
            "next": {
                "g": {
                    "observation": torch.randn(n, 4, 3),
                    "reward": torch.randn(n, 4, 1),
                    "done": torch.zeros(n, 4, 1, dtype=torch.bool),
                    "terminated": torch.zeros(n, 4, 1, dtype=torch.bool),
                }
            },
        },
        [n],
    )
    out = loss(td)
    assert torch.isfinite(out["loss_actor"])
    assert torch.isfinite(out["loss_value"])


def test_a_critic_with_two_q_like_outputs_still_needs_set_keys():
    critic = TensorDictModule(
        lambda obs, action: (obs.sum(-1, keepdim=True), action.sum(-1, keepdim=True)),
        in_keys=["observation", "action"],
        out_keys=[("a", "state_action_value"), ("b", "state_action_value")],
    )
    with pytest.raises(ValueError, match="set_keys"):
        DDPGLoss(TensorDictModule(nn.Linear(3, 2), in_keys=["observation"], out_keys=["action"]), critic)
