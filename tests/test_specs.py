from __future__ import annotations

import numpy as np
import pytest
import torch

from tdrl.specs import (
    Binary,
    Bounded,
    BoundedTensorSpec,
    Categorical,
    Composite,
    CompositeSpec,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    Unbounded,
)

LEAVES = [
    Unbounded(shape=(3,)),
    Unbounded(shape=(2,), dtype=torch.int64),
    Bounded(low=-2.0, high=3.0, shape=(4,)),
    Bounded(low=torch.tensor([0.0, -1.0]), high=torch.tensor([1.0, 5.0])),
    Bounded(low=0, high=255, shape=(2, 2), dtype=torch.uint8),
    Categorical(5, shape=(1,)),
    OneHot(4),
    MultiCategorical([2, 3, 4]),
    MultiOneHot([2, 3]),
    Binary(3),
]


@pytest.mark.parametrize("spec", LEAVES, ids=lambda s: type(s).__name__)
class TestLeafContract:
    def test_rand_is_in(self, spec):
        for _ in range(20):
            assert spec.is_in(spec.rand())
        batch = spec.rand((5, 2))
        assert batch.shape == (5, 2, *spec.shape)
        assert spec.is_in(batch)

    def test_zero_and_one_in_domain(self, spec):
        assert spec.is_in(spec.zero())
        assert spec.zero((3,)).shape == (3, *spec.shape)
        assert spec.is_in(spec.one())

    def test_project_lands_in_domain(self, spec):
        wild = (torch.randn(spec.shape) * 100).to(torch.float32)
        assert spec.is_in(spec.project(wild))

    def test_expand_and_clone_equal(self, spec):
        big = spec.expand(3, *spec.shape)
        assert big.shape == (3, *spec.shape)
        assert big.is_in(big.rand())
        assert spec.clone() == spec
        assert spec.to("cpu") == spec

    def test_dtype_mismatch_reported(self, spec):
        other = torch.float64 if spec.dtype != torch.float64 else torch.float32
        why = spec.mismatch(spec.zero().to(other))
        assert why is not None
        assert "dtype" in why

    def test_repr_names_class(self, spec):
        assert type(spec).__name__ in repr(spec)


def test_bounded_space_and_project():
    spec = Bounded(low=-1.0, high=1.0, shape=(2,))
    assert torch.equal(spec.space.low, torch.tensor([-1.0, -1.0]))
    assert torch.equal(spec.high, torch.tensor([1.0, 1.0]))
    assert torch.equal(spec.project(torch.tensor([2.0, -3.0])), torch.tensor([1.0, -1.0]))
    why = spec.mismatch(torch.tensor([0.5, 1.5]))
    assert "outside" in why
    assert "1.5" in why


def test_bounded_old_names_and_numpy_bounds():
    spec = BoundedTensorSpec(minimum=np.zeros(3), maximum=np.ones(3), dtype=torch.float64)
    assert spec.shape == (3,)
    assert spec.dtype == torch.float64
    assert spec.minimum.sum() == 0


def test_bounded_rejects_low_above_high():
    with pytest.raises(ValueError, match="low must be <= high"):
        Bounded(low=1.0, high=0.0, shape=(1,))


def test_bounded_rejects_unbroadcastable_bounds():
    with pytest.raises(ValueError, match="cannot be broadcast"):
        Bounded(low=torch.zeros(3), high=torch.ones(3), shape=(4,))


def test_bounded_infinite_bounds_rand_finite():
    spec = Bounded(low=torch.tensor([-float("inf"), 0.0]), high=torch.tensor([float("inf"), 1.0]))
    assert torch.isfinite(spec.rand((100,))).all()


def test_categorical_and_onehot():
    cat = Categorical(3)
    assert not cat.is_in(torch.tensor(3))
    assert cat.project(torch.tensor(7)).item() == 2
    oh = OneHot(3)
    assert oh.to_categorical(oh.encode(1)).item() == 1
    assert not oh.is_in(torch.tensor([True, True, False]))


def test_categorical_mask_restricts_rand():
    cat = Categorical(4)
    cat.update_mask(torch.tensor([False, True, False, True]))
    draws = cat.rand((200,))
    assert set(draws.tolist()) <= {1, 3}


def test_onehot_shape_must_end_with_n():
    with pytest.raises(ValueError, match="must be n=3"):
        OneHot(3, shape=(4,))


def test_expand_rejects_incompatible_shape():
    with pytest.raises(ValueError, match="must end with the old one"):
        Unbounded(shape=(3,)).expand(4, 2)


def test_composite_nested_access_and_values():
    spec = Composite(
        observation=Unbounded(shape=(4, 3)),
        next=Composite(reward=Unbounded(shape=(4, 1)), shape=(4,)),
        shape=(4,),
    )
    assert spec["next", "reward"].shape == (4, 1)
    assert ("next", "reward") in spec
    assert spec.keys(True, True) == ["observation", ("next", "reward")]
    td = spec.rand()
    assert td.batch_size == (4,)
    assert td["next", "reward"].shape == (4, 1)
    assert spec.is_in(td)
    spec["extra", "deep"] = Bounded(0.0, 1.0, shape=(4, 2))
    assert spec["extra"].shape == (4,)
    del spec["extra", "deep"]
    assert ("extra", "deep") not in spec


def test_composite_get_returns_entry_or_default():
    leaf = Unbounded(shape=(2,))
    spec = Composite(observation=leaf, next=Composite(reward=Unbounded(shape=(1,))))
    assert spec.get("observation") is leaf
    assert spec.get(("next", "reward")).shape == (1,)
    assert spec.get("missing") is None
    assert spec.get(("next", "missing"), "default") == "default"


def test_specs_are_unhashable():
    for spec in (Unbounded(shape=(2,)), Categorical(3), Composite(observation=Unbounded(shape=(2,)))):
        with pytest.raises(TypeError, match="unhashable"):
            hash(spec)


def test_composite_rejects_wrong_batch_shape():
    spec = Composite(shape=(4,))
    with pytest.raises(ValueError, match=r"does not start with the composite's batch shape \(4,\)"):
        spec["obs"] = Unbounded(shape=(3, 2))


def test_composite_missing_key_lists_keys():
    spec = Composite(observation=Unbounded(shape=(2,)))
    with pytest.raises(KeyError, match="observation"):
        spec["obs"]


def test_composite_expand_eq_and_alias():
    spec = CompositeSpec(observation=Unbounded(shape=(2,)))
    big = spec.expand(3)
    assert big.shape == (3,)
    assert big["observation"].shape == (3, 2)
    assert spec == spec.clone()
    assert spec != big
    assert "observation" in repr(spec)


def test_composite_mismatch_names_key():
    spec = Composite(action=Bounded(-1.0, 1.0, shape=(2,)))
    td = spec.zero()
    td["action"] = torch.tensor([0.0, 2.0])
    assert "'action'" in spec.mismatch(td)
    assert "missing key" in spec.mismatch(td.exclude("action"))


def test_unsqueeze_squeeze_roundtrip():
    spec = Bounded(low=torch.zeros(3), high=torch.ones(3))
    un = spec.unsqueeze(0)
    assert un.shape == (1, 3)
    assert un.low.shape == (1, 3)
    assert un.squeeze(0) == spec


def test_drop_leading_dims():
    b = Bounded(low=torch.zeros(3, 2), high=torch.ones(3, 2))
    assert b.drop_leading_dims(1) == Bounded(low=torch.zeros(2), high=torch.ones(2))
    assert MultiCategorical([[2, 3]] * 4).drop_leading_dims(1).nvec.tolist() == [2, 3]
    assert Categorical(5, shape=(4, 1)).drop_leading_dims(1).shape == (1,)
    comp = Composite(a=Unbounded(shape=(4, 3)), shape=(4,))
    assert comp.drop_leading_dims(1)["a"].shape == (3,)


# --- found by the fuzz suite (tests/reliability/test_spec_fuzz.py) ------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int64])
def test_unbounded_integer_rand_fits_the_dtype(dtype):
    # Unbounded(dtype=torch.uint8).rand() raised "from is out of bounds for unsigned char"
    spec = Unbounded(shape=(50,), dtype=dtype)
    value = spec.rand()
    assert value.dtype == dtype
    assert spec.is_in(value)


def test_multicategorical_unsqueeze_and_squeeze_reshape_nvec():
    # MultiCategorical([1]).unsqueeze(0).squeeze(0) raised: the unsqueezed spec kept nvec's old shape
    spec = MultiCategorical([2, 3])
    wide = spec.unsqueeze(0)
    assert wide.shape == (1, 2)
    assert wide.nvec.shape == (1, 2)
    assert wide.is_in(torch.tensor([[1, 2]]))
    assert not wide.is_in(torch.tensor([[1, 3]]))
    assert wide.squeeze(0) == spec


@pytest.mark.parametrize(
    "spec",
    [Bounded(0.0, 0.0, shape=(2,)), MultiOneHot([1]), OneHot(1), Categorical(3, shape=(2,)), Binary(2)],
    ids=lambda s: type(s).__name__,
)
def test_project_of_a_wrong_shape_says_so(spec):
    # Bounded broadcast or raised a RuntimeError, MultiOneHot failed in split, OneHot(1) returned a [..., 1] tensor
    wrong = torch.zeros(*spec.shape[:-1], spec.shape[-1] + 1)
    with pytest.raises(ValueError, match=r"project: a value of shape \[.*\] does not end with the spec's shape"):
        spec.project(wrong)
    with pytest.raises(TypeError, match=r"takes a torch\.Tensor"):
        spec.project([0.0, 1.0])


def test_project_into_an_integer_box_clamps_before_casting():
    # the value was cast first: 256.0 wrapped to 0 in uint8, 1e30 became INT64_MIN (the wrong bound)
    assert Bounded(0, 1, shape=(2,), dtype=torch.uint8).project(torch.tensor([0.0, 256.0])).tolist() == [0, 1]
    assert Bounded(0, 200, shape=(2,), dtype=torch.uint8).project(torch.tensor([300, -3])).tolist() == [200, 0]
    assert Bounded(-5, 5, shape=(2,), dtype=torch.int32).project(torch.tensor([1e30, -1e30])).tolist() == [5, -5]
    assert Bounded(-5, 5, shape=(1,), dtype=torch.int64).project(torch.tensor([2.6])).tolist() == [3]  # nearest
    big = torch.iinfo(torch.int64).max
    huge = torch.tensor([1e300], dtype=torch.float64)
    assert Bounded(0, big, shape=(1,), dtype=torch.int64).project(huge).item() == big
    assert MultiCategorical([2, 3]).project(torch.tensor([1e30, -1e30])).tolist() == [1, 0]
    assert Categorical(3, dtype=torch.uint8).project(torch.tensor(-1e30)).item() == 0
    assert Categorical(2, dtype=torch.bool).project(torch.tensor(5.0)).item() is True


def test_nan_is_not_in_a_bounded_spec_and_nan_bounds_are_refused():
    # (x < low) | (x > high) is False for NaN, so Bounded.is_in(NaN) was True
    spec = Bounded(-1.0, 1.0, shape=(2,))
    assert not spec.is_in(torch.tensor([0.0, float("nan")]))
    assert spec.mismatch(torch.tensor([0.0, float("nan")])) == "value nan at index [1] is outside [-1.0, 1.0]"
    assert not Bounded(float("-inf"), float("inf"), shape=(1,)).is_in(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match=r"low and high must not be NaN"):
        Bounded(float("nan"), 1.0, shape=(1,))


def test_negative_dims_and_empty_one_hot_domains_are_refused_when_built():
    # Unbounded(shape=(-1,)) and OneHot(0) were accepted and failed in rand() with torch's RuntimeError
    with pytest.raises(ValueError, match=r"shape \(2, -1\) has a negative dim"):
        Unbounded(shape=(2, -1))
    with pytest.raises(ValueError, match="negative dim"):
        Categorical(3).rand((-1,))
    with pytest.raises(ValueError, match=r"OneHot needs n >= 1, got n=0"):
        OneHot(0)
    with pytest.raises(ValueError, match=r"MultiOneHot: every nvec entry must be >= 1, got \[2, 0\]"):
        MultiOneHot([2, 0])


def test_multionehot_values_other_than_zero_and_one_are_not_in():
    # a block [2, -1] sums to 1 and passed as one-hot
    spec = MultiOneHot([2, 2], dtype=torch.int64)
    assert not spec.is_in(torch.tensor([2, -1, 1, 0]))
    assert spec.is_in(torch.tensor([0, 1, 1, 0]))


def test_python_float_bounds_keep_the_precision_of_a_float64_spec():
    # the bounds went through float32 first: 7.4e-76 became 0.0, and data clamped in float64 fell outside
    spec = Bounded(0.0, 7.4e-76, shape=(1,), dtype=torch.float64)
    assert spec.high.item() == 7.4e-76
    assert spec.is_in(torch.tensor([7.4e-76], dtype=torch.float64))
    assert Bounded(-1.0, 0.1, shape=(1,), dtype=torch.float64).high.item() == 0.1
    assert Bounded(-1, 2.7, shape=(1,), dtype=torch.int64).high.item() == 2


def test_one_hot_helper_equals_torch_one_hot_and_never_aliases_its_cache():
    from tdrl.specs.base import _IDENTITY_MAX, one_hot

    idx = torch.tensor([[2, 0], [1, 1]])
    for dtype in (torch.bool, torch.long, torch.float32):
        out = one_hot(idx, 3, dtype)
        assert out.dtype == dtype
        assert torch.equal(out, torch.nn.functional.one_hot(idx, 3).to(dtype))
    out = one_hot(torch.tensor(1), 3, torch.long)
    out.fill_(9)  # the result is a new tensor: the cached identity is untouched
    assert torch.equal(one_hot(torch.tensor(1), 3, torch.long), torch.tensor([0, 1, 0]))
    big = _IDENTITY_MAX + 1
    assert torch.equal(one_hot(torch.tensor([big - 1]), big, torch.bool).nonzero(), torch.tensor([[0, big - 1]]))
