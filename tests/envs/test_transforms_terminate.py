"""TerminateTransform: contract, which flags it sets, broadcasting, errors."""

from __future__ import annotations

import pytest
import torch

from tdrl.envs import StepCounter, TerminateTransform, TransformedEnv, check_env_specs
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _far(nxt):
    return nxt["observation"][..., :1] > 0.5


class TestTerminate(TransformContractTests):
    forward_matches_env = False  # it changes where episodes end: a base rollout does not hold those ends

    def make_transform(self):
        return TerminateTransform(_far)

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:  # type: ignore[override]
        with pytest.raises(RuntimeError, match="attach it to the env"):
            self.make_transform()(TransformTestEnv().rollout(2))

    def test_in_replay_buffer(self) -> None:  # type: ignore[override]
        rb_mod = pytest.importorskip("tdrl.data.replay_buffers")
        rb = rb_mod.ReplayBuffer(storage=rb_mod.LazyTensorStorage(10), transform=self.make_transform(), batch_size=2)
        rb.extend(TransformTestEnv().rollout(4, break_when_any_done=False))
        with pytest.raises(RuntimeError, match="attach it to the env"):
            rb.sample()


def test_rollout_stops_when_the_condition_holds():
    env = TransformedEnv(CountingEnv(max_steps=10), TerminateTransform(lambda nxt: nxt["observation"] >= 4))
    ro = env.rollout(10)
    assert ro["next", "observation"].squeeze(-1).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ro["next", "terminated"].squeeze(-1).tolist() == [False, False, False, True]


def test_sets_terminated_only_without_write_done_and_never_truncated():
    env = TransformedEnv(
        CountingEnv(max_steps=10),
        TerminateTransform(lambda nxt: True, write_done=False),
    )
    env.append_transform(StepCounter(max_steps=1))
    check_env_specs(env)
    td = env.step(env.rand_action(env.reset()))
    assert td["next", "terminated"].item()
    assert td["next", "truncated"].item()  # set by StepCounter, after this transform
    env = TransformedEnv(CountingEnv(max_steps=10), TerminateTransform(lambda nxt: True, write_done=False))
    td = env.step(env.rand_action(env.reset()))
    assert td["next", "terminated"].item()
    assert not td["next", "done"].item()
    assert not td["next", "truncated"].item()


def test_a_batch_shaped_condition_broadcasts_and_a_wrong_one_is_refused():
    env = TransformedEnv(
        CountingEnv(batch_size=[3]), TerminateTransform(lambda nxt: torch.tensor([False, True, False]))
    )
    td = env.step(env.rand_action(env.reset()))
    assert td["next", "done"].squeeze(-1).tolist() == [False, True, False]
    env = TransformedEnv(CountingEnv(batch_size=[3]), TerminateTransform(lambda nxt: torch.ones(2, dtype=torch.bool)))
    with pytest.raises(ValueError, match=r"does not broadcast to '(done|terminated)'"):
        env.step(env.rand_action(env.reset()))


def test_stop_must_be_callable():
    with pytest.raises(ValueError, match="callable"):
        TerminateTransform(True)  # type: ignore[arg-type]
