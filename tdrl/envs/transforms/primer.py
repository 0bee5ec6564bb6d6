"""TensorDictPrimer: declares extra entries (e.g. a policy's recurrent state) and fills them at reset.

A recurrent policy reads its hidden state from the root and writes the next one under
``"next"``; the env has to know that entry so that resets set it back to its initial
value (per sub-env) and batched envs and collectors carry it. The primer adds the
entries to the observation spec, writes them at reset (zeros, a given value, or random
draws from the spec), and at each step copies the root's value to ``"next"`` when no one
wrote a new one (a policy-free rollout keeps the state as it is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey, unravel_key

from tdrl._compat import td_read, td_write
from tdrl.envs.transforms.transforms import Transform, _slot
from tdrl.specs import Composite, TensorSpec

__all__ = ["TensorDictPrimer"]

_BATCH_MISMATCH = (
    "TensorDictPrimer: the spec of {key!r} has shape {shape}, whose leading dims do not match the env's "
    "batch_size {batch}. Pass expand_specs=True to prepend the env's batch dims, or give specs whose shape "
    "starts with {batch}."
)


class TensorDictPrimer(Transform):
    """Declare extra entries in the env's observation spec and set them at each reset.

    Args:
        primers: ``{key: spec}`` (or a ``Composite``) of the entries to add; instead,
            the specs can be given as keyword arguments.
        random: draw the values from the specs (``spec.rand()``) instead of a fixed value.
        default_value: the fixed value: a number for all entries, a callable returning
            the tensor, or a ``{key: number or callable}`` dict with the primers' keys
            (default 0).
        reset_key: kept for TorchRL compatibility; the sub-envs to reset are read from
            the reset input's ``"_reset"`` entry.
        expand_specs: prepend the env's batch dims to the specs' shapes. When None, specs
            whose leading dims do not match the env's batch size are an error.
        **kwargs: ``key=spec`` pairs, when ``primers`` is not given.

    Raises:
        ValueError: for ``random`` with a ``default_value``, a ``default_value`` dict
            whose keys differ from the primers', specs and kwargs both given, or a value
            that is not a ``TensorSpec``.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.specs import Unbounded
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=2), TensorDictPrimer(hidden=Unbounded(shape=(3,))))
        >>> env.reset()["hidden"]
        tensor([0., 0., 0.])
        >>> "hidden" in env.observation_spec.keys()
        True
    """

    time_vectorizable = False

    def __init__(
        self,
        primers: dict | Composite | None = None,
        random: bool | None = None,
        default_value: float | Callable | dict | None = None,
        reset_key: NestedKey | None = None,
        expand_specs: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if primers is not None and kwargs:
            raise ValueError(
                f"TensorDictPrimer: pass the specs either as primers= or as keyword arguments, not both "
                f"(got primers and {sorted(kwargs)})."
            )
        source = primers if primers is not None else kwargs
        specs: dict[NestedKey, TensorSpec] = {}
        if isinstance(source, Composite):
            for key in source.keys(True, True):
                specs[unravel_key(key)] = source[key]  # type: ignore[assignment]
        else:
            for key, spec in source.items():
                if not isinstance(spec, TensorSpec):
                    raise ValueError(
                        f"TensorDictPrimer: the spec of {key!r} must be a TensorSpec (e.g. Unbounded(shape=...)); "
                        f"got {type(spec).__name__}."
                    )
                specs[unravel_key(key)] = spec
        if random and default_value is not None:
            raise ValueError("TensorDictPrimer: random=True draws the values; do not also pass default_value.")
        if isinstance(default_value, dict):
            values = {unravel_key(k): v for k, v in default_value.items()}
            if set(values) != set(specs):
                raise ValueError(
                    f"TensorDictPrimer: default_value's keys {sorted(map(str, values))} must be the primers' keys "
                    f"{sorted(map(str, specs))}."
                )
        else:
            fill = 0.0 if default_value is None else default_value
            values = dict.fromkeys(specs, fill)
        self.primers = specs
        self.random = bool(random)
        self.default_value = values
        self.reset_key = reset_key
        self.expand_specs = expand_specs
        self._batched: dict[NestedKey, TensorSpec] = dict(specs)

    # --- specs -----------------------------------------------------------------------------------
    def _fit(self, spec: TensorSpec, key: NestedKey, batch: torch.Size) -> TensorSpec:
        if tuple(spec.shape[: len(batch)]) == tuple(batch):
            return spec
        if self.expand_specs:
            return spec.expand(*batch, *spec.shape)
        raise ValueError(_BATCH_MISMATCH.format(key=key, shape=tuple(spec.shape), batch=tuple(batch)))

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        observation = _slot(output_spec, "full_observation_spec")
        batch = observation.shape
        self._batched = {key: self._fit(spec, key, batch) for key, spec in self.primers.items()}
        for key, spec in self._batched.items():
            observation[key] = spec.clone()
        return output_spec

    # --- values ----------------------------------------------------------------------------------
    def _value(self, key: NestedKey, spec: TensorSpec, shape: torch.Size | None = None) -> torch.Tensor:
        shape = spec.shape if shape is None else shape
        if self.random:
            return spec.rand(shape[: len(shape) - len(spec.shape)]) if shape != spec.shape else spec.rand()
        value = self.default_value[key]
        if callable(value):
            return value()
        return torch.full(tuple(shape), value, dtype=spec.dtype, device=spec.device)

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        # sub-envs that are not reset keep their values: EnvBase.reset restores them from its input
        for key, spec in self._batched.items():
            tensordict_reset.set(key, self._value(key, spec))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for key, spec in self._batched.items():
            if td_read(next_tensordict, key) is not None:
                continue
            value = td_read(tensordict, key)
            td_write(next_tensordict, key, value if value is not None else self._value(key, spec))
        return next_tensordict

    def _rewritten_keys(self) -> set:
        return set(self.primers)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write the primers' initial values into ``tensordict`` (batch dims prepended when needed)."""
        batch = tensordict.batch_size
        for key, spec in self.primers.items():
            shape = spec.shape if tuple(spec.shape[: len(batch)]) == tuple(batch) else torch.Size([*batch, *spec.shape])
            tensordict.set(key, self._value(key, spec, shape))
        return tensordict

    def __repr__(self) -> str:
        shapes = {str(k): tuple(s.shape) for k, s in self.primers.items()}
        return f"TensorDictPrimer(primers={shapes}, random={self.random})"
