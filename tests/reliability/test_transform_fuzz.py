"""Fuzz the transforms that map tensors, with hypothesis: random batch shapes, entries and parameters.

Three properties, on a mock env whose observations are drawn from random specs (random
batch shape, feature shapes, dtypes, bounded or not) and whose episodes end at random,
through chains of one to three transforms with random parameters (``ObservationNorm``,
``DoubleToFloat``, ``DTypeCastTransform``, ``ClipTransform``, ``RewardScaling``,
``RewardClipping``, ``CatTensors``, ``UnsqueezeTransform``, ``RenameTransform``,
``StepCounter``, ``RewardSum``, ``InitTracker``, ``VecNorm``, ``CatFrames``, ``ActionScaling``):

- **data matches the transformed spec**: ``check_env_specs`` on the transformed env (every
  entry the env writes, root and ``"next"``, has the shape, dtype and domain its transformed
  spec declares; values are validated, NaN included), and every action the inverse hands to
  the base env is in the base env's action spec;
- **stepping gives what mapping the whole rollout gives**: a policy-free rollout of a
  time-vectorizable chain (mapped at once) equals the per-step rollout, bit for bit;
- **a batch is mapped as its elements are**: a transform called on a batch of rollouts gives,
  for every element, what it gives on that element alone (element-wise maps, a frozen
  VecNorm, and the trajectory transforms' ``forward`` along the time dim).

A chain that a transform refuses when built (one rewriting what an earlier one carries)
must say so. Derandomized (the same examples each run); each bug found is pinned by a
plain test in ``tests/envs/``. For a deeper, random hunt:
``TDRL_FUZZ_EXAMPLES=2000 TDRL_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from tdrl.envs import TransformedEnv
from tdrl.envs.common import EnvBase
from tdrl.envs.transforms import (
    ActionScaling,
    CatFrames,
    CatTensors,
    ClipTransform,
    Compose,
    DoubleToFloat,
    DTypeCastTransform,
    InitTracker,
    ObservationNorm,
    RenameTransform,
    RewardClipping,
    RewardScaling,
    RewardSum,
    StepCounter,
    UnsqueezeTransform,
    VecNorm,
)
from tdrl.envs.utils import check_env_specs
from tdrl.specs import Bounded, Composite, TensorSpec, Unbounded
from tdrl.testing.transform_contract import assert_same

pytestmark = pytest.mark.slow  # about 20 s in all on two cores; CI runs them

FUZZ = settings(
    max_examples=int(os.environ.get("TDRL_FUZZ_EXAMPLES", "450")),
    derandomize=os.environ.get("TDRL_FUZZ_RANDOM") != "1",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

batch_shapes = st.lists(st.integers(1, 3), max_size=2).map(tuple)
feature_shapes = st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple)
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


class _FuzzEnv(EnvBase):
    """Observations drawn from its specs; reward ~ N(0, 10); each step ends with probability 0.25.

    It also checks that the action it receives is in its action spec (what an inverse
    transform hands it).
    """

    def __init__(self, batch: tuple, observations: dict, reward_dtype: torch.dtype, seed: int) -> None:
        super().__init__(batch_size=batch)
        b = self.batch_size
        self.observation_spec = Composite({k: s.expand(*b, *s.shape) for k, s in observations.items()}, shape=b)
        self.action_spec = Bounded(-2.0, 3.0, shape=(*b, 2))
        self.reward_spec = Unbounded(shape=(*b, 1), dtype=reward_dtype)
        self.gen = torch.Generator().manual_seed(seed)

    def _observe(self) -> dict:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=self.gen)))
        return dict(self.full_observation_spec.rand().items())

    def _reset(self, tensordict, **kwargs):
        return TensorDict(self._observe(), self.batch_size)

    def _step(self, tensordict):
        action = tensordict.get("action")
        why = self.action_spec.mismatch(action)
        assert why is None, f"the base env received an action outside its spec: {why}"
        shape = (*self.batch_size, 1)
        terminated = torch.rand(shape, generator=self.gen) < 0.25
        truncated = torch.zeros(shape, dtype=torch.bool)
        out = self._observe()
        reward = torch.randn(shape, generator=self.gen, dtype=torch.float64) * 10
        out.update(
            reward=reward.to(self.reward_spec.dtype), done=terminated, terminated=terminated, truncated=truncated
        )
        return TensorDict(out, self.batch_size)

    def _set_seed(self, seed):
        self.gen.manual_seed(0 if seed is None else seed)


@st.composite
def observation_leaves(draw) -> TensorSpec:
    shape = draw(feature_shapes)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    if draw(st.booleans()):
        return Unbounded(shape=shape, dtype=dtype)
    a, b = draw(finite), draw(finite)
    return Bounded(min(a, b), max(a, b), shape=shape, dtype=dtype)


@st.composite
def fuzz_envs(draw) -> _FuzzEnv:
    keys = [f"obs{i}" for i in range(draw(st.integers(1, 3)))]
    observations = {k: draw(observation_leaves()) for k in keys}
    reward_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return _FuzzEnv(draw(batch_shapes), observations, reward_dtype, draw(st.integers(0, 2**16)))


def _scale(draw, shape: tuple):
    """A non-zero scale: a number or a tensor of ``shape`` (the entry's trailing shape)."""
    nonzero = st.floats(0.01, 100.0) | st.floats(-100.0, -0.01)
    if draw(st.booleans()):
        return draw(nonzero)
    n = int(torch.Size(shape).numel())
    return torch.tensor(draw(st.lists(nonzero, min_size=n, max_size=n))).reshape(shape)


def _obs_key(draw, env: _FuzzEnv, floats_of: torch.dtype | None = None) -> str:
    keys = [k for k, s in env.observation_spec.items() if floats_of is None or s.dtype == floats_of]
    return draw(st.sampled_from(sorted(keys)))


def _make_transform(draw, env: _FuzzEnv, name: str):
    """A ``name`` transform with random parameters that fits ``env``'s entries (None if none fits)."""
    spec = env.observation_spec
    batch = len(env.batch_size)
    if name == "ObservationNorm":
        key = _obs_key(draw, env)
        feature = tuple(spec[key].shape[batch:])
        loc = draw(finite) if draw(st.booleans()) else torch.tensor(draw(finite)).expand(feature).clone()
        return ObservationNorm(loc=loc, scale=_scale(draw, feature), in_keys=[key], standard_normal=draw(st.booleans()))
    if name == "DoubleToFloat":
        return DoubleToFloat()
    if name == "DTypeCastTransform":
        source = draw(st.sampled_from([torch.float32, torch.float64]))
        return DTypeCastTransform(source, draw(st.sampled_from([torch.float16, torch.float32, torch.float64])))
    if name == "ClipTransform":
        key = _obs_key(draw, env)
        lo, hi = sorted((draw(finite), draw(finite)))
        kind = draw(st.sampled_from(["both", "low", "high"]))
        box = spec[key]
        if isinstance(box, Bounded):  # a clip range must meet every element's box (else a clear ValueError)
            lo, hi = min(lo, float(box.high.min())), max(hi, float(box.low.max()))
        return ClipTransform(in_keys=[key], low=None if kind == "high" else lo, high=None if kind == "low" else hi)
    if name == "RewardScaling":
        return RewardScaling(loc=draw(finite), scale=_scale(draw, (1,)), standard_normal=draw(st.booleans()))
    if name == "RewardClipping":
        lo, hi = sorted((draw(finite), draw(finite)))
        kind = draw(st.sampled_from(["both", "low", "high"]))
        return RewardClipping(None if kind == "high" else lo, None if kind == "low" else hi)
    if name == "CatTensors":
        # entries that share dtype and every dim but the last
        groups: dict = {}
        for key, leaf in spec.items():
            groups.setdefault((leaf.dtype, tuple(leaf.shape[:-1])), []).append(key)
        keys = draw(st.sampled_from(sorted(groups.values(), key=len)))
        return CatTensors(in_keys=keys, out_key="catted", del_keys=draw(st.booleans()))
    if name == "UnsqueezeTransform":
        key = _obs_key(draw, env)
        feature_dims = len(spec[key].shape) - batch
        return UnsqueezeTransform(draw(st.integers(-(feature_dims + 1), -1)), in_keys=[key])
    if name == "RenameTransform":
        return RenameTransform([_obs_key(draw, env)], ["renamed"], create_copy=draw(st.booleans()))
    if name == "StepCounter":
        return StepCounter(max_steps=draw(st.none() | st.integers(1, 5)))
    if name == "RewardSum":
        return RewardSum()
    if name == "InitTracker":
        return InitTracker()
    if name == "VecNorm":
        return VecNorm(in_keys=[_obs_key(draw, env)], decay=draw(st.floats(0.5, 1.0)), eps=draw(st.floats(1e-6, 1e-2)))
    if name == "CatFrames":
        return CatFrames(N=draw(st.integers(1, 4)), dim=-1, in_keys=[_obs_key(draw, env)])
    if name == "ActionScaling":
        if draw(st.booleans()):
            lo = draw(st.floats(-5.0, 4.0))
            return ActionScaling(low=lo, high=lo + draw(st.floats(0.1, 5.0)))
        return ActionScaling(loc=draw(finite), scale=_scale(draw, (2,)))
    raise AssertionError(name)


ALL = [
    "ObservationNorm",
    "DoubleToFloat",
    "DTypeCastTransform",
    "ClipTransform",
    "RewardScaling",
    "RewardClipping",
    "CatTensors",
    "UnsqueezeTransform",
    "RenameTransform",
    "StepCounter",
    "RewardSum",
    "InitTracker",
    "VecNorm",
    "CatFrames",
    "ActionScaling",
]


def _build_chain(env: _FuzzEnv, names: list, draw) -> TransformedEnv:
    """``env`` through the named transforms, each built against the specs the chain has so far.

    A transform that would rewrite or drop what an earlier one carries is refused when
    appended (a ValueError saying so, the append undone) and left out.
    """
    chain = TransformedEnv(env, Compose())
    for name in names:
        view = _FuzzView(chain)
        if name in NEEDS_OBSERVATION and not view.observation_spec.keys():
            continue  # every observation was concatenated or renamed away
        transform = _make_transform(draw, view, name)
        try:
            chain.transform.append(transform)
        except ValueError as err:
            if "carries from one step to the next" not in str(err):
                raise
            if any(t is transform for t in chain.transform):
                raise AssertionError(f"{name} was refused but stayed in the chain") from err
    return chain


@FUZZ
@given(env=fuzz_envs(), names=st.lists(st.sampled_from(ALL), min_size=1, max_size=3), data=st.data())
def test_transformed_env_writes_what_its_specs_declare(env, names, data):
    chain = _build_chain(env, names, data.draw)
    check_env_specs(chain, num_steps=6)
    rollout = chain.rollout(8, break_when_any_done=False)  # past check_env_specs' steps: resets, truncations
    specs = Composite(shape=chain.batch_size)
    for part in (chain.full_observation_spec, chain.full_reward_spec, chain.full_done_spec):
        specs.update(part.clone())
    nb = len(chain.batch_size)
    for t in range(rollout.batch_size[-1]):
        step = rollout[(slice(None),) * nb + (t,)]
        for where, td in (("root", step), ("next", step.get("next"))):
            for key in specs.keys(True, True):
                value = td.get(key, None)
                if value is not None:
                    why = specs[key].mismatch(value)
                    assert why is None, f"step {t}, {where} {key!r}: {why} ({chain.transform})"


@FUZZ
@given(
    env=fuzz_envs(),
    names=st.lists(st.sampled_from([n for n in ALL if n != "VecNorm"]), min_size=1, max_size=3),
    data=st.data(),
)
def test_stepping_gives_what_mapping_the_whole_rollout_gives(env, names, data):
    """A policy-free rollout maps the base rollout at once when the chain allows it: the same data as stepping.

    (VecNorm is left out: its statistics change between the two rollouts, by design.)
    """
    chain = _build_chain(env, names, data.draw)
    steps = data.draw(st.integers(1, 8))
    roads = []
    for vectorized in (True, False):
        chain.vectorized_rollout = vectorized
        chain.set_seed(7)
        torch.manual_seed(0)
        roads.append(chain.rollout(steps, break_when_any_done=False))
    assert_same(roads[0], roads[1], f"mapped vs stepped rollout through {chain.transform}")


class _FuzzView:
    """What ``_make_transform`` reads of an env: its batch size and (transformed) observation spec."""

    def __init__(self, env: EnvBase) -> None:
        self.batch_size = env.batch_size
        self.observation_spec = Composite(
            {k: v for k, v in env.full_observation_spec.items() if k.startswith(("obs", "catted", "renamed"))},
            shape=env.batch_size,
        )


NEEDS_OBSERVATION = {"ObservationNorm", "ClipTransform", "CatTensors", "UnsqueezeTransform", "RenameTransform"}
NEEDS_OBSERVATION |= {"VecNorm", "CatFrames"}

ELEMENTWISE = ["ObservationNorm", "DoubleToFloat", "ClipTransform", "RewardScaling", "RewardClipping", "CatTensors"]
ELEMENTWISE += ["UnsqueezeTransform", "RenameTransform", "DTypeCastTransform"]
TRAJECTORY = ["StepCounter", "RewardSum", "InitTracker", "CatFrames"]


@FUZZ
@given(env=fuzz_envs(), name=st.sampled_from(ELEMENTWISE + TRAJECTORY + ["VecNorm"]), data=st.data())
def test_a_batch_is_transformed_as_its_elements_are(env, name, data):
    if not env.batch_size:
        env = _FuzzEnv((2,), dict(env.observation_spec.items()), env.reward_spec.dtype, 0)
    transform = _make_transform(data.draw, env, name)
    if name == "VecNorm":  # frozen statistics: a map of each element (updating ones depend on the batch)
        warm = env.rollout(5, break_when_any_done=False)
        transform(warm)
        transform.freeze()
    rollout = env.rollout(data.draw(st.integers(1, 6)), break_when_any_done=False)
    whole = transform(rollout.clone())
    for i in range(rollout.batch_size[0]):
        alone = transform(rollout[i].clone())
        part = whole[i]
        assert set(alone.keys(True, True)) == set(part.keys(True, True)), name
        for key in alone.keys(True, True):
            a, b = alone.get(key), part.get(key)
            assert a.dtype == b.dtype, f"{name} {key!r}: dtype {a.dtype} alone, {b.dtype} in the batch"
            assert a.shape == b.shape, f"{name} {key!r}: shape {tuple(a.shape)} alone, {tuple(b.shape)} in the batch"
            if a.dtype.is_floating_point:
                torch.testing.assert_close(a, b, msg=f"{name} {key!r}: element {i} differs from the batch's")
            else:
                assert torch.equal(a, b), f"{name} {key!r}: element {i} differs from the batch's"
