"""TransformedEnv and Compose: the seed tutorial's env, the chain API, the rollout roads, bad input."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from tensordict import LazyStackedTensorDict, TensorDict

from tdrl.envs import (
    CatFrames,
    CatTensors,
    Compose,
    DoubleToFloat,
    DTypeCastTransform,
    ExcludeTransform,
    GrayScale,
    ObservationNorm,
    RenameTransform,
    RewardClipping,
    RewardScaling,
    RewardSum,
    StepCounter,
    Transform,
    TransformedEnv,
    UnsqueezeTransform,
    check_env_specs,
)
from tdrl.envs.common import EnvBase
from tdrl.specs import Bounded, Unbounded
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformTestEnv

IDP = "InvertedDoublePendulum-v4"


def _gym_env(name: str = IDP, **kwargs):
    from tdrl.envs.libs.gym import GymEnv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GymEnv(name, **kwargs)


@pytest.fixture(scope="module")
def seed_env():
    """The seed tutorial's env, statistics fitted as the tutorial does."""
    torch.manual_seed(0)
    env = TransformedEnv(_gym_env(), Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()))
    env.set_seed(0)
    env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    yield env
    env.close()


# --- the seed tutorial ---------------------------------------------------------------------
def test_seed_tutorial_env(seed_env):
    env = seed_env
    assert env.transform[0].loc.shape == torch.Size([11])
    assert env.transform[0].scale.shape == torch.Size([11])
    assert env.observation_spec["observation"].dtype == torch.float32
    assert env.observation_spec["step_count"].dtype == torch.int64
    assert env.reward_spec.shape == (1,)
    assert isinstance(env.action_spec, Bounded)
    assert env.input_spec["full_action_spec"]["action"] is not None
    check_env_specs(env)
    rollout = env.rollout(3)
    assert rollout.batch_size == torch.Size([3])
    assert rollout["observation"].dtype == torch.float32
    assert rollout["next", "step_count"].squeeze(-1).tolist() == [1, 2, 3]


@pytest.mark.parametrize("vectorized", [True, False])
def test_init_stats_normalizes_idp(seed_env, vectorized):
    """A fresh random rollout has mean ~0 and std ~1 on the dims that vary."""
    env = seed_env
    env.vectorized_rollout = vectorized
    try:
        torch.manual_seed(1)
        obs = env.rollout(2000, break_when_any_done=False)["observation"]
    finally:
        env.vectorized_rollout = True
    raw = env.base_env.rollout(500, break_when_any_done=False)["observation"]
    varies = raw.std(0) > 1e-8
    assert varies.sum() == 8  # IDP-v4's last 3 dims (constraint forces) are always 0
    mean, std = obs.mean(0), obs.std(0)
    assert (mean[varies].abs() < 0.2).all(), mean
    assert ((std[varies] - 1).abs() < 0.3).all(), std
    assert (obs[:, ~varies] == 0).all()  # constant dims come out as 0, not as huge values


def test_seed_chain_takes_the_vectorized_road(seed_env, monkeypatch):
    calls = []
    original = EnvBase._rollout_loop

    def spy(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EnvBase, "_rollout_loop", spy)
    seed_env.rollout(50, break_when_any_done=False)
    assert calls == []  # GymEnv's fast rollout, then the transforms over the stacked result
    env = TransformedEnv(CountingEnv(max_steps=100), StepCounter(max_steps=3))
    env.rollout(5, break_when_any_done=False)
    assert calls == ["TransformedEnv"]  # truncation changes when episodes end: per-step road


def test_policy_rollout_and_step(seed_env):
    env = seed_env
    policy = lambda td: td.set("action", torch.zeros(1))  # noqa: E731
    ro = env.rollout(20, policy, break_when_any_done=False)
    assert ro["action"].abs().sum() == 0
    assert ro["observation"].dtype == torch.float32
    td = env.reset()
    td = env.rand_step(td)
    assert td["next", "step_count"].item() == 1


# --- the chain API -------------------------------------------------------------------------
def test_compose_sequence_api():
    a, b, c = StepCounter(), RewardSum(), DoubleToFloat()
    compose = Compose(a, b)
    assert len(compose) == 2
    assert compose[0] is a
    assert list(compose) == [a, b]
    view = compose[1:]
    assert isinstance(view, Compose)
    assert view[0] is b
    assert b.container is compose  # a slice does not take the transforms away
    compose.append(c)
    compose.insert(0, InitTrackerLike())
    assert [type(t).__name__ for t in compose] == ["InitTrackerLike", "StepCounter", "RewardSum", "DoubleToFloat"]
    assert c.container is compose


class InitTrackerLike(Transform):
    """A do-nothing transform used to test the chain's order."""


def test_append_and_insert_transform_return_the_env_as_torchrl_does():
    base = CountingEnv(max_steps=5)
    env = base.append_transform(StepCounter(max_steps=3))  # a base env: a new TransformedEnv
    assert isinstance(env, TransformedEnv)
    assert env.base_env is base
    assert not isinstance(base, TransformedEnv)
    assert env.append_transform(RewardSum()) is env  # in place, chained
    assert env.insert_transform(0, InitTrackerLike()) is env
    assert [type(t).__name__ for t in env.transform] == ["InitTrackerLike", "StepCounter", "RewardSum"]
    assert env.rollout(10).shape == torch.Size([3])


def test_transformed_env_chain_api():
    env = TransformedEnv(CountingEnv(max_steps=3), StepCounter())
    assert isinstance(env.transform, StepCounter)
    env.append_transform(RewardSum())
    assert isinstance(env.transform, Compose)
    assert len(env.transform) == 2
    assert "episode_reward" in env.observation_spec.keys()
    env.insert_transform(0, DoubleToFloat())
    assert isinstance(env.transform[0], DoubleToFloat)
    assert env.transform[0].parent is env.base_env
    assert isinstance(env.transform[2].parent, TransformedEnv)  # base env + the two before it
    assert env.base_env.max_steps == 3
    assert env.max_steps == 3
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = env.nope
    env.transform = Compose(RewardSum())
    assert "step_count" not in env.observation_spec.keys()
    check_env_specs(env)
    assert "TransformedEnv" in repr(env)
    assert "RewardSum" in repr(env)


def test_nested_transformed_env():
    inner = TransformedEnv(CountingEnv(max_steps=3), StepCounter())
    env = TransformedEnv(inner, RewardSum())
    check_env_specs(env)
    ro = env.rollout(5, break_when_any_done=False)
    assert ro["next", "step_count"].squeeze(-1).tolist() == [1, 2, 3, 1, 2]
    assert ro["next", "episode_reward"].squeeze(-1).tolist() == [1.0, 2.0, 3.0, 1.0, 2.0]


def test_pickle_and_deepcopy_keep_the_chain_linked():
    env = TransformedEnv(CountingEnv(max_steps=3), Compose(StepCounter(), RewardSum()))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.transform.container is clone
    assert clone.transform[1].container is clone.transform
    assert clone.transform[1].parent is not None
    check_env_specs(clone)
    copied = env.transform[0].clone()
    assert copied.container is None  # a clone is free to join another chain


def test_state_dict_round_trip(seed_env):
    fresh = TransformedEnv(
        _gym_env(), Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter())
    )
    fresh.load_state_dict(seed_env.state_dict())
    assert torch.equal(fresh.transform[0].loc, seed_env.transform[0].loc)
    check_env_specs(fresh)
    fresh.close()


def test_batched_env_partial_reset_through_transforms():
    env = TransformedEnv(CountingEnv(max_steps=100, batch_size=[2]), Compose(StepCounter(), RewardSum()))
    td = env.reset()
    for _ in range(3):
        td = env.step_and_maybe_reset(env.rand_action(td))[1]
    td.set("_reset", torch.tensor([[True], [False]]))
    td = env.reset(td)
    assert td["step_count"].squeeze(-1).tolist() == [0, 3]
    assert td["episode_reward"].squeeze(-1).tolist() == [0.0, 3.0]
    td = env.rand_step(td)
    assert td["next", "step_count"].squeeze(-1).tolist() == [1, 4]


def test_gym_vector_env_chain():
    base = _gym_env("CartPole-v1", num_envs=3, categorical_action_encoding=True)
    env = TransformedEnv(
        base, Compose(StepCounter(max_steps=15), CatFrames(3, -1, in_keys=["observation"]), RewardSum())
    )
    env.set_seed(0)
    check_env_specs(env)
    ro = env.rollout(40, break_when_any_done=False)
    count, nxt = ro["step_count"], ro["next", "step_count"]
    assert (nxt == count + 1).all()
    assert nxt.max() <= 15
    done = ro["next", "done"]
    assert (count[:, 1:] == torch.where(done[:, :-1], 0, nxt[:, :-1])).all()
    at_limit = nxt == 15
    assert at_limit.any()
    assert ro["next", "truncated"][at_limit].all()
    assert done[at_limit].all()
    env.close()


# --- specs must say what the env emits ----------------------------------------------------
class _SilentCast(Transform):
    """A buggy transform: changes the dtype without telling the spec."""

    def _apply_transform(self, value):
        return value.double()


class _SilentKey(Transform):
    """A buggy transform: writes an entry no spec declares."""

    def _call(self, tensordict):
        tensordict.set("extra", torch.zeros(*tensordict.batch_size, 1))
        return tensordict


def test_check_env_specs_catches_transforms_that_lie():
    with pytest.raises(ValueError, match="dtype"):
        check_env_specs(TransformedEnv(CountingEnv(), _SilentCast(in_keys=["observation"])))
    with pytest.raises(ValueError, match="extra"):
        check_env_specs(TransformedEnv(CountingEnv(), _SilentKey()))


# --- bad input -------------------------------------------------------------------------------
def test_missing_in_key_names_transform_key_and_fix():
    with pytest.raises(KeyError, match=r"ObservationNorm: in_key 'pixels' is not produced.*observation.*Fix"):
        TransformedEnv(CountingEnv(), ObservationNorm(loc=0.0, scale=1.0, in_keys=["pixels"]))


def test_observation_norm_used_before_stats():
    env = TransformedEnv(CountingEnv(), ObservationNorm(in_keys=["observation"]))
    with pytest.raises(RuntimeError, match=r"ObservationNorm.*'observation'.*init_stats.*loc= and scale="):
        env.rollout(3)
    with pytest.raises(RuntimeError, match="init_stats"):
        check_env_specs(env)


def test_init_stats_without_variance():
    env = TransformedEnv(CountingEnv(max_steps=1), ObservationNorm(in_keys=["observation"]))
    # with one-step episodes the root observation is always the reset value 0
    with pytest.raises(ValueError, match=r"init_stats: 'observation' has no variance.*Fix"):
        env.transform.init_stats(num_iter=50)
    assert not env.transform.initialized


def test_init_stats_needs_an_env():
    with pytest.raises(RuntimeError, match="attach the transform first"):
        ObservationNorm(in_keys=["observation"]).init_stats(10)


def test_append_that_cannot_accept_the_spec_is_undone():
    env = TransformedEnv(TransformTestEnv(), Compose(CatTensors(["observation"], out_key="vector")))
    before = env.observation_spec.clone()
    with pytest.raises(KeyError, match=r"ObservationNorm: in_key 'observation' is not produced.*vector.*Fix"):
        env.transform.append(ObservationNorm(loc=0.0, scale=1.0, in_keys=["observation"]))
    assert len(env.transform) == 1
    assert env.observation_spec == before
    with pytest.raises(ValueError, match=r"GrayScale: 'vector' must be a floating-point image.*ToTensorImage"):
        env.append_transform(GrayScale(in_keys=["vector"]))
    with pytest.raises(ValueError, match=r"CatTensors: cannot concatenate.*dtype.*Fix"):
        env.append_transform(
            Compose(
                DTypeCastTransform(torch.float32, torch.float64, in_keys=["vector"], out_keys=["v64"]),
                CatTensors(["vector", "v64"], out_key="both"),
            )
        )
    assert len(env.transform) == 1
    check_env_specs(env)


def test_replacing_the_transform_with_a_bad_one_is_undone():
    env = TransformedEnv(CountingEnv(), StepCounter())
    with pytest.raises(KeyError, match="pixels"):
        env.transform = ObservationNorm(loc=0.0, scale=1.0, in_keys=["pixels"])
    assert isinstance(env.transform, StepCounter)
    assert env.transform.container is env
    check_env_specs(env)


def test_transform_lives_in_one_chain():
    t = StepCounter()
    env = TransformedEnv(CountingEnv(), t)  # (kept: the link to the container is weak, as in TorchRL)
    with pytest.raises(ValueError, match=r"already attached.*clone"):
        TransformedEnv(CountingEnv(), t)
    assert env.transform is t


def test_forward_missing_key():
    t = ObservationNorm(loc=0.0, scale=1.0, in_keys=["obs"])
    with pytest.raises(KeyError, match=r"ObservationNorm: in_key 'obs' is neither at the root nor under 'next'"):
        t(TensorDict({"observation": torch.zeros(3)}, []))


def test_step_without_reset_entries():
    env = TransformedEnv(CountingEnv(), StepCounter())
    td = env.reset().exclude("step_count")
    with pytest.raises(KeyError, match=r"StepCounter.*'step_count'.*env.reset"):
        env.rand_step(td)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ObservationNorm(loc=0.0), "both loc and scale"),
        (lambda: ObservationNorm(loc=0.0, scale=0.0, standard_normal=True), "non-zero"),
        (lambda: StepCounter(max_steps=0), "positive int"),
        (lambda: CatFrames(N=2, dim=1), "negative int"),
        (lambda: Transform(in_keys=["a", "b"], out_keys=["c"]), "same length"),
        (lambda: Compose(StepCounter(), "not a transform"), "Transform instances"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_norm_shape_mismatch_at_attach():
    with pytest.raises(ValueError, match=r"loc has shape \(5,\).*'observation'.*Fix"):
        TransformedEnv(TransformTestEnv(obs_dim=3), ObservationNorm(loc=torch.zeros(5), scale=torch.ones(5)))


def test_vectorized_and_stepped_roads_agree_on_gym(seed_env):
    """The seed chain over gymnasium: mapped at once == stepped, given the same actions."""
    env = seed_env
    torch.manual_seed(0)
    env.set_seed(3)
    fast = env.rollout(300, break_when_any_done=False)
    actions = fast["action"]
    env.set_seed(3)
    state = {"t": 0}

    def replay(td):
        td.set("action", actions[state["t"]])
        state["t"] += 1
        return td

    stepped = env.rollout(300, replay, break_when_any_done=False)
    assert set(fast.keys(True, True)) == set(stepped.keys(True, True))
    for key in fast.keys(True, True):
        a, b = fast.get(key), stepped.get(key)
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=str(key))
    assert fast["next", "done"].sum() > 3  # the comparison crossed several resets


def test_unbounded_spec_kept_for_norm():
    env = TransformedEnv(TransformTestEnv(), ObservationNorm(loc=0.0, scale=2.0))
    assert isinstance(env.observation_spec["observation"], Unbounded)


@pytest.mark.parametrize("batched_cls", ["SerialEnv", "ParallelEnv"])
def test_over_batched_envs_in_a_collector(batched_cls):
    import functools

    from tdrl import envs
    from tdrl.collectors import SyncDataCollector
    from tdrl.envs import InitTracker

    base = getattr(envs, batched_cls)(2, functools.partial(TransformTestEnv, p_end=0.3))
    env = TransformedEnv(
        base,
        Compose(StepCounter(max_steps=4), CatFrames(2, -1, in_keys=["observation"], out_keys=["pair"]), InitTracker()),
    )
    env.set_seed(0)
    check_env_specs(env)
    collector = SyncDataCollector(env, None, frames_per_batch=40, total_frames=80)
    try:
        for batch in collector:
            count, nxt = batch["step_count"], batch["next", "step_count"]
            assert (nxt == count + 1).all()
            assert nxt.max() <= 4
            assert torch.equal(batch["is_init"], count == 0)
            assert torch.equal(batch["pair"][..., 3:], batch["observation"])  # the newest frame is last
            assert torch.equal(batch["next", "pair"][..., :3], batch["observation"])
    finally:
        collector.shutdown()
        env.close()


class _CloseRecorder(CountingEnv):
    closed = 0

    def close(self) -> None:
        type(self).closed += 1
        super().close()


def test_parent_view_does_not_close_the_base_env():
    import gc

    env = TransformedEnv(_CloseRecorder(max_steps=4), Compose(StepCounter(), ObservationNorm(in_keys=["observation"])))
    _CloseRecorder.closed = 0
    env.transform[1].init_stats(num_iter=40)  # runs the parent view (base env + StepCounter)
    gc.collect()
    assert _CloseRecorder.closed == 0
    check_env_specs(env)
    env.close()
    assert _CloseRecorder.closed >= 1


# --- the per-step hooks' direct writes (plain TensorDicts) and their fallbacks ---------------
class _Widen(Transform):
    """Changes the shape of what it maps: must go through TensorDict.set's checks."""

    def _apply_transform(self, value):
        return torch.cat([value, value], -1)


def test_hooks_write_plain_tensordicts_directly_and_keep_values():
    td = TensorDict({"x": torch.ones(3, 2, dtype=torch.float64), "done": torch.zeros(3, 1, dtype=torch.bool)}, [3])
    out = DoubleToFloat(in_keys=["x"])._call(td)
    assert out is td
    assert td["x"].dtype == torch.float32
    ObservationNorm(loc=1.0, scale=2.0, in_keys=["x"], out_keys=["y"])._call(td)
    assert torch.equal(td["y"], torch.full((3, 2), 3.0))
    counter = StepCounter()
    counter._reset(None, td)
    assert td["step_count"].shape == (3, 1)
    assert td["step_count"].dtype == torch.int64


def test_hooks_respect_a_locked_tensordict():
    td = TensorDict({"x": torch.ones(2, dtype=torch.float64)}, []).lock_()
    with pytest.raises(RuntimeError, match="locked"):
        DoubleToFloat(in_keys=["x"])._call(td)


def test_hooks_validate_values_whose_shape_changes():
    td = TensorDict({"x": torch.ones(3, 2)}, [3])
    _Widen(in_keys=["x"])._call(td)  # same batch dims: accepted through set
    assert td["x"].shape == (3, 4)
    bad = TensorDict({"x": torch.ones(3)}, [3])  # the widened value no longer has batch dim 3
    with pytest.raises(RuntimeError):
        _Widen(in_keys=["x"])._call(bad)


def test_hooks_on_nested_keys_and_other_tensordict_types():
    td = TensorDict({"agent": {"x": torch.ones(2, 1, dtype=torch.float64)}}, [2])
    DoubleToFloat(in_keys=[("agent", "x")])._call(td)
    assert td["agent", "x"].dtype == torch.float32
    stacked = LazyStackedTensorDict.lazy_stack(
        [TensorDict({"x": torch.ones(1, dtype=torch.float64)}, []) for _ in range(2)]
    )
    assert type(stacked) is LazyStackedTensorDict
    DoubleToFloat(in_keys=["x"])._call(stacked)  # not a plain TensorDict: the get/set road
    assert stacked["x"].dtype == torch.float32


def test_reward_clipping_bounds_keep_a_float64_reward_in_its_spec():
    # the clipped spec's bounds went through float32 (-7.4e-76 -> -0.0) while the data was clamped in float64
    env = TransformedEnv(TransformTestEnv(dtype=torch.float64), RewardClipping(-7.4e-76, 0.0))
    assert env.reward_spec.low.item() == -7.4e-76
    check_env_specs(env, num_steps=5)


# --- a transform that rewrites the entry a stateful transform before it carries (found by the transform fuzz suite)


def _stepped(env, steps):
    env.vectorized_rollout = False  # the per-step road, the one collectors take
    return env.rollout(steps)


@pytest.mark.parametrize(
    ("chain", "owner", "key"),
    [
        # the return compounded: 10, 110, 1110 instead of 10, 20, 30
        (
            lambda: Compose(RewardSum(), RewardScaling(scale=10.0, in_keys=["episode_reward"])),
            "RewardSum",
            "episode_reward",
        ),
        # the next step found no 'step_count' and said to start from env.reset()
        (lambda: Compose(StepCounter(), RenameTransform(["step_count"], ["t"])), "StepCounter", "step_count"),
        (lambda: Compose(RewardSum(), ExcludeTransform("episode_reward")), "RewardSum", "episode_reward"),
    ],
    ids=["rewardsum-scaling", "stepcounter-rename", "rewardsum-exclude"],
)
def test_a_later_transform_may_not_rewrite_the_entry_a_stateful_transform_carries(chain, owner, key):
    with pytest.raises(
        ValueError, match=rf"rewrites or drops {key!r}, which {owner} carries from one step to the next"
    ):
        TransformedEnv(CountingEnv(max_steps=100), chain())
    env = TransformedEnv(CountingEnv(max_steps=100), Compose(chain()[0].clone()))
    with pytest.raises(ValueError, match=rf"which {owner} carries"):
        env.append_transform(chain()[1].clone())
    assert len(env.transform) == 1  # the append was undone


# --- CatFrames followed by a transform that rewrites the stack: the raw stacks stay inside CatFrames (TorchRL's DQN
# tutorial normalizes the stacked pixels). Before, the chain was refused; before that, stepping gave [0, 100, 20]
# instead of [0, 10, 20] (the next step stacked the normalized frames again), and an unsqueeze after CatFrames made
# the next step narrow the unsqueezed stack (torch's RuntimeError, found by the fuzz suite).
@pytest.mark.parametrize(
    ("later", "shape"),
    [
        (lambda: ObservationNorm(0.0, 10.0), lambda stacks: stacks * 10.0),
        (lambda: UnsqueezeTransform(-1, in_keys=["observation"]), lambda stacks: stacks.unsqueeze(-1)),
        (lambda: ExcludeTransform("observation"), None),
    ],
    ids=["norm", "unsqueeze", "exclude"],
)
@pytest.mark.parametrize("appended", [False, True])
def test_cat_frames_keeps_its_raw_stacks_inside_when_a_later_transform_rewrites_them(later, shape, appended):
    def chain(*more):
        return Compose(CatFrames(3, -1, in_keys=["observation"]), *more)

    reference = TransformedEnv(CountingEnv(max_steps=4), chain()).rollout(6, break_when_any_done=False)
    if appended:
        env = TransformedEnv(CountingEnv(max_steps=4), chain())
        env.append_transform(later())
    else:
        env = TransformedEnv(CountingEnv(max_steps=4), chain(later()))
    for vectorized in (True, False):
        env.vectorized_rollout = vectorized
        out = env.rollout(6, break_when_any_done=False)
        assert out["next", "done"].any()  # the stacks restart at a reset inside the rollout
        if shape is None:
            assert "observation" not in out.keys()
        else:
            for key in ("observation", ("next", "observation")):
                assert torch.equal(out[key], shape(reference[key])), (key, vectorized)
    check_env_specs(env)


def test_cat_frames_with_its_stacks_inside_restarts_only_the_sub_envs_a_partial_reset_restarts():
    chain = Compose(CatFrames(N=3, dim=-1, in_keys=["observation"]), ObservationNorm(0.0, 2.0))
    env = TransformedEnv(CountingEnv(max_steps=100, batch_size=[2]), chain)
    td = env.reset()
    for _ in range(4):
        td = env.step_and_maybe_reset(env.rand_action(td))[1]
    td.set("_reset", torch.tensor([[True], [False]]))
    td = env.reset(td)
    assert td["observation"].tolist() == [[0, 0, 0], [4, 6, 8]]
    td = env.rand_step(td)
    assert td["next", "observation"].tolist() == [[0, 0, 2], [6, 8, 10]]


def test_cat_frames_with_its_stacks_inside_says_to_reset_before_stepping():
    env = TransformedEnv(
        CountingEnv(), Compose(CatFrames(N=2, dim=-1, in_keys=["observation"]), ObservationNorm(0.0, 2.0))
    )
    td = env.fake_tensordict().exclude("next")
    with pytest.raises(KeyError, match=r"CatFrames: step called before any reset.*Fix: call env.reset\(\) first"):
        env.transform._step(td, env.base_env._step(td))


def test_cat_frames_stacks_stay_inside_after_a_parent_view_rebuilds_the_prefix():
    # ObservationNorm.init_stats rolls out its parent: a view of the chain up to CatFrames, with no rewrite after it
    stack = CatFrames(N=3, dim=-1, in_keys=["observation"])
    norm = ObservationNorm(in_keys=["observation"], standard_normal=True)
    env = TransformedEnv(CountingEnv(max_steps=4), Compose(StepCounter(), stack, norm))
    norm.init_stats(num_iter=20)
    assert norm.parent is not None
    assert stack._stack_inside
    out = env.rollout(6, break_when_any_done=False)
    raw = TransformedEnv(CountingEnv(max_steps=4), CatFrames(N=3, dim=-1, in_keys=["observation"]))
    raw = raw.rollout(6, break_when_any_done=False)
    assert out["next", "done"].any()
    torch.testing.assert_close(out["next", "observation"], (raw["next", "observation"] - norm.loc) / norm.scale)


def test_a_cat_frames_moved_to_a_chain_without_rewrites_carries_its_stacks_in_the_root_again():
    env = TransformedEnv(
        CountingEnv(max_steps=4), Compose(CatFrames(N=3, dim=-1, in_keys=["observation"]), ObservationNorm(0.0, 2.0))
    )
    assert not env.transform._vectorizable
    alone = TransformedEnv(CountingEnv(max_steps=4), env.transform[0].clone())
    assert alone.transform._vectorizable  # the rollout maps the base rollout at once again
    assert alone.rollout(3)["next", "observation"].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3]]


def test_the_entry_a_stateful_transform_carries_can_be_read_into_another():
    stacked = CatFrames(3, -1, in_keys=["observation"])
    norm = ObservationNorm(0.0, 10.0, in_keys=["observation"], out_keys=["normed"])
    env = TransformedEnv(CountingEnv(max_steps=100), Compose(stacked, norm))
    assert _stepped(env, 3)["next", "normed"].tolist() == [[0.0, 0.0, 10.0], [0.0, 10.0, 20.0], [10.0, 20.0, 30.0]]
    returns = TransformedEnv(TransformTestEnv(dtype=torch.float64), Compose(RewardSum(), DoubleToFloat()))
    assert returns.observation_spec["episode_reward"].dtype == torch.float32  # a cast of the carried entry is allowed
    check_env_specs(returns)


def test_a_cast_of_a_carried_entry_takes_the_stepping_road_so_both_roads_agree():
    # stepping re-read the float16 return at each step while mapping the whole rollout summed in float64:
    # the roads differed by float16 rounding. Found by the transform fuzz suite.
    def rollout(vectorized):
        cast = DTypeCastTransform(torch.float64, torch.float16, in_keys=["episode_reward"])
        env = TransformedEnv(
            TransformTestEnv(dtype=torch.float64, p_end=0.0, max_steps=100), Compose(RewardSum(), cast)
        )
        env.vectorized_rollout = vectorized
        env.set_seed(0)
        torch.manual_seed(0)
        return env.rollout(50, break_when_any_done=False)

    mapped, stepped = rollout(True), rollout(False)
    assert torch.equal(mapped["next", "episode_reward"], stepped["next", "episode_reward"])


def test_compose_takes_functions_lists_and_keyword():
    seen = []

    def mark(td):
        seen.append(td.batch_size)
        td.set("marked", torch.ones(td.batch_size, dtype=torch.bool))
        return td

    env = TransformedEnv(CountingEnv(), Compose(mark, StepCounter()))
    td = env.rollout(3)
    assert td["next", "marked"].all()  # each step's output went through the function
    assert len(seen) == 1 + 3  # the reset and three steps
    assert isinstance(env.transform[0].func, type(mark))
    as_list = Compose([RewardScaling(0.0, 2.0), mark])
    as_keyword = Compose(transforms=[RewardScaling(0.0, 2.0), mark])
    assert [type(t).__name__ for t in as_list] == [type(t).__name__ for t in as_keyword]
    out = as_list(TensorDict({"reward": torch.ones(2, 1)}, [2]))
    assert (out["reward"] == 2).all()
    assert out["marked"].all()  # forward applies the function too
    with pytest.raises(TypeError, match=r"Compose takes Transform instances or functions.*int"):
        Compose(StepCounter(), 3)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Compose(StepCounter(), tranforms=[])
    with pytest.raises(TypeError, match="not both"):
        Compose(StepCounter(), transforms=[StepCounter()])
    chain = Compose(StepCounter())
    chain.append(mark)
    assert len(chain) == 2
