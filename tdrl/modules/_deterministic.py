"""The deterministic tensordict modules: a value network, a deterministic actor, tanh squashing.

:class:`ValueOperator` and :class:`Actor` run the lean per-step path when it gives the same
result as tensordict's (see ``tdrl/modules/_lean.py``); :class:`TanhModule` maps a network's
output onto the action bounds. Import them from :mod:`tdrl.modules` (or
:mod:`tdrl.modules.actors`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torch import nn

from tdrl._compat import td_read, td_write
from tdrl.modules._lean import missing_key_error, own_lean_step, skip_existing
from tdrl.specs import Composite, NestedKey, TensorSpec

__all__ = ["Actor", "TanhModule", "ValueOperator"]


def _leaf_action_spec(spec: TensorSpec | Composite | None, key: NestedKey) -> TensorSpec | None:
    if spec is None:
        return None
    if isinstance(spec, Composite):
        if key not in spec:
            raise KeyError(
                f"the action spec is a Composite without the action entry {key!r} (it has "
                f"{spec.keys(True, True)}); pass env.action_spec or a Composite holding {key!r}."
            )
        return cast(TensorSpec, spec[key])  # an action entry is a leaf
    return spec


def _as_composite(spec: TensorSpec | Composite | None, key: NestedKey) -> Composite | None:
    if spec is None or isinstance(spec, Composite):
        return spec
    if not isinstance(spec, TensorSpec):
        raise TypeError(f"spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}.")
    return Composite({key: spec})


class _LeanTDModule(TensorDictModule):
    """A TensorDictModule that runs the lean path when it is equivalent to tensordict's."""

    def _setup_lean(self) -> None:
        self._lean = own_lean_step(self)

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        lean = self.__dict__.get("_lean")
        if (
            lean is not None
            and len(args) == 1
            and not kwargs
            and isinstance(args[0], TensorDictBase)
            and not skip_existing()
        ):
            lean(args[0])
            return args[0]
        return super().forward(*args, **kwargs)


class ValueOperator(_LeanTDModule):
    """A value network: writes ``"state_value"``, or ``"state_action_value"`` when it reads ``"action"``.

    Args:
        module: the network; called with the in_keys' tensors in order.
        in_keys: what it reads (default ``["observation"]``).
        out_keys: what it writes (default as above).

    Examples:
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> q = ValueOperator(lambda o, a: torch.cat([o, a], -1).sum(-1, keepdim=True),
        ...                   in_keys=["observation", "action"])
        >>> q.out_keys
        ['state_action_value']
        >>> q(TensorDict(observation=torch.ones(3), action=torch.ones(1)))["state_action_value"]
        tensor([4.])
    """

    def __init__(
        self,
        module: nn.Module | Callable,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        in_keys = ["observation"] if in_keys is None else ([in_keys] if isinstance(in_keys, (str, tuple)) else in_keys)
        if out_keys is None:
            out_keys = ["state_action_value"] if "action" in in_keys else ["state_value"]
        # tensordict takes lists (a tuple is one nested key) and rejects other sequences itself
        super().__init__(module, in_keys=cast("list[NestedKey]", in_keys), out_keys=cast("list[NestedKey]", out_keys))
        self._setup_lean()


class Actor(_LeanTDModule):
    """A deterministic policy: ``action = module(observation)``.

    Args:
        module: the network.
        in_keys: what it reads (default ``["observation"]``).
        out_keys: what it writes (default ``["action"]``).

    Keyword Args:
        spec: the action spec (a leaf spec or a ``Composite`` holding ``out_keys[0]``).
        safe: project the action onto ``spec`` after each call.

    Examples:
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> actor = Actor(lambda obs: 10 * obs, spec=Bounded(-1.0, 1.0, shape=(2,)), safe=True)
        >>> actor(TensorDict(observation=torch.tensor([0.05, 3.0])))["action"]
        tensor([0.5000, 1.0000])
    """

    def __init__(
        self,
        module: nn.Module | Callable,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        *,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
        **kwargs: Any,
    ) -> None:
        in_keys = ["observation"] if in_keys is None else in_keys
        out_keys = (
            ["action"] if out_keys is None else ([out_keys] if isinstance(out_keys, (str, tuple)) else list(out_keys))
        )
        # tensordict takes lists (a tuple is one nested key) and rejects other sequences itself
        super().__init__(module, in_keys=cast("list[NestedKey]", in_keys), out_keys=out_keys, **kwargs)
        self._spec = _as_composite(spec, out_keys[0])
        self._action_spec = _leaf_action_spec(self._spec, out_keys[0])
        if safe and self._action_spec is None:
            raise ValueError(
                "Actor(safe=True) needs the action spec to project actions onto: pass spec=env.action_spec."
            )
        self.safe = bool(safe)
        self._setup_lean()

    @property
    def spec(self) -> Composite | None:
        return self._spec

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        out = super().forward(*args, **kwargs)
        if self.safe and isinstance(out, TensorDictBase):
            key = self.out_keys[0]
            out.set(key, cast(TensorSpec, self._action_spec).project(out.get(key)))  # safe: __init__ required it
        return out


def _bound(
    given: float | torch.Tensor | None, from_spec: torch.Tensor | None, default: float, name: str, key: NestedKey
) -> torch.Tensor:
    """A bound of a TanhModule output: the given one (it must match the spec's), else the spec's, else the default."""
    if given is None:
        value = from_spec if from_spec is not None else torch.tensor(default)
    else:
        value = torch.as_tensor(given)
        if from_spec is not None and not bool((value == from_spec).all()):
            raise ValueError(
                f"TanhModule: {name}={given!r} for {key!r} differs from the spec's {name} {from_spec}; "
                f"give one of the two (the spec's bounds are used when {name} is omitted)."
            )
    value = value.clone()
    return value if value.is_floating_point() else value.to(torch.get_default_dtype())


class TanhModule(TensorDictModuleBase):
    """Squash entries onto a box with tanh: ``low + (high - low) * (tanh(x) + 1) / 2``.

    The last layer of a deterministic actor with bounded actions (TD3, DDPG):
    ``TensorDictSequential(TensorDictModule(net, ["observation"], ["param"]),
    TanhModule(["param"], ["action"], spec=env.action_spec))``. The bounds of each output
    are the buffers ``"<key>_low"`` and ``"<key>_high"`` (a nested key joined with ``_``),
    as TorchRL names them, so state dicts load across the two.

    Args:
        in_keys: the entries to squash.
        out_keys: where the squashed values go, one per in_key (default: the in_keys, in place).

    Keyword Args:
        spec: the output spec: one leaf spec for every out_key, or a ``Composite`` holding
            them. An output's bounds default to its spec's ``space.low``/``space.high``.
        low: the lower bound (a float or a tensor that broadcasts to the output). Default:
            the spec's, or -1 without a spec. Given with a spec, it must equal the spec's.
        high: the upper bound, as ``low`` (default: the spec's, or 1).
        clamp: keep ``tanh(x)`` within ``[-1 + r, 1 - r]`` (``r`` the dtype's
            resolution, 1e-6 for float32), so that an output can be mapped back.

    Raises:
        ValueError: for in_keys and out_keys of different lengths, a bound that contradicts
            the spec, or ``high < low``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> squash = TanhModule(["param"], ["action"], spec=Bounded(-2.0, 2.0, shape=(2,)))
        >>> squash(TensorDict(param=torch.tensor([0.0, 100.0])))["action"]
        tensor([0., 2.])
        >>> TanhModule(["x"], low=0.0, high=3.0)(TensorDict(x=torch.zeros(1)))["x"]
        tensor([1.5000])
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey],
        out_keys: Sequence[NestedKey] | None = None,
        *,
        spec: TensorSpec | Composite | None = None,
        low: float | torch.Tensor | None = None,
        high: float | torch.Tensor | None = None,
        clamp: bool = False,
    ) -> None:
        super().__init__()
        in_keys = [in_keys] if isinstance(in_keys, (str, tuple)) else list(in_keys)
        if out_keys is None:
            out_keys = list(in_keys)
        out_keys = [out_keys] if isinstance(out_keys, (str, tuple)) else list(out_keys)
        if len(in_keys) != len(out_keys):
            raise ValueError(
                f"TanhModule: in_keys {in_keys} and out_keys {out_keys} differ in length; give one out_key "
                "per in_key, or omit out_keys to squash in place."
            )
        self.in_keys = in_keys
        self.out_keys = out_keys
        if spec is not None and not isinstance(spec, (TensorSpec, Composite)):
            raise TypeError(f"TanhModule: spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}.")
        if isinstance(spec, Composite):
            leaves = [cast("TensorSpec | None", spec.get(key)) for key in out_keys]
            self._spec: Composite | None = spec
        else:
            leaves = [spec] * len(out_keys)
            self._spec = None if spec is None else Composite(dict.fromkeys(out_keys, spec))
        self._bound_names: list[tuple[str, str]] = []
        for key, leaf in zip(out_keys, leaves):
            space = getattr(leaf, "space", None)
            low_t = _bound(low, getattr(space, "low", None), -1.0, "low", key)
            high_t = _bound(high, getattr(space, "high", None), 1.0, "high", key)
            if bool((high_t < low_t).any()):
                raise ValueError(f"TanhModule: high {high_t} is below low {low_t} for {key!r}; swap them.")
            name = key if isinstance(key, str) else "_".join(key)
            self.register_buffer(f"{name}_low", low_t)
            self.register_buffer(f"{name}_high", high_t)
            self._bound_names.append((f"{name}_low", f"{name}_high"))
        self.clamp = bool(clamp)

    @property
    def spec(self) -> Composite | None:
        """The output spec, as a ``Composite`` keyed by the out_keys (``None`` without one)."""
        return self._spec

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        buffers = self._buffers
        for in_key, out_key, (low_name, high_name) in zip(self.in_keys, self.out_keys, self._bound_names):
            x = td_read(tensordict, in_key)
            if x is None:
                raise missing_key_error("TanhModule", in_key, tensordict)
            y = x.tanh()
            if self.clamp:
                resolution = torch.finfo(y.dtype).resolution
                y = y.clamp(-1 + resolution, 1 - resolution)
            low, high = cast(torch.Tensor, buffers[low_name]), cast(torch.Tensor, buffers[high_name])
            td_write(tensordict, out_key, low + (high - low) * (y + 1) / 2)
        return tensordict
