"""TransformContractTests: the tests any tdrl transform must pass, as a mixin.

Inherit it in a pytest class and implement ``make_transform``::

    class TestMyTransform(TransformContractTests):
        def make_transform(self):
            return MyTransform(in_keys=["observation"])

The mixin runs the transform alone on a TensorDict, inside a ``Compose``, on a single
and a batched env (through ``check_env_specs``, which also catches a transform whose
data and spec disagree), inside a replay buffer, through both rollout roads of
``TransformedEnv`` (per step, and mapped at once for time-vectorizable chains), and
its inverse when it has one. Override ``make_env`` / ``make_batched_env`` when the
transform needs other entries than :class:`TransformTestEnv` offers, and ``wrap`` when it
lives in a TransformedEnv subclass (``AutoResetEnv``).

:class:`TransformTestEnv` is the default env: a continuous-control mock whose episodes
end at random (so a batched copy resets its sub-envs at different steps), with optional
``float64`` data and ``uint8`` pixels.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs.common import EnvBase
from tdrl.envs.transforms import Compose, Transform, TransformedEnv
from tdrl.envs.utils import check_env_specs
from tdrl.specs import Bounded, Composite, Unbounded

__all__ = ["TransformContractTests", "TransformTestEnv"]


class TransformTestEnv(EnvBase):
    """A small continuous-control mock for transform tests.

    The observation drifts with the action plus noise; each step ends the episode with
    probability ``p_end`` (terminated), or at ``max_steps`` (truncated). All randomness
    comes from the env's own generator, so a seed fixes the trajectory given the actions.

    Args:
        obs_dim: the observation size.
        action_dim: the action size (a box ``[-1, 1]``).
        dtype: the dtype of observation, action and reward (e.g. ``torch.float64``).
        pixels: ``(H, W)`` to add a ``"pixels"`` entry (``uint8 [H, W, 3]``).
        p_end: the per-step probability that the episode terminates.
        max_steps: the step at which the episode is truncated.
        batch_size: the env's batch shape.

    Examples:
        >>> env = TransformTestEnv(batch_size=[2], pixels=(4, 5))
        >>> env.rollout(3, break_when_any_done=False)["next", "pixels"].shape
        torch.Size([2, 3, 4, 5, 3])
    """

    def __init__(
        self,
        obs_dim: int = 3,
        action_dim: int = 2,
        dtype: torch.dtype = torch.float32,
        pixels: tuple[int, int] | None = None,
        p_end: float = 0.2,
        max_steps: int = 8,
        batch_size: Any = (),
    ) -> None:
        super().__init__(batch_size=batch_size)
        b = self.batch_size
        self.dtype, self.pixels, self.p_end, self.max_steps = dtype, pixels, p_end, max_steps
        self.rng = torch.Generator().manual_seed(0)
        spec = Composite(observation=Unbounded(shape=(*b, obs_dim), dtype=dtype), shape=b)
        if pixels is not None:
            spec["pixels"] = Bounded(0, 255, shape=(*b, *pixels, 3), dtype=torch.uint8)
        self.observation_spec = spec
        self.action_spec = Bounded(-1.0, 1.0, shape=(*b, action_dim), dtype=dtype)
        self.reward_spec = Unbounded(shape=(*b, 1), dtype=dtype)
        self.obs = torch.zeros((*b, obs_dim), dtype=dtype)
        self.count = torch.zeros((*b, 1), dtype=torch.int64)

    def _set_seed(self, seed: int | None) -> None:
        self.rng.manual_seed(0 if seed is None else int(seed))

    def _out(self) -> dict:
        out = {"observation": self.obs.clone()}
        if self.pixels is not None:
            shape = (*self.batch_size, *self.pixels, 3)
            out["pixels"] = torch.randint(0, 256, shape, generator=self.rng, dtype=torch.uint8)
        return out

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(self.batch_size)
        else:
            mask = torch.ones(self.batch_size, dtype=torch.bool)
        fresh = torch.randn(self.obs.shape, generator=self.rng, dtype=self.dtype)
        self.obs = torch.where(mask.unsqueeze(-1), fresh, self.obs)
        self.count = torch.where(mask.unsqueeze(-1), torch.zeros_like(self.count), self.count)
        return TensorDict(self._out(), self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        noise = torch.randn(self.obs.shape, generator=self.rng, dtype=self.dtype)
        self.obs = 0.9 * self.obs + 0.1 * noise + 0.2 * action.sum(-1, keepdim=True)
        self.count = self.count + 1
        terminated = torch.rand(self.count.shape, generator=self.rng) < self.p_end
        truncated = (self.count >= self.max_steps) & ~terminated
        out = self._out()
        out.update(
            reward=-(action * action).sum(-1, keepdim=True).to(self.dtype),
            done=terminated | truncated,
            terminated=terminated,
            truncated=truncated,
        )
        return TensorDict(out, self.batch_size)


def _replay(actions: TensorDictBase, time_dim: int):
    """A policy writing the recorded actions of a rollout, one step at a time."""
    state = {"t": 0}

    def policy(td: TensorDictBase) -> TensorDictBase:
        step = actions[(slice(None),) * time_dim + (state["t"],)]
        td.update(step)
        state["t"] += 1
        return td

    return policy


def assert_same(a: TensorDictBase, b: TensorDictBase, what: str) -> None:
    """Same keys; equal integer/bool entries; float entries equal to rounding."""
    keys_a, keys_b = set(a.keys(True, True)), set(b.keys(True, True))
    assert keys_a == keys_b, f"{what}: keys differ: {sorted(map(str, keys_a ^ keys_b))}"
    for key in keys_a:
        x, y = a.get(key), b.get(key)
        mismatch = f"{what}: {key!r} {x.dtype}{tuple(x.shape)} vs {y.dtype}{tuple(y.shape)}"
        assert x.dtype == y.dtype, mismatch
        assert x.shape == y.shape, mismatch
        if x.dtype.is_floating_point:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=f"{what}: {key!r} differs")
        else:
            assert torch.equal(x, y), f"{what}: {key!r} differs"


class TransformContractTests:
    """Mixin of contract tests; subclasses implement :meth:`make_transform`."""

    #: steps of the rollouts the tests run
    rollout_steps: int = 12
    #: ``transform(base_rollout)`` equals the rollout of the transformed env (False for
    #: transforms with running state, action maps, or that change how the env steps)
    forward_matches_env: bool = True
    #: the transform maps actions (``inv``)
    has_inverse: bool = False

    def make_transform(self) -> Transform:
        """The transform under test: a new one at each call."""
        raise NotImplementedError("TransformContractTests subclasses implement make_transform()")

    def make_env(self) -> EnvBase:
        return TransformTestEnv()

    def make_batched_env(self) -> EnvBase:
        return TransformTestEnv(batch_size=[3])

    def wrap(self, env: EnvBase, transform: Transform) -> TransformedEnv:
        """The transformed env the tests use; override for transforms that need a TransformedEnv subclass."""
        return TransformedEnv(env, transform)

    # --- helpers ---------------------------------------------------------------------------
    def _env(self, batched: bool) -> TransformedEnv:
        return self.wrap(self.make_batched_env() if batched else self.make_env(), self.make_transform())

    def _rollouts(self, batched: bool) -> tuple[TensorDictBase, TensorDictBase, TransformedEnv]:
        """Two fresh envs, same seed: the policy-free rollout (mapped at once when the chain
        allows it) and the per-step rollout replaying its actions; and the second env."""
        n = self.rollout_steps
        env = self._env(batched)
        torch.manual_seed(0)
        env.set_seed(0)
        first = env.rollout(n, break_when_any_done=False)
        env.close()
        env = self._env(batched)
        env.set_seed(0)
        actions = first.select(*env.action_keys)
        second = env.rollout(n, _replay(actions, env.batch_dims), break_when_any_done=False)
        return first, second, env

    # --- the contract ----------------------------------------------------------------------
    def test_check_env_specs_single(self) -> None:
        env = self.wrap(self.make_env(), self.make_transform())
        check_env_specs(env)
        env.close()

    def test_check_env_specs_batched(self) -> None:
        env = self.wrap(self.make_batched_env(), self.make_transform())
        check_env_specs(env)
        ro = env.rollout(self.rollout_steps, break_when_any_done=False)
        assert ro.batch_size == (*env.batch_size, self.rollout_steps)
        env.close()

    def test_in_compose(self) -> None:
        env = self.wrap(self.make_env(), Compose(self.make_transform()))
        check_env_specs(env)
        assert isinstance(cast(Compose, env.transform)[0], Transform)
        env.close()

    @pytest.mark.parametrize("batched", [False, True])
    def test_rollout_roads_agree(self, batched: bool) -> None:
        fast, stepped, env = self._rollouts(batched)
        assert_same(fast, stepped, "policy-free rollout vs per-step rollout")
        env.close()

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:
        _, stepped, _ = self._rollouts(batched)
        env = self._env(batched)
        base = env.base_env
        base.set_seed(0)
        base_actions = env.transform.inv(stepped.select(*env.action_keys)).select(*base.action_keys)
        raw = base.rollout(self.rollout_steps, _replay(base_actions, base.batch_dims), break_when_any_done=False)
        out = env.transform(raw.clone())
        assert isinstance(out, TensorDictBase)
        if self.forward_matches_env:
            assert_same(out, stepped, "transform(base rollout) vs transformed env rollout")
        env.close()

    def test_standalone_compose_matches(self) -> None:
        env = self.wrap(self.make_env(), self.make_transform())
        if not env.transform.time_vectorizable:
            return  # stateful across calls: two applications would differ by design
        raw = env.base_env.rollout(self.rollout_steps, break_when_any_done=False)
        one = env.transform(raw.clone())
        chained = Compose(env.transform, _link=False)(raw.clone())
        assert_same(one, chained, "Compose(t)(td) vs t(td)")
        env.close()

    def test_in_replay_buffer(self) -> None:
        rb_mod = pytest.importorskip("tdrl.data.replay_buffers")
        env = self._env(False)
        transform = env.transform
        raw = env.base_env.rollout(self.rollout_steps, break_when_any_done=False)
        sampler = None
        if getattr(transform, "_needs_trajectories", False) or any(
            getattr(t, "_needs_trajectories", False) for t in getattr(transform, "transforms", ())
        ):
            # frame stacking needs a sampler that knows trajectories; a blind one is refused
            with pytest.raises(ValueError, match="SliceSampler"):
                rb_mod.ReplayBuffer(storage=rb_mod.LazyTensorStorage(100), transform=transform.clone())
            sampler = rb_mod.SliceSampler(slice_len=1, end_key=("next", "done"))
        rb = rb_mod.ReplayBuffer(
            storage=rb_mod.LazyTensorStorage(100), sampler=sampler, transform=transform, batch_size=5
        )
        rb.extend(raw.clone())
        sample = rb.sample()
        assert sample.batch_size == (5,)
        if transform.time_vectorizable:  # same result as calling the transform on the written data
            assert_same(rb[:], transform(transform.inv(raw.clone())), "replay buffer rb[:] vs transform(data)")
        env.close()

    def test_inverse(self) -> None:
        env = self.wrap(self.make_env(), self.make_transform())
        td = env.rand_action(env.reset())
        before = td.clone()
        base_td = env.transform.inv(td)
        assert_same(td, before, "inv must not modify its input")
        if not self.has_inverse:
            assert base_td is td or set(base_td.keys(True, True)) == set(td.keys(True, True))
            return
        for key in env.base_env.action_keys:
            spec = env.base_env.full_action_spec[key]
            assert spec.is_in(base_td.get(key)), f"{key!r}: {base_td.get(key)} not in base spec {spec}"
        env.step(td)  # the base env accepts what the inverse gives it
        env.close()

    def test_state_dict_and_copy(self) -> None:
        env = self.wrap(self.make_env(), self.make_transform())
        env.rollout(3, break_when_any_done=False)
        other = self.wrap(self.make_env(), self.make_transform())
        other.load_state_dict(env.state_dict())
        clone = copy.deepcopy(env)
        check_env_specs(clone)
        assert (clone.transform.container is clone) if not isinstance(clone.transform, Compose) else True
        env.close()
