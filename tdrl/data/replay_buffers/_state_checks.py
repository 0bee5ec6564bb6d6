"""Checks of a replay-buffer state before it is loaded: every field, before anything changes.

A state comes from :meth:`state_dict` or from a checkpoint on disk, which may be damaged or
foreign. Each component's ``_check_state_dict`` reads its fields through these helpers,
which raise :class:`StateError` naming the field (``sampler.perm``), the expected and the
found value. :class:`~tdrl.data.replay_buffers._checkpoint.CheckpointSource` adds the
checkpoint file (and, for a tensor, the file that holds it) when the state came from disk.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "StateError",
    "as_state",
    "entry",
    "integer",
    "optional_integer",
    "boolean",
    "number",
    "tensor",
    "tensor_value",
    "permutation",
    "within",
]


class StateError(ValueError):
    """A state field that cannot be loaded: ``field`` names it, ``problem`` says why.

    A ``ValueError``, so callers catching that keep working.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"replay-buffer state field {field!r} {problem}")

    def within(self, prefix: str) -> StateError:
        """The same error for the field as seen from the enclosing state (``prefix.field``)."""
        return StateError(f"{prefix}.{self.field}" if self.field else prefix, self.problem)


class within:
    """Context manager: a :class:`StateError` raised inside names its field under ``prefix``.

    Examples:
        >>> try:
        ...     with within("sampler"):
        ...         integer({"pos": -1}, "pos", low=0)
        ... except StateError as err:
        ...     print(err.field)
        sampler.pos
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: BaseException | None, tb: Any) -> None:
        if isinstance(err, StateError):
            raise err.within(self.prefix) from None


def as_state(state: Any, field: str = "") -> dict[str, Any]:
    """``state`` itself, after checking that it is a dict."""
    if not isinstance(state, dict):
        raise StateError(field, f"must be a dict of named entries, got {type(state).__name__}")
    return state


def entry(state: dict[str, Any], key: str) -> Any:
    """``state[key]``, or a :class:`StateError` saying that it is missing."""
    try:
        return state[key]
    except KeyError:
        raise StateError(key, f"is missing (the state has {sorted(state)})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(state: dict[str, Any], key: str, *, low: int | None = None, high: int | None = None) -> int:
    """An ``int`` entry in ``[low, high]`` (either bound optional)."""
    value = entry(state, key)
    if not _is_int(value):
        raise StateError(key, f"must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise StateError(key, f"is {value}, outside the valid range {bounds}")
    return value


def optional_integer(state: dict[str, Any], key: str, *, low: int | None = None, high: int | None = None) -> int | None:
    """Like :func:`integer`, and ``None`` is allowed."""
    if entry(state, key) is None:
        return None
    return integer(state, key, low=low, high=high)


def boolean(state: dict[str, Any], key: str) -> bool:
    """A ``bool`` entry."""
    value = entry(state, key)
    if not isinstance(value, bool):
        raise StateError(key, f"must be true or false, got {value!r}")
    return value


def number(state: dict[str, Any], key: str, *, low: float | None = 0.0, optional: bool = False) -> float | None:
    """A finite number ``>= low`` (``None`` too when ``optional``)."""
    value = entry(state, key)
    if value is None and optional:
        return None
    if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
        raise StateError(key, f"must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise StateError(key, f"is {value}, below its minimum {low}")
    return float(value)


def tensor(
    state: dict[str, Any],
    key: str,
    *,
    shape: tuple[int, ...] | None = None,
    ndim: int | None = None,
    dtype: torch.dtype | None = None,
    floating: bool = False,
    optional: bool = False,
) -> torch.Tensor | None:
    """A tensor entry of the given shape / number of dims / dtype (``None`` when ``optional``)."""
    value = entry(state, key)
    if value is None and optional:
        return None
    return tensor_value(value, key, shape=shape, ndim=ndim, dtype=dtype, floating=floating)


def tensor_value(
    value: Any,
    key: str,
    *,
    shape: tuple[int, ...] | None = None,
    ndim: int | None = None,
    dtype: torch.dtype | None = None,
    floating: bool = False,
) -> torch.Tensor:
    """``value``, after checking that it is a tensor as :func:`tensor` describes; ``key`` names it."""
    if not isinstance(value, torch.Tensor):
        raise StateError(key, f"must be a tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != shape:
        raise StateError(key, f"has shape {list(value.shape)}, expected {list(shape)}")
    if ndim is not None and value.ndim != ndim:
        raise StateError(key, f"has shape {list(value.shape)}, expected {ndim} dimension(s)")
    if dtype is not None and value.dtype != dtype:
        raise StateError(key, f"has dtype {value.dtype}, expected {dtype}")
    if floating and not value.is_floating_point():
        raise StateError(key, f"has dtype {value.dtype}, expected a floating dtype")
    return value


def permutation(state: dict[str, Any], key: str, length: int) -> torch.Tensor:
    """A 1-D integer tensor holding each of ``0 .. length - 1`` exactly once."""
    value = tensor(state, key, ndim=1)
    assert value is not None
    if value.dtype not in (torch.int64, torch.int32):
        raise StateError(key, f"has dtype {value.dtype}, expected torch.int64 positions")
    if value.shape[0] != length:
        raise StateError(key, f"holds {value.shape[0]} positions, expected {length}")
    if length:
        low, high = (int(v) for v in torch.aminmax(value))
        if low < 0 or high >= length:
            raise StateError(key, f"holds position {low if low < 0 else high}, outside [0, {length - 1}]")
        counts = torch.bincount(value.long(), minlength=length)
        if bool((counts != 1).any()):
            twice = int((counts > 1).nonzero()[0, 0])
            raise StateError(key, f"holds position {twice} more than once: it is not a permutation of 0..{length - 1}")
    return value
