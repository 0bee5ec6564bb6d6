"""ConditionalPolicySwitch: contract, the other policy's turns at steps and resets, episode ends, errors."""

from __future__ import annotations

import pytest
import torch

from tdrl.envs import ConditionalPolicySwitch, TransformedEnv, check_env_specs
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _zero_action(td):
    return td.set("action", torch.zeros_like(td["observation"][..., :2]))


def _far(td):
    return bool((td["observation"][..., 0] > 0.3).all())


class TestPolicySwitch(TransformContractTests):
    forward_matches_env = False  # the other policy's steps are inside the env's

    def make_transform(self):
        return ConditionalPolicySwitch(_zero_action, _far)

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:  # type: ignore[override]
        with pytest.raises(RuntimeError, match="attach it"):
            self.make_transform()(TransformTestEnv().rollout(2))

    def test_in_replay_buffer(self) -> None:  # type: ignore[override]
        rb_mod = pytest.importorskip("tdrl.data.replay_buffers")
        rb = rb_mod.ReplayBuffer(storage=rb_mod.LazyTensorStorage(10), transform=self.make_transform(), batch_size=2)
        rb.extend(TransformTestEnv().rollout(4, break_when_any_done=False))
        with pytest.raises(RuntimeError, match="attach it"):
            rb.sample()


def _opponent(td):
    return td.set("action", torch.ones_like(td["observation"]).long())


def test_the_other_policy_plays_odd_steps():
    env = TransformedEnv(
        CountingEnv(max_steps=9), ConditionalPolicySwitch(_opponent, lambda td: td["observation"] % 2 == 1)
    )
    check_env_specs(env)
    ro = env.rollout(10)
    assert ro["next", "observation"].squeeze(-1).tolist() == [2.0, 4.0, 6.0, 8.0, 9.0]  # 9 ends the episode


def test_a_reset_satisfying_the_condition_lets_the_other_policy_move_first():
    env = TransformedEnv(
        CountingEnv(max_steps=9), ConditionalPolicySwitch(_opponent, lambda td: td["observation"] == 0)
    )
    td = env.reset()
    assert td["observation"].item() == 1.0
    assert "reward" not in td.keys()


def test_partial_and_malformed_conditions_are_refused():
    switch = ConditionalPolicySwitch(_opponent, lambda td: torch.tensor([True, False]))
    env = TransformedEnv(CountingEnv(batch_size=[2]), switch)
    with pytest.raises(RuntimeError, match="some sub-envs of the batch"):
        env.rollout(2)
    env = TransformedEnv(CountingEnv(), ConditionalPolicySwitch(_opponent, lambda td: "yes"))
    with pytest.raises(RuntimeError, match="returned str"):
        env.reset()
    env = TransformedEnv(CountingEnv(batch_size=[2]), ConditionalPolicySwitch(_opponent, lambda td: torch.ones(3)))
    with pytest.raises(RuntimeError, match=r"returned shape \(3,\)"):
        env.reset()
