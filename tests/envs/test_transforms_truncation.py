"""RandomTruncationTransform: contract, horizons drawn at resets, flags set, errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import Compose, RandomTruncationTransform, StepCounter, TransformedEnv, check_env_specs
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv, _replay, assert_same


class TestRandomTruncation(TransformContractTests):
    forward_matches_env = False  # it changes where episodes end

    def make_transform(self):
        return Compose(StepCounter(), RandomTruncationTransform(2, 4, prob=0.5))

    @pytest.mark.parametrize("batched", [False, True])
    def test_rollout_roads_agree(self, batched: bool) -> None:  # type: ignore[override]
        # horizons come from torch's global RNG (as TorchRL's), which random actions would also draw from:
        # two runs with the same recorded actions from the same RNG state give the same data
        template = self._env(batched)
        actions = template.full_action_spec["action"].rand((12,)).movedim(0, template.batch_dims)
        runs = []
        for _ in range(2):
            env = self._env(batched)
            env.set_seed(0)
            torch.manual_seed(0)
            replay = _replay(TensorDict({"action": actions}, [*env.batch_size, 12]), env.batch_dims)
            runs.append(env.rollout(12, replay, break_when_any_done=False))
        assert_same(runs[0], runs[1], "two seeded rollouts")

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:  # type: ignore[override]
        with pytest.raises(RuntimeError, match="attach it to the"):
            RandomTruncationTransform(1, 2)(TransformTestEnv().rollout(2))

    def test_in_replay_buffer(self) -> None:  # type: ignore[override]
        rb_mod = pytest.importorskip("tdrl.data.replay_buffers")
        t = RandomTruncationTransform(1, 2)
        rb = rb_mod.ReplayBuffer(storage=rb_mod.LazyTensorStorage(10), transform=t, batch_size=2)
        rb.extend(TransformTestEnv().rollout(4, break_when_any_done=False))
        with pytest.raises(RuntimeError, match="attach it to the"):
            rb.sample()


def _env(batch, **kwargs):
    return TransformedEnv(
        CountingEnv(max_steps=1000, batch_size=[batch]), Compose(StepCounter(), RandomTruncationTransform(**kwargs))
    )


def test_first_horizons_spread_then_full_length():
    torch.manual_seed(0)
    check_env_specs(_env(2, min_horizon=3, max_horizon=6))
    env = _env(64, min_horizon=3, max_horizon=6)
    ro = env.rollout(20, break_when_any_done=False)
    counts, cut = ro["next", "step_count"].squeeze(-1), ro["next", "truncated"].squeeze(-1)
    first_lengths = torch.stack([counts[b][cut[b]][0] for b in range(64)])
    assert int(first_lengths.min()) >= 1
    assert int(first_lengths.max()) <= 6
    assert len(set(first_lengths.tolist())) > 3  # spread over [1, 6]
    later = torch.cat([counts[b][cut[b]][1:] for b in range(64)])
    assert bool((later == 6).all())  # prob=0: every later episode runs to max_horizon
    assert torch.equal(ro["next", "done"], ro["next", "truncated"])


def test_prob_one_draws_every_horizon_in_range():
    torch.manual_seed(0)
    ro = _env(32, min_horizon=3, max_horizon=6, prob=1.0).rollout(30, break_when_any_done=False)
    counts, cut = ro["next", "step_count"].squeeze(-1), ro["next", "truncated"].squeeze(-1)
    later = torch.cat([counts[b][cut[b]][1:] for b in range(32)])
    assert int(later.min()) >= 3
    assert int(later.max()) <= 6
    assert len(set(later.tolist())) == 4


def test_a_reset_clears_truncated():
    torch.manual_seed(0)
    env = _env(4, min_horizon=1, max_horizon=1)
    td = env.step(env.rand_action(env.reset()))
    assert bool(td["next", "truncated"].all())
    assert not bool(env.reset()["truncated"].any())


def test_needs_a_step_counter_and_valid_arguments():
    with pytest.raises(RuntimeError, match=r"Compose\(StepCounter\(\), RandomTruncationTransform"):
        TransformedEnv(CountingEnv(), RandomTruncationTransform(1, 3))
    with pytest.raises(ValueError, match="prob must be in"):
        RandomTruncationTransform(1, 3, prob=1.5)
    with pytest.raises(ValueError, match="min_horizon <= max_horizon"):
        RandomTruncationTransform(4, 3)
