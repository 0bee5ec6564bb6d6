"""ActionMask: the transform contract, and random draws that follow the live mask."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import ActionMask, Compose, TransformedEnv
from tdrl.modules import RandomPolicy
from tdrl.testing.masked import MaskedDiscreteEnv
from tdrl.testing.transform_contract import TransformContractTests


class TestActionMask(TransformContractTests):
    forward_matches_env = False

    def make_transform(self):
        return ActionMask()

    def make_env(self):
        return MaskedDiscreteEnv(n=4)

    def make_batched_env(self):
        return MaskedDiscreteEnv(n=4, batch_size=[3])

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:
        env = self._env(batched)
        with pytest.raises(RuntimeError, match="inside TransformedEnv"):
            env.transform(env.base_env.rollout(3))

    def test_in_replay_buffer(self) -> None:
        with pytest.raises(RuntimeError, match="inside TransformedEnv"):
            ActionMask()(TensorDict({"action_mask": torch.ones(3, dtype=torch.bool)}))


class TestActionMaskOneHot(TestActionMask):
    def make_env(self):
        return MaskedDiscreteEnv(n=5, one_hot=True)

    def make_batched_env(self):
        return MaskedDiscreteEnv(n=5, one_hot=True, batch_size=[2])


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("batch_size", [(), (4,)])
def test_policy_free_rollouts_only_take_legal_actions(one_hot, batch_size):
    torch.manual_seed(0)
    env = TransformedEnv(MaskedDiscreteEnv(n=6, one_hot=one_hot, batch_size=batch_size), ActionMask())
    ro = env.rollout(40, break_when_any_done=False)
    assert (ro["next", "reward"] == 1).all()
    assert ro["next", "done"].sum() >= 6 * (batch_size[0] if batch_size else 1) // 6


def test_without_the_transform_random_draws_are_illegal():
    torch.manual_seed(0)
    ro = MaskedDiscreteEnv(n=6).rollout(40, break_when_any_done=False)
    assert (ro["next", "reward"] == -1).any()


def test_random_policy_follows_the_live_mask_under_any_mask_key():
    from tdrl.envs import RenameTransform

    torch.manual_seed(0)
    env = TransformedEnv(
        MaskedDiscreteEnv(n=5, batch_size=[2]),
        Compose(RenameTransform(["action_mask"], ["legal"]), ActionMask(mask_key="legal")),
    )
    policy = RandomPolicy(env.action_spec)
    td = env.reset()
    assert policy.reads_masks(td)
    ro = env.rollout(30, policy, break_when_any_done=False)
    assert (ro["next", "reward"] == 1).all()


def test_collector_random_frames_are_legal():
    from tdrl.collectors import SyncDataCollector

    torch.manual_seed(0)
    env = TransformedEnv(MaskedDiscreteEnv(n=4), ActionMask())
    collector = SyncDataCollector(env, RandomPolicy(env.action_spec), frames_per_batch=20, total_frames=40)
    for batch in collector:
        assert (batch["next", "reward"] == 1).all()
    collector.shutdown()


def test_a_mask_of_the_wrong_shape_names_the_key():
    env = TransformedEnv(MaskedDiscreteEnv(n=4), ActionMask())
    with pytest.raises(ValueError, match=r"'action_mask' has shape \(3,\)"):
        env.transform._call(TensorDict(action_mask=torch.ones(3, dtype=torch.bool)))


def test_refuses_a_missing_mask_or_a_continuous_action():
    from tdrl.testing.transform_contract import TransformTestEnv

    with pytest.raises(KeyError, match="writes no mask 'legal'"):
        TransformedEnv(MaskedDiscreteEnv(), ActionMask(mask_key="legal"))
    from tdrl.envs import RenameTransform

    env = TransformedEnv(TransformTestEnv(), RenameTransform(["observation"], ["action_mask"]))
    with pytest.raises(ValueError, match="Categorical or OneHot"):
        env.append_transform(ActionMask())
    with pytest.raises(TypeError, match="mask_key"):
        ActionMask(mask_key=3)


def test_outside_a_batched_env_the_mask_covers_every_sub_env():
    from tdrl.envs import SerialEnv

    torch.manual_seed(0)
    env = TransformedEnv(SerialEnv(2, MaskedDiscreteEnv), ActionMask())
    ro = env.rollout(12, break_when_any_done=False)
    assert (ro["next", "reward"] == 1).all()
    assert env.action_spec.mask.shape == (2, 4)
    env.close()
