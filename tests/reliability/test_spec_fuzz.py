"""Fuzz the spec family with hypothesis: random shapes, dtypes, bounds and values.

Every spec kind (``Unbounded``, ``Bounded``, ``Categorical``, ``OneHot``,
``MultiCategorical``, ``MultiOneHot``, ``Binary``, and ``Composite`` of them) must keep
its contract on any shape, dtype (every float, integer and bool dtype) and domain it accepts:

- ``rand()``, ``zero()`` and ``one()`` have the requested shape and the spec's dtype, and
  are ``is_in``;
- ``project(x)`` is ``is_in`` for any finite ``x`` of the right shape and of any dtype (the
  extremes of each dtype included), the identity on members, and for a box
  (``Bounded``, ``Categorical``, ``MultiCategorical``) the nearest member, computed in
  exact arithmetic;
- NaN is in no spec that has a domain;
- ``clone()`` and ``expand()`` give equal (and independent) specs; ``unsqueeze`` and
  ``squeeze`` undo each other;
- a value of the wrong shape or dtype is not ``is_in`` (``mismatch`` says why), and
  ``project`` of the wrong shape raises a ``ValueError`` instead of broadcasting;
- a spec that cannot hold a value (``OneHot(0)``) or a negative dim is refused when built.

And ``EnvBase.step`` casts a 0/1 action of another dtype (one-hot, multi-one-hot, binary)
exactly when its values mean 0/1 (floats within rounding), and refuses the others.

The runs are derandomized (the same examples on every run), so a failure reproduces;
each bug they found is pinned by a plain test in ``tests/test_specs.py`` or
``tests/envs/``. For a deeper, random hunt: ``TDRL_FUZZ_EXAMPLES=2000 TDRL_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from tdrl.envs.common import EnvBase
from tdrl.specs import Binary, Bounded, Categorical, Composite, MultiCategorical, MultiOneHot, OneHot, Unbounded

pytestmark = pytest.mark.slow  # about 20 s in all on two cores; CI runs them

FUZZ = settings(
    max_examples=int(os.environ.get("TDRL_FUZZ_EXAMPLES", "600")),
    derandomize=os.environ.get("TDRL_FUZZ_RANDOM") != "1",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INTS = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]

lead_dims = st.lists(st.integers(0, 3), max_size=2).map(tuple)
feature_dims = st.lists(st.integers(1, 4), max_size=2).map(tuple)


def _int_range(dtype: torch.dtype) -> tuple[int, int]:
    info = torch.iinfo(dtype)
    return int(info.min), int(info.max)


def _float_max(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).max)


@st.composite
def bounded_specs(draw) -> Bounded:
    dtype = draw(st.sampled_from(FLOATS + INTS))
    shape = draw(feature_dims)
    per_element = draw(st.booleans()) and len(shape) > 0
    n = int(torch.Size(shape).numel()) if per_element else 1
    if dtype.is_floating_point:
        big = min(_float_max(dtype), 2.0**100)
        value = st.floats(-big, big, allow_nan=False, allow_infinity=False)
        if draw(st.booleans()):
            value = st.one_of(value, st.sampled_from([float("-inf"), float("inf")]))
    else:
        lo, hi = _int_range(dtype)
        value = st.integers(lo, hi)
    a = draw(st.lists(value, min_size=n, max_size=n))
    b = draw(st.lists(value, min_size=n, max_size=n))
    low = [min(x, y) for x, y in zip(a, b)]
    high = [max(x, y) for x, y in zip(a, b)]
    if dtype.is_floating_point:
        low = [x if x != float("inf") else 0.0 for x in low]  # low = +inf has no legal value
        high = [x if x != float("-inf") else 0.0 for x in high]
        low = [min(x, y) for x, y in zip(low, high)]
    if per_element:
        lo_t = torch.tensor(low, dtype=torch.float64 if dtype.is_floating_point else torch.int64).reshape(shape)
        hi_t = torch.tensor(high, dtype=lo_t.dtype).reshape(shape)
        return Bounded(lo_t, hi_t, shape=shape, dtype=dtype)
    return Bounded(low[0], high[0], shape=shape, dtype=dtype)


@st.composite
def leaf_specs(draw):
    kind = draw(st.sampled_from(["unbounded", "bounded", "categorical", "onehot", "multicat", "multionehot", "binary"]))
    shape = draw(feature_dims)
    if kind == "unbounded":
        return Unbounded(shape=shape, dtype=draw(st.sampled_from([*FLOATS, *INTS, torch.bool])))
    if kind == "bounded":
        return draw(bounded_specs())
    if kind == "categorical":
        n = draw(st.integers(1, 12))
        dtypes = [d for d in INTS if _int_range(d)[1] >= n - 1] + ([torch.bool] if n <= 2 else [])
        return Categorical(n, shape=shape, dtype=draw(st.sampled_from(dtypes)))
    if kind == "onehot":
        n = draw(st.integers(1, 6))
        return OneHot(n, shape=(*shape, n), dtype=draw(st.sampled_from([torch.bool, *INTS, *FLOATS])))
    if kind == "multicat":
        nvec = draw(st.lists(st.integers(1, 9), min_size=1, max_size=4))
        return MultiCategorical(nvec, dtype=draw(st.sampled_from(INTS)))
    if kind == "multionehot":
        nvec = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
        return MultiOneHot(nvec, shape=(*shape, sum(nvec)), dtype=draw(st.sampled_from([torch.bool, *INTS, *FLOATS])))
    n = draw(st.integers(1, 5))
    return Binary(n, shape=(*shape, n), dtype=draw(st.sampled_from([torch.bool, *INTS, *FLOATS])))


def _wild(shape: tuple, draw, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Finite values of ``dtype`` over the whole range a tensor of that dtype can hold (extremes included)."""
    n = int(torch.Size(shape).numel())
    if dtype == torch.bool:
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    elif dtype.is_floating_point:
        big = _float_max(dtype)
        extremes = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, big, -big, 1e-300 if dtype == torch.float64 else 0.0])
        values = draw(
            st.lists(st.one_of(st.floats(-big, big, allow_nan=False, width=64), extremes), min_size=n, max_size=n)
        )
    else:
        lo, hi = _int_range(dtype)
        values = draw(st.lists(st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1])), min_size=n, max_size=n))
    return torch.tensor(values, dtype=torch.float64 if dtype.is_floating_point else None).to(dtype).reshape(shape)


def _assert_member(spec, value: torch.Tensor, shape: tuple, what: str) -> None:
    assert value.shape == shape, f"{what}: shape {tuple(value.shape)}, expected {shape} for {spec}"
    assert value.dtype == spec.dtype, f"{what}: dtype {value.dtype}, expected {spec.dtype} for {spec}"
    why = spec.mismatch(value)
    assert why is None, f"{what} is not in {spec}: {why}"
    assert spec.is_in(value)


@FUZZ
@given(spec=leaf_specs(), lead=lead_dims)
def test_rand_zero_and_one_are_members(spec, lead):
    full = (*lead, *spec.shape)
    _assert_member(spec, spec.rand(lead), full, "rand")
    _assert_member(spec, spec.zero(lead), full, "zero")
    _assert_member(spec, spec.one(lead), full, "one")
    _assert_member(spec, spec.rand(), tuple(spec.shape), "rand()")


@FUZZ
@given(spec=leaf_specs(), lead=lead_dims, data=st.data())
def test_project_lands_in_the_spec_and_keeps_members(spec, lead, data):
    full = (*lead, *spec.shape)
    member = spec.rand(lead)
    assert torch.equal(spec.project(member), member), f"project moved a member of {spec}: {member}"
    for dtype in (torch.float64, spec.dtype, data.draw(st.sampled_from([*FLOATS, *INTS, torch.bool]))):
        x = _wild(full, data.draw, dtype)
        _assert_member(spec, spec.project(x), full, f"project({x.dtype} {x.tolist()})")


def _closest(spec, x: torch.Tensor) -> list:
    """The member nearest to each element of ``x`` for a box-like spec, in exact (Python) arithmetic."""
    if isinstance(spec, Bounded):
        low, high = (
            spec.space.low.expand(x.shape).flatten().tolist(),
            spec.space.high.expand(x.shape).flatten().tolist(),
        )
    elif isinstance(spec, Categorical):
        low, high = [0] * x.numel(), [spec.space.n - 1] * x.numel()
    else:
        low, high = [0] * x.numel(), (spec.nvec.expand(x.shape) - 1).flatten().tolist()
    values = x.flatten().tolist()
    if not spec.dtype.is_floating_point:
        values = [round(v) if isinstance(v, float) else int(v) for v in values]
        low, high = [int(v) for v in low], [int(v) for v in high]
    return [min(max(v, lo), hi) for v, lo, hi in zip(values, low, high)]


@FUZZ
@given(
    spec=st.one_of(
        bounded_specs(),
        st.builds(Categorical, st.integers(1, 12), shape=feature_dims, dtype=st.sampled_from(INTS)),
        st.builds(MultiCategorical, st.lists(st.integers(1, 9), min_size=1, max_size=4), dtype=st.sampled_from(INTS)),
    ),
    lead=lead_dims,
    data=st.data(),
)
def test_project_of_a_box_is_the_nearest_member(spec, lead, data):
    full = (*lead, *spec.shape)
    for dtype in (torch.float64, torch.int64, spec.dtype):
        x = _wild(full, data.draw, dtype)
        got = spec.project(x)
        expected = _closest(spec, x)
        if spec.dtype.is_floating_point:  # the nearest member in the spec's precision
            expected_t = torch.tensor(expected, dtype=torch.float64).to(spec.dtype).reshape(full)
            expected_t = torch.maximum(torch.minimum(expected_t, spec.space.high), spec.space.low)
            assert torch.equal(got, expected_t), f"project({x.tolist()}) = {got.tolist()} in {spec}"
        else:
            assert got.flatten().tolist() == expected, f"project({x.tolist()}) = {got.tolist()} in {spec}"


@FUZZ
@given(spec=leaf_specs(), lead=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple))
def test_clone_expand_and_equality(spec, lead):
    assert spec == spec
    twin = spec.clone()
    assert twin == spec
    assert twin is not spec
    wide = spec.expand(*lead, *spec.shape)
    assert wide.shape == (*lead, *spec.shape)
    assert wide == spec.expand(*lead, *spec.shape)
    assert wide != spec
    _assert_member(wide, wide.rand(), (*lead, *spec.shape), "expanded rand")
    _assert_member(spec, wide.rand(), (*lead, *spec.shape), "expanded rand in the original")
    assert spec.unsqueeze(0).squeeze(0) == spec
    other = torch.float64 if spec.dtype != torch.float64 else torch.float32
    assert spec.to(other) != spec
    if isinstance(spec, Bounded):
        twin.space.low.add_(-1)
        assert torch.equal(spec.space.low, spec.clone().space.low), "a clone shares its bounds with the original"


@FUZZ
@given(spec=leaf_specs(), lead=lead_dims, data=st.data())
def test_wrong_shapes_and_dtypes_are_refused_clearly(spec, lead, data):
    member = spec.rand(lead)
    other = data.draw(st.sampled_from([d for d in [*FLOATS, *INTS, torch.bool] if d != spec.dtype]))
    cast = member.to(other)
    assert not spec.is_in(cast)
    assert "dtype" in spec.mismatch(cast)
    if spec.shape:
        grown = list(spec.shape)
        grown[-1] += 1
        wrong = torch.zeros((*lead, *grown), dtype=spec.dtype)
        assert not spec.is_in(wrong)
        assert "shape" in spec.mismatch(wrong)
        with pytest.raises(ValueError, match="shape"):
            spec.project(wrong.to(torch.float64))
    assert not spec.is_in(member.tolist())
    assert "torch.Tensor" in spec.mismatch(member.tolist())


@FUZZ
@given(spec=leaf_specs(), lead=lead_dims, data=st.data())
def test_nan_is_in_no_spec_with_a_domain(spec, lead, data):
    member = spec.rand(lead)
    if not spec.dtype.is_floating_point or isinstance(spec, Unbounded) or member.numel() == 0:
        return
    index = data.draw(st.integers(0, member.numel() - 1))
    member.view(-1)[index] = float("nan")
    assert not spec.is_in(member), f"{member.tolist()} is in {spec}"
    assert "nan" in spec.mismatch(member)


@FUZZ
@given(
    bad=st.integers(-3, 0),
    good=st.integers(1, 4),
    kind=st.sampled_from(["unbounded", "bounded", "categorical", "onehot", "multicat", "multionehot", "binary"]),
)
def test_constructors_refuse_empty_domains_and_negative_dims(bad, good, kind):
    """A spec that cannot hold a value, or a negative dim, is refused when built, not when first sampled."""
    makers = {
        "unbounded": lambda: Unbounded(shape=(good, bad - 1)),
        "bounded": lambda: Bounded(0.0, 1.0, shape=(bad - 1,)),
        "categorical": lambda: Categorical(bad),
        "onehot": lambda: OneHot(bad),
        "multicat": lambda: MultiCategorical([good, bad]),
        "multionehot": lambda: MultiOneHot([good, bad]),
        "binary": lambda: Binary(shape=(bad - 1,)),
    }
    with pytest.raises((ValueError, TypeError)) as info:
        makers[kind]()
    assert type(info.value) in (ValueError, TypeError)
    for leaf in (Unbounded(shape=(good,)), Categorical(good), OneHot(good)):
        with pytest.raises(ValueError, match="negative"):
            leaf.rand((bad - 1,))


@st.composite
def composite_specs(draw, depth: int = 0):
    batch = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    entries = {}
    for i in range(draw(st.integers(1, 3))):
        if depth < 1 and draw(st.booleans()):
            sub = draw(composite_specs(depth + 1))
            entries[f"sub{i}"] = sub.expand(*batch, *sub.shape)
        else:
            leaf = draw(leaf_specs())
            entries[f"leaf{i}"] = leaf.expand(*batch, *leaf.shape)
    return Composite(entries, shape=batch)


@FUZZ
@given(spec=composite_specs(), lead=lead_dims)
def test_composite_values_are_members(spec, lead):
    for what, td in (("rand", spec.rand(lead)), ("zero", spec.zero(lead)), ("one", spec.one(lead))):
        assert td.batch_size == (*lead, *spec.shape), what
        assert spec.mismatch(td) is None, f"{what}: {spec.mismatch(td)}"
        projected = spec.project(td)
        assert spec.is_in(projected)
        assert (projected == td).all()
    assert spec.clone() == spec
    assert spec.expand(2, *spec.shape).shape == (2, *spec.shape)
    key = spec.keys(True, True)[0]
    missing = spec.rand().exclude(key)
    assert not spec.is_in(missing)
    assert not spec.is_in({"not": "a tensordict"})


class _ZeroOneEnv(EnvBase):
    def __init__(self, spec, batch: tuple) -> None:
        super().__init__(batch_size=batch)
        self.observation_spec = Unbounded(shape=(*batch, 1))
        self.action_spec = spec

    def _reset(self, tensordict, **kwargs):
        return TensorDict({"observation": torch.zeros(*self.batch_size, 1)}, self.batch_size)

    def _step(self, tensordict):
        flags = torch.zeros(*self.batch_size, 1, dtype=torch.bool)
        zero = torch.zeros(*self.batch_size, 1)
        return TensorDict(
            {"observation": zero, "reward": zero, "done": flags, "terminated": flags, "truncated": flags},
            self.batch_size,
        )

    def _set_seed(self, seed):
        pass


def _as_zero_one(values: list, dtype: torch.dtype) -> list | None:
    """What a 0/1 action of ``dtype`` means (0 or 1 per value), or None: floats count within 4 eps (rounding)."""
    tol = 4 * torch.finfo(dtype).eps if dtype.is_floating_point else 0
    out = []
    for v in values:
        if abs(v - 1) <= tol:
            out.append(1)
        elif abs(v) <= tol:
            out.append(0)
        else:
            return None
    return out


@FUZZ
@given(
    kind=st.sampled_from(["onehot", "multionehot", "binary"]),
    batch=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    spec_dtype=st.sampled_from([torch.bool, torch.int64, torch.uint8]),
    action_dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int32, torch.bool]),
    data=st.data(),
)
def test_env_casts_exactly_the_zero_one_actions_its_spec_holds(kind, batch, spec_dtype, action_dtype, data):
    if kind == "onehot":
        n = data.draw(st.integers(1, 4))
        spec, blocks = OneHot(n, shape=(*batch, n), dtype=spec_dtype), [n]
    elif kind == "multionehot":
        blocks = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        spec = MultiOneHot(blocks, shape=(*batch, sum(blocks)), dtype=spec_dtype)
    else:
        n = data.draw(st.integers(1, 4))
        spec, blocks = Binary(n, shape=(*batch, n), dtype=spec_dtype), None
    if action_dtype == spec_dtype:
        return  # no cast: the values are the validation mode's business (tests/envs/test_validation.py)
    if action_dtype.is_floating_point:
        eps = torch.finfo(action_dtype).eps
        # exact, within rounding (a straight-through sample), just beyond it, and far off
        pool = [0.0, 1.0, 1.0, 1 - eps / 2, 1 + eps, 2 * eps, 1 - 8 * eps, 16 * eps, 0.5, 2.0, -1.0, float("nan")]
        pool.append(float("inf"))
    else:
        pool = [0, 1] if action_dtype == torch.bool else [0, 1, 1, 2, -1]
    if data.draw(st.booleans()):
        action = spec.rand().to(action_dtype)  # a member, as a policy's sample gives it
    else:
        n = int(torch.Size(spec.shape).numel())
        values = data.draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
        action = torch.tensor(values, dtype=torch.float64).to(action_dtype).reshape(spec.shape)
    rows = action.reshape(-1, spec.shape[-1]).tolist()
    meant = [_as_zero_one(row, action_dtype) for row in rows]
    holds = all(m is not None for m in meant)
    if holds and blocks is not None:
        for m in meant:
            start = 0
            for size in blocks:
                holds = holds and sum(m[start : start + size]) == 1
                start += size
    env = _ZeroOneEnv(spec, batch)
    td = env.reset()
    td["action"] = action
    if holds:
        expected = torch.tensor(meant).reshape(spec.shape).to(spec_dtype)
        assert torch.equal(env.step(td)["action"], expected), f"{action.tolist()} for {spec}"
    else:
        with pytest.raises(ValueError, match="action 'action' must"):
            env.step(td)
