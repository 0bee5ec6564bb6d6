"""The per-step shortcuts of StepCounter and DTypeCastTransform give the general expression's result.

``StepCounter`` adds a cached 0-dim one (``count + one``) where the general expression is
``count + 1``; ``DTypeCastTransform`` casts to floating dtypes with ``Tensor.float()`` & co.
where the general expression is ``value.to(dtype)``. Every dtype, device flag and shape case
is compared with the general expression.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import TransformedEnv
from tdrl.envs.transforms import DoubleToFloat, DTypeCastTransform, StepCounter
from tdrl.envs.transforms.observation import _cast_to
from tdrl.testing import CountingEnv

COUNT_DTYPES = [
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.float32,
    torch.float64,
    torch.bool,
]


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    assert a.requires_grad == b.requires_grad
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", COUNT_DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (3, 1)])
def test_step_counter_adds_one_as_count_plus_one(dtype, shape):
    counter = StepCounter()
    for start in (0, 1, 5):
        count = torch.full(shape, start, dtype=dtype) if dtype is not torch.bool else torch.full(shape, bool(start))
        root = TensorDict({"step_count": count}, shape[:-1] if shape else [])
        nxt = counter._step(root, TensorDict({}, root.batch_size))
        _same(nxt["step_count"], count + 1)


def test_step_counter_follows_the_count_across_dtypes():
    counter = StepCounter()  # the cached one is remade when the count's dtype changes
    for dtype in (torch.int64, torch.int32, torch.int64, torch.float32):
        count = torch.arange(3, dtype=dtype).unsqueeze(-1)
        nxt = counter._step(TensorDict({"step_count": count}, [3]), TensorDict({}, [3]))
        _same(nxt["step_count"], count + 1)


def test_step_counter_on_an_env_counts_as_before():
    env = TransformedEnv(CountingEnv(max_steps=3), StepCounter(max_steps=2))
    data = env.rollout(5, break_when_any_done=False)
    assert data["step_count"].squeeze(-1).tolist() == [0, 1, 0, 1, 0]
    assert data["next", "step_count"].squeeze(-1).tolist() == [1, 2, 1, 2, 1]
    assert data["next", "step_count"].dtype == torch.int64


CAST_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]


@pytest.mark.parametrize("src", CAST_DTYPES)
@pytest.mark.parametrize("dst", CAST_DTYPES)
def test_cast_is_to(src, dst):
    value = (torch.randn(4, 3, dtype=torch.float64) * 100).to(src)
    _same(_cast_to(value, dst), value.to(dst))
    assert (_cast_to(value, dst) is value) == (value.to(dst) is value)  # no copy when the dtype is already dst


def test_cast_keeps_grad_and_layout_as_to():
    value = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out, ref = _cast_to(value, torch.float32), value.to(torch.float32)
    _same(out, ref)
    assert out.grad_fn is not None
    view = torch.randn(4, 6, dtype=torch.float64).t()  # non-contiguous: memory format preserved as .to does
    assert _cast_to(view, torch.float32).stride() == view.to(torch.float32).stride()


@pytest.mark.parametrize(
    "transform",
    [DoubleToFloat(in_keys=["observation"]), DTypeCastTransform(torch.float64, torch.float16, in_keys=["observation"])],
)
def test_cast_transforms_write_the_to_result(transform):
    obs = torch.randn(2, 5, dtype=torch.float64)
    td = transform._call(TensorDict({"observation": obs.clone()}, [2]))  # the per-step hook
    _same(td["observation"], obs.to(transform.dtype_out))
    back = transform._inv_apply_transform(td["observation"])
    _same(back, td["observation"].to(torch.float64))


def test_double_to_float_on_an_env_casts_as_to():
    env = TransformedEnv(CountingEnv(max_steps=3), DTypeCastTransform(torch.float32, torch.float64))
    data = env.rollout(3)
    assert data["observation"].dtype == torch.float64
    assert data["next", "observation"].squeeze(-1).tolist() == [1.0, 2.0, 3.0]
