"""``SafeModule``: a ``TensorDictModule`` that knows the spec of what it writes.

With ``safe=True`` each output that has a spec is projected onto it after every call
(``TensorSpec.project``), so exploration noise or an overflowing network cannot write an
out-of-domain value.
"""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey, unravel_key
from torch import nn

from tdrl.specs import Composite, TensorSpec

__all__ = ["SafeModule"]


class SafeModule(TensorDictModule):
    """A ``TensorDictModule`` with the specs of its outputs, optionally projecting onto them.

    Args:
        module: the network (or callable) mapping the ``in_keys`` entries to the outputs.
        in_keys: the entries read.
        out_keys: the entries written.
        spec: the spec of the outputs: a leaf spec (for the only out key) or a ``Composite``
            keyed by out keys; out keys without one have no spec (``None``).
        safe: project each output that has a spec onto it after every call.
        inplace: as ``TensorDictModule``'s (``True``: write into the input).

    Raises:
        TypeError: ``spec`` is not a tdrl spec.
        ValueError: a leaf ``spec`` with several out keys, a ``Composite`` with keys that are
            not out keys, or ``safe=True`` without any spec.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> module = SafeModule(
        ...     torch.nn.Linear(5, 3), in_keys=["obs"], out_keys=["action"],
        ...     spec=Bounded(-1.0, 1.0, shape=(3,)), safe=True,
        ... )
        >>> td = module(TensorDict({"obs": torch.full((5,), 100.0)}, []))
        >>> bool(td["action"].abs().max() <= 1.0)
        True
    """

    def __init__(
        self,
        module: nn.Module | Any,
        in_keys: NestedKey | list[NestedKey],
        out_keys: NestedKey | list[NestedKey],
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
        inplace: bool | str = True,
    ) -> None:
        super().__init__(module, in_keys, out_keys, inplace=inplace)
        self._spec = self._out_spec(spec)
        self.safe = bool(safe)
        if self.safe and not self._projected():
            raise ValueError(
                f"SafeModule(safe=True) needs the spec of an output to project onto; got spec={spec!r} for "
                f"out_keys {self.out_keys}. Pass spec=... (e.g. env.action_spec) or safe=False."
            )

    def _out_spec(self, spec: TensorSpec | Composite | None) -> Composite:
        if spec is None:
            return Composite()
        if not isinstance(spec, (TensorSpec, Composite)):
            raise TypeError(f"SafeModule: spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}.")
        if not isinstance(spec, Composite):
            if len(self.out_keys) != 1:
                raise ValueError(
                    f"SafeModule: a single (leaf) spec was given for {len(self.out_keys)} out_keys "
                    f"{self.out_keys}; pass a Composite keyed by out key instead."
                )
            return Composite({self.out_keys[0]: spec.clone()})
        extra = {unravel_key(k) for k in spec.keys(True, True)} - {unravel_key(k) for k in self.out_keys}
        if extra:
            raise ValueError(
                f"SafeModule: the spec has entries {sorted(map(str, extra))} that are not out_keys {self.out_keys}; "
                "key the Composite by the module's out keys."
            )
        return spec.clone()

    def _projected(self) -> list:
        return [k for k in self.out_keys if k in self._spec.keys(True, True)]

    @property
    def spec(self) -> Composite:
        """The specs of the outputs, as a ``Composite`` keyed by out key."""
        return self._spec

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the module; with ``safe=True``, project each output that has a spec."""
        out = super().forward(*args, **kwargs)
        if self.safe and isinstance(out, TensorDictBase):
            for key in self._projected():
                value = out.get(key, None)
                if value is not None:
                    out.set(key, self._spec[key].project(value))
        return out
