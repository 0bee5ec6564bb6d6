"""ActionMask on MultiCategorical and MultiOneHot actions: random draws follow the mask of each sub-action."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import ActionMask, EnvBase, TransformedEnv
from tdrl.modules import RandomPolicy
from tdrl.specs import Binary, Composite, MultiCategorical, MultiOneHot, Unbounded
from tdrl.testing.transform_contract import TransformContractTests

_NVEC = [3, 2]


class _MultiMaskedEnv(EnvBase):
    """Two sub-actions (3 and 2 values); each step writes a new mask with one legal value per block or more.

    The reward counts the illegal sub-actions of the step (so a rollout that follows the
    mask earns 0 at each step).
    """

    def __init__(self, one_hot: bool = False, batch_size=()):
        super().__init__(batch_size=batch_size)
        b = self.batch_size
        width = sum(_NVEC)
        self.one_hot = one_hot
        self.observation_spec = Composite(
            observation=Unbounded(shape=(*b, width)),
            action_mask=Binary(n=width, shape=(*b, width), dtype=torch.bool),
            shape=b,
        )
        self.action_spec = MultiOneHot(_NVEC, shape=(*b, width)) if one_hot else MultiCategorical(_NVEC, shape=(*b, 2))
        self.reward_spec = Unbounded(shape=(*b, 1))
        self.gen = torch.Generator().manual_seed(0)
        self.mask = torch.ones(*b, width, dtype=torch.bool)

    def _new_mask(self):
        blocks = []
        for n in _NVEC:
            block = torch.rand(*self.batch_size, n, generator=self.gen) < 0.5
            keep = torch.randint(0, n, (*self.batch_size,), generator=self.gen)
            blocks.append(block | torch.nn.functional.one_hot(keep, n).bool())  # at least one legal value
        self.mask = torch.cat(blocks, -1)

    def _out(self):
        return {"observation": self.mask.float(), "action_mask": self.mask.clone()}

    def _reset(self, tensordict=None, **kwargs):
        self._new_mask()
        return TensorDict(self._out(), self.batch_size)

    def _step(self, tensordict):
        action = tensordict.get("action")
        if self.one_hot:
            chosen = action.bool()
        else:
            chosen = torch.cat([torch.nn.functional.one_hot(action[..., i], n) for i, n in enumerate(_NVEC)], -1)
            chosen = chosen.bool()
        illegal = (chosen & ~self.mask).sum(-1, keepdim=True).float()
        self._new_mask()
        done = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        out = {**self._out(), "reward": illegal, "done": done, "terminated": done.clone(), "truncated": done.clone()}
        return TensorDict(out, self.batch_size)

    def _set_seed(self, seed):
        self.gen.manual_seed(seed or 0)


class TestActionMaskMultiCategorical(TransformContractTests):
    forward_matches_env = False

    def make_transform(self):
        return ActionMask()

    def make_env(self):
        return _MultiMaskedEnv()

    def make_batched_env(self):
        return _MultiMaskedEnv(batch_size=[3])

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:
        env = self._env(batched)
        with pytest.raises(RuntimeError, match="inside TransformedEnv"):
            env.transform(env.base_env.rollout(3))

    def test_in_replay_buffer(self) -> None:
        with pytest.raises(RuntimeError, match="inside TransformedEnv"):
            ActionMask()(TensorDict({"action_mask": torch.ones(5, dtype=torch.bool)}))


class TestActionMaskMultiOneHot(TestActionMaskMultiCategorical):
    def make_env(self):
        return _MultiMaskedEnv(one_hot=True)

    def make_batched_env(self):
        return _MultiMaskedEnv(one_hot=True, batch_size=[3])


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("batch_size", [(), (4,)])
def test_random_draws_follow_the_mask(one_hot, batch_size):
    torch.manual_seed(0)
    env = TransformedEnv(_MultiMaskedEnv(one_hot=one_hot, batch_size=batch_size), ActionMask())
    for rollout in (env.rollout(50), env.rollout(50, RandomPolicy(env.action_spec))):
        assert (rollout["next", "reward"] == 0).all()  # not one illegal sub-action
    unmasked = env.base_env.rollout(50)  # without the transform the draws ignore the mask
    assert (unmasked["next", "reward"] > 0).any()


def test_multi_specs_draw_only_unmasked_values():
    torch.manual_seed(0)
    spec = MultiCategorical([3, 2], shape=(2, 2))
    spec.update_mask(torch.tensor([[True, False, True, False, True], [False, True, False, True, True]]))
    draws = spec.rand((500,))
    assert set(draws[:, 0, 0].tolist()) == {0, 2}
    assert set(draws[:, 0, 1].tolist()) == {1}
    assert set(draws[:, 1, 0].tolist()) == {1}
    assert set(draws[:, 1, 1].tolist()) == {0, 1}
    one_hot = MultiOneHot([3, 2], mask=torch.tensor([False, False, True, True, False]))
    assert one_hot.rand((20,)).long().unique(dim=0).tolist() == [[0, 0, 1, 1, 0]]
    assert one_hot.clone().mask is not None
    one_hot.update_mask(None)
    assert one_hot.rand((200,)).long().unique(dim=0).shape[0] == 6


@pytest.mark.parametrize("spec", [MultiCategorical([3, 2]), MultiOneHot([3, 2])])
def test_a_mask_of_the_wrong_shape_is_refused(spec):
    with pytest.raises(ValueError, match=r"does not expand to \(5,\)"):
        spec.update_mask(torch.ones(4, dtype=torch.bool))


def test_a_mask_of_the_wrong_width_from_the_env_is_refused():
    env = TransformedEnv(_MultiMaskedEnv(), ActionMask())
    td = env.reset()
    with pytest.raises(ValueError, match="needs a mask of shape"):
        env.transform._step(td, TensorDict({"action_mask": torch.ones(4, dtype=torch.bool)}))
