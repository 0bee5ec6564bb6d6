"""EnvContractTests: the tests any tdrl env must pass, as a mixin.

Inherit it in a pytest class and implement ``make_env``::

    class TestMyEnv(EnvContractTests):
        def make_env(self):
            return MyEnv()

Every env in tdrl's own test suite does this, so a new backend proves the interface
by adding one factory.
"""

from __future__ import annotations

from typing import cast

import pytest
import torch

from tdrl.envs.common import EnvBase
from tdrl.envs.utils import check_env_specs, step_mdp
from tdrl.specs import TensorSpec

__all__ = ["EnvContractTests"]


class EnvContractTests:
    """Mixin of contract tests; subclasses implement :meth:`make_env`."""

    #: how many steps the rollout tests run
    rollout_steps: int = 5

    def make_env(self) -> EnvBase:
        """The env under test: a new one at each call (the tests close it)."""
        raise NotImplementedError("EnvContractTests subclasses implement make_env()")

    @pytest.fixture
    def env(self):
        env = self.make_env()
        yield env
        env.close()

    def test_check_env_specs(self, env: EnvBase) -> None:
        check_env_specs(env)

    def test_reset_matches_specs(self, env: EnvBase) -> None:
        td = env.reset()
        assert td.batch_size == env.batch_size
        for key in env.full_observation_spec.keys(True, True):
            assert env.full_observation_spec[key].is_in(td.get(key)), key
        for key in env.done_keys:  # [*B, 1], or [*B, n_agents, 1] inside a group
            assert td.get(key).shape == env.full_done_spec[key].shape, key

    def test_step_writes_next(self, env: EnvBase) -> None:
        td = env.rand_step(env.reset())
        nxt = td.get("next")
        for key in [*env.observation_keys, *env.reward_keys, *env.done_keys]:
            assert key in nxt.keys(True, True), key
        assert step_mdp(td).batch_size == env.batch_size

    def test_rollout_shape(self, env: EnvBase) -> None:
        ro = env.rollout(self.rollout_steps, break_when_any_done=False)
        assert ro.batch_size == (*env.batch_size, self.rollout_steps)
        # the root at t+1 is the next observation at t unless the episode ended at t
        for key in env.observation_keys:
            done = ro.get(("next", "done"))[..., :-1, 0]
            tdim = env.batch_dims
            now, nxt = (
                ro.get(key).narrow(tdim, 1, self.rollout_steps - 1),
                ro.get(("next", key)).narrow(tdim, 0, self.rollout_steps - 1),
            )
            same = (now == nxt).flatten(len(done.shape)).all(-1)
            assert (same | done).all(), key

    def test_step_before_reset_raises(self) -> None:
        env = self.make_env()
        td = env.full_action_spec.zero()
        with pytest.raises(RuntimeError, match="reset"):
            env.step(td)
        env.close()

    def test_missing_action_raises(self, env: EnvBase) -> None:
        td = env.reset()
        with pytest.raises(KeyError, match="action"):
            env.step(td.exclude(*env.action_keys))

    def test_wrong_action_shape_raises(self, env: EnvBase) -> None:
        td = env.reset()
        key = env.action_keys[0]
        spec = cast(TensorSpec, env.full_action_spec[key])  # action_keys are leaves
        bad = torch.zeros((*spec.shape, 3), dtype=spec.dtype)
        td.set(key, bad)
        with pytest.raises(ValueError, match="shape"):
            env.step(td)

    def test_seed_reproducible(self) -> None:
        rollouts = []
        for _ in range(2):
            env = self.make_env()
            env.set_seed(0)
            torch.manual_seed(0)
            rollouts.append(env.rollout(self.rollout_steps, break_when_any_done=False))
            env.close()
        a, b = rollouts
        for key in a.keys(True, True):
            assert torch.equal(a.get(key), b.get(key)), key
