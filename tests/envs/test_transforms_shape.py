"""PermuteTransform, SqueezeTransform, FlattenObservation and BatchSizeTransform: contract, values, specs, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs import (
    BatchSizeTransform,
    Compose,
    EnvBase,
    FlattenAction,
    FlattenObservation,
    PermuteTransform,
    SqueezeTransform,
    StepCounter,
    Transform,
    TransformedEnv,
    UnsqueezeTransform,
    check_env_specs,
)
from tdrl.specs import Bounded, Composite, Unbounded
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _with_unsqueezed(batch_size: Any = (), obs: bool = True, action: bool = False) -> EnvBase:
    """TransformTestEnv whose observation [3] (and/or action [2]) gains a size-1 dim: [1, 3] / [1, 2]."""
    transforms = []
    if obs:
        transforms.append(UnsqueezeTransform(-2, in_keys=["observation"]))
    if action:
        transforms.append(UnsqueezeTransform(-2, in_keys_inv=["action"]))
    return TransformedEnv(TransformTestEnv(batch_size=batch_size), Compose(*transforms))


class StatelessEnv(EnvBase):
    """An env whose step computes the next state from the state it is given: it follows its input's batch."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_spec = Composite(observation=Unbounded(shape=(2,)))
        self.action_spec = Bounded(-1.0, 1.0, shape=(2,))

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        batch = tensordict.batch_size if tensordict is not None else torch.Size([])
        return TensorDict({"observation": torch.zeros(*batch, 2)}, batch)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        obs = tensordict.get("observation") + tensordict.get("action")
        done = obs.abs().sum(-1, keepdim=True) > 3
        return TensorDict(
            {
                "observation": obs,
                "reward": -obs.abs().sum(-1, keepdim=True),
                "done": done,
                "terminated": done.clone(),
                "truncated": torch.zeros_like(done),
            },
            tensordict.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        pass


# --- the transform contract -------------------------------------------------------------------------------------


class _Pixels:
    def make_env(self):
        return TransformTestEnv(pixels=(4, 5))

    def make_batched_env(self):
        return TransformTestEnv(pixels=(4, 5), batch_size=[3])


class TestPermute(_Pixels, TransformContractTests):
    def make_transform(self):
        return PermuteTransform([-1, -3, -2], in_keys=["pixels"])


class TestPermuteAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return PermuteTransform([-1, -2], in_keys_inv=["action"])

    def make_env(self):
        return _with_unsqueezed(obs=False, action=True)

    def make_batched_env(self):
        return _with_unsqueezed([3], obs=False, action=True)


class TestSqueeze(TransformContractTests):
    def make_transform(self):
        return SqueezeTransform(-2, in_keys=["observation"])

    def make_env(self):
        return _with_unsqueezed()

    def make_batched_env(self):
        return _with_unsqueezed([3])


class TestSqueezeAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return SqueezeTransform(-2, in_keys_inv=["action"])

    def make_env(self):
        return _with_unsqueezed(obs=False, action=True)

    def make_batched_env(self):
        return _with_unsqueezed([3], obs=False, action=True)


class TestFlatten(_Pixels, TransformContractTests):
    def make_transform(self):
        return FlattenObservation(-3, -1)


class TestFlattenPositive(_Pixels, TransformContractTests):
    def make_transform(self):
        return FlattenObservation(0, 1, in_keys=["pixels"], out_keys=["flat"], allow_positive_dim=True)


class TestBatchSize(TransformContractTests):
    forward_matches_env = False  # the batch is set at reset: a base rollout has the base env's batch

    def make_transform(self):
        return BatchSizeTransform(batch_size=[4])

    def make_env(self):
        return StatelessEnv()

    make_batched_env = make_env

    def test_forward_on_tensordict(self) -> None:  # type: ignore[override]
        # overrides the mixin's: a base rollout of a stateless env has no batch to replay 4 sub-envs' actions into
        td = TensorDict({"observation": torch.ones(4, 2)}, [4])
        assert BatchSizeTransform(batch_size=[4])(td.clone())["observation"].shape == (4, 2)


class TestBatchSizeReshape(TransformContractTests):
    forward_matches_env = False
    has_inverse = True

    def make_transform(self):
        return BatchSizeTransform(reshape_fn=lambda data: data.unsqueeze(0))

    def test_forward_on_tensordict(self) -> None:  # type: ignore[override]
        # overrides the mixin's: forward applies reshape_fn as it is to a rollout, whose time dim it does not expect
        out = self.make_transform()(TensorDict({"observation": torch.ones(3, 2)}, [3]))
        assert out.batch_size == (1, 3)

    def test_in_replay_buffer(self) -> None:
        # overrides the mixin's: a transform that reshapes the batch changes the shape of what a buffer samples
        rb_mod = pytest.importorskip("tdrl.data.replay_buffers")
        rb = rb_mod.ReplayBuffer(storage=rb_mod.LazyTensorStorage(10), transform=self.make_transform(), batch_size=4)
        rb.extend(TensorDict({"observation": torch.arange(6.0).unsqueeze(-1)}, [6]))
        assert rb.sample().batch_size == (1, 4)


# --- values, specs, errors --------------------------------------------------------------------------------------


def test_permute_moves_channels_first_and_the_inverse_undoes_it():
    x = torch.arange(2 * 4 * 5 * 3).view(2, 4, 5, 3)
    t = PermuteTransform([-1, -3, -2], in_keys=["x"], in_keys_inv=["x"])
    assert torch.equal(t._apply_transform(x), x.permute(0, 3, 1, 2))
    assert torch.equal(t._inv_apply_transform(t._apply_transform(x)), x)
    rotation = PermuteTransform([-2, -1, -3])  # not its own inverse
    assert torch.equal(rotation._inv_apply_transform(rotation._apply_transform(x)), x)


def test_permute_maps_bounds_and_the_action_spec():
    env = TransformedEnv(_with_unsqueezed(obs=False, action=True), PermuteTransform([-1, -2], in_keys_inv=["action"]))
    assert env.action_spec.shape == (2, 1)
    low = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    spec = PermuteTransform([-1, -2], in_keys=["box"])._transform_spec(Bounded(low, low + 1, shape=(2, 3)), "box")
    assert spec.shape == (3, 2)
    assert torch.equal(spec.space.low, low.T)
    assert torch.equal(spec.space.high, low.T + 1)


def test_squeeze_round_trips_the_action():
    env = TransformedEnv(_with_unsqueezed(obs=False, action=True), SqueezeTransform(-2, in_keys_inv=["action"]))
    td = env.rand_action(env.reset())
    assert td["action"].shape == (2,)
    base = env.transform.inv(td)
    assert base["action"].shape == (1, 2)
    assert env.step(td)["next", "observation"].shape == (3,)


def test_squeeze_positive_dim_counts_after_the_batch_dims():
    env = TransformedEnv(_with_unsqueezed([3]), SqueezeTransform(0, in_keys=["observation"], allow_positive_dim=True))
    assert env.observation_spec["observation"].shape == (3, 3)
    assert env.transform.dim == 1
    assert env.rollout(2)["next", "observation"].shape == (3, 2, 3)


def test_squeeze_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"positive dim"):
        SqueezeTransform(1, in_keys=["observation"])
    with pytest.raises(TypeError, match=r"needs dim"):
        SqueezeTransform(in_keys=["observation"])
    with pytest.raises(ValueError, match=r"'observation' has shape \(3,\); dim -1 is not a dim of size 1"):
        TransformedEnv(TransformTestEnv(), SqueezeTransform(-1, in_keys=["observation"]))
    with pytest.warns(DeprecationWarning, match=r"squeeze_dim"):
        assert SqueezeTransform(squeeze_dim=-1).dim == -1


def test_flatten_merges_dims_and_bounds():
    env = TransformedEnv(TransformTestEnv(pixels=(4, 5), batch_size=[2]), FlattenObservation(-3, -2))
    spec = env.observation_spec["pixels"]
    assert spec.shape == (2, 20, 3)
    assert spec.space.high.shape == (2, 20, 3)
    ro = env.rollout(3, break_when_any_done=False)
    assert ro["pixels"].shape == (2, 3, 20, 3)
    with pytest.raises(ValueError, match=r"last_dim=0 is a positive dim"):
        FlattenObservation(-2, 0)
    with pytest.raises(ValueError, match=r"cannot flatten dims -5..-1 of 'observation'"):
        TransformedEnv(TransformTestEnv(), FlattenObservation(-5, -1, in_keys=["observation"]))


def test_flatten_matches_a_reshape_of_the_raw_pixels():
    base = TransformTestEnv(pixels=(4, 5))
    base.set_seed(3)
    raw = base.rollout(4)
    env = TransformedEnv(TransformTestEnv(pixels=(4, 5)), FlattenObservation(-3, -1))
    env.set_seed(3)
    out = env.rollout(4, policy=_replay(raw["action"]))
    assert torch.equal(out["next", "pixels"], raw["next", "pixels"].reshape(4, 60))


def _replay(actions: torch.Tensor):
    state = {"t": 0}

    def policy(td):
        td.set("action", actions[state["t"]])
        state["t"] += 1
        return td

    return policy


def test_batch_size_reshapes_the_env_and_resets_parts_of_it():
    env = TransformedEnv(
        CountingEnv(max_steps=3, batch_size=[6]),
        Compose(BatchSizeTransform(reshape_fn=lambda data: data.reshape(2, 3)), StepCounter()),
    )
    check_env_specs(env)
    assert env.batch_size == (2, 3)
    assert env.action_spec.shape == (2, 3, 1)
    ro = env.rollout(7, break_when_any_done=False)
    assert ro.batch_size == (2, 3, 7)
    assert ro["step_count"][0, 0].squeeze(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert torch.equal(ro["next", "observation"], ro["next", "step_count"].float())


def test_batch_size_sets_the_batch_of_a_stateless_env_and_uses_reset_func():
    seen = {}

    def reset_func(tensordict, tensordict_reset, env):
        seen["env"] = env
        out = tensordict_reset.clone()
        out["observation"] = torch.ones(*out.batch_size, 2)
        return out

    env = TransformedEnv(StatelessEnv(), BatchSizeTransform(batch_size=[5], reset_func=reset_func, env_kwarg=True))
    assert env.batch_size == (5,)
    td = env.reset()
    assert td.batch_size == (5,)
    assert bool((td["observation"] == 1).all())
    assert seen["env"] is env
    ro = env.rollout(4, break_when_any_done=False)
    assert ro.batch_size == (5, 4)
    assert torch.allclose(ro["next", "observation"][:, 0], 1 + ro["action"][:, 0])


def test_batch_size_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"one of batch_size"):
        BatchSizeTransform()
    with pytest.raises(ValueError, match=r"one of batch_size"):
        BatchSizeTransform(batch_size=[2], reshape_fn=lambda d: d)
    with pytest.raises(ValueError, match=r"batch size \(6,\) cannot expand to \(4,\)"):
        TransformedEnv(CountingEnv(batch_size=[6]), BatchSizeTransform(batch_size=[4]))
    with pytest.raises(ValueError, match=r"another number of sub-envs"):
        TransformedEnv(CountingEnv(batch_size=[6]), BatchSizeTransform(reshape_fn=lambda d: d[:3]))


# --- FlattenAction ------------------------------------------------------------------------------------------------


class TestFlattenAction(TransformContractTests):
    has_inverse = True

    def make_transform(self):
        return FlattenAction(-2, -1)

    def make_env(self):
        return _with_unsqueezed(obs=False, action=True)

    def make_batched_env(self):
        return _with_unsqueezed([3], obs=False, action=True)


class TestFlattenActionRenamed(TestFlattenAction):
    forward_matches_env = False  # the policy's flat_action is another entry than the stored base action

    def make_transform(self):
        return FlattenAction(0, 1, out_keys_inv=["flat_action"], in_keys=[], allow_positive_dim=True)


def _action_3x2(batch_size: Any = ()) -> EnvBase:
    """TransformTestEnv whose policy writes [3, 2] actions (the base env reads their first row)."""

    class FirstRow(Transform):
        def _inv_call(self, td):
            td.set("action", td.get("action")[..., 0, :])
            return td

        def _has_inverse(self):
            return True

        def transform_input_spec(self, input_spec):
            spec = input_spec["full_action_spec", "action"]
            input_spec["full_action_spec", "action"] = Bounded(-1.0, 1.0, shape=(*spec.shape[:-1], 3, 2))
            return input_spec

    return TransformedEnv(TransformTestEnv(batch_size=batch_size), FirstRow())


def test_flatten_action_unflattens_what_the_policy_writes():
    env = TransformedEnv(_action_3x2([4]), FlattenAction())
    assert env.action_spec.shape == (4, 6)
    assert env.action_spec.space.low.shape == (4, 6)
    check_env_specs(env)
    td = env.reset()
    td.set("action", torch.arange(24.0).view(4, 6) / 24)
    base_td = env.transform.inv(td)
    assert base_td["action"].shape == (4, 3, 2)
    assert torch.equal(base_td["action"].flatten(-2), td["action"])
    assert "action" in td.keys()
    assert td["action"].shape == (4, 6)


def test_flatten_action_on_data_needs_no_env():
    t = FlattenAction(action_shape=[3, 2])
    td = TensorDict({"action": torch.arange(12.0).view(2, 6)}, [2])
    assert t.inv(td)["action"].shape == (2, 3, 2)
    assert t(TensorDict({"action": torch.zeros(2, 3, 2)}, [2]))["action"].shape == (2, 6)
    with pytest.raises(RuntimeError, match="action_shape"):
        FlattenAction().inv(td)


def test_flatten_action_argument_errors():
    with pytest.raises(ValueError, match="positive dim"):
        FlattenAction(0, -1)
    with pytest.raises(ValueError, match="first_dim"):
        FlattenAction(-1, -2)
    with pytest.raises(ValueError, match="not feature dims of 'action'"):
        TransformedEnv(TransformTestEnv(), FlattenAction(-3, -1))
