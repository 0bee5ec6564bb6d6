"""ConditionalSkip: contract, skipped steps hold the state with zero reward, outer transforms still run, errors."""

from __future__ import annotations

import pytest
import torch

from tdrl.envs import ConditionalSkip, RewardSum, StepCounter, TransformedEnv, check_env_specs
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _far(td):
    return bool((td["observation"][..., 0] > 0.3).all())


class TestConditionalSkip(TransformContractTests):
    forward_matches_env = False  # skipped steps never reach the base env

    def make_transform(self):
        return ConditionalSkip(_far)

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


def test_skipped_steps_hold_the_state_with_zero_reward():
    env = TransformedEnv(CountingEnv(max_steps=20, batch_size=[2]), ConditionalSkip(lambda td: td["observation"] >= 2))
    check_env_specs(env)
    ro = env.rollout(4)
    assert ro["next", "observation"][0].squeeze(-1).tolist() == [1.0, 2.0, 2.0, 2.0]
    assert ro["next", "reward"][0].squeeze(-1).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert not bool(ro["next", "done"].any())


def test_inner_transforms_skip_outer_ones_run():
    inner = TransformedEnv(
        CountingEnv(max_steps=20), ConditionalSkip(lambda td: td["observation"] == 1)
    ).append_transform(RewardSum())
    outer = TransformedEnv(inner, StepCounter())
    ro = outer.rollout(3)
    assert ro["next", "step_count"].squeeze(-1).tolist() == [1, 2, 3]
    assert ro["next", "observation"].squeeze(-1).tolist() == [1.0, 1.0, 1.0]
    assert ro["next", "episode_reward"].squeeze(-1).tolist() == [1.0, 1.0, 1.0]  # held: RewardSum did not run


def test_a_partial_skip_is_refused():
    env = TransformedEnv(CountingEnv(batch_size=[2]), ConditionalSkip(lambda td: torch.tensor([True, False])))
    with pytest.raises(RuntimeError, match="skips some sub-envs"):
        env.rollout(2)
    with pytest.raises(TypeError, match="callable"):
        ConditionalSkip(True)  # type: ignore[arg-type]
