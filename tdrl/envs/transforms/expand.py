"""ExpandAs: expand an entry on the right to the shape of another (e.g. an env's done to per-agent rewards).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"done": torch.tensor([[True], [False]]), "agents": {"reward": torch.zeros(2, 3, 1)}}, [2])
    >>> ExpandAs("done", ("agents", "reward"), out_key=("agents", "done"))(td)["agents", "done"].squeeze(-1)
    tensor([[ True,  True,  True],
            [False, False, False]])
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.transforms.transforms import Transform, _leaf, _slot, _unravel
from tdrl.specs import Composite, NestedKey, TensorSpec

__all__ = ["ExpandAs"]

_SLOTS = ("full_observation_spec", "full_reward_spec", "full_done_spec")


def _expand_right(value: torch.Tensor, shape: torch.Size, what: str) -> torch.Tensor:
    """``value`` with dims added on the right and size-1 dims expanded, to ``shape``."""
    if value.ndim > len(shape):
        raise ValueError(f"ExpandAs: {what} has more dims ({tuple(value.shape)}) than the reference {tuple(shape)}.")
    view = value.reshape(*value.shape, *([1] * (len(shape) - value.ndim)))
    try:
        return view.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"ExpandAs: {what} of shape {tuple(value.shape)} cannot be expanded on the right to {tuple(shape)}: its "
            "dims must equal the reference's leading dims or be 1. Fix: pick a ref_key whose shape starts like it."
        ) from None


class ExpandAs(Transform):
    """Write ``in_key`` expanded on the right to the shape of ``ref_key`` (dims added at the end, size-1 dims grown).

    Typical use: give a multi-agent env's global ``done`` (``[*B, 1]``) the shape of the
    per-agent rewards (``[*B, n_agents, 1]``). The output's spec is the input's spec
    expanded likewise; it lives beside the input (an output of a done flag under another
    name goes to the observations). At reset, where ``ref_key`` (a reward) is not
    written, its spec gives the shape.

    Args:
        in_key: the entry to expand.
        ref_key: the entry whose shape the result takes.
        out_key: where to write it (default ``in_key``).

    Raises:
        KeyError: when ``in_key`` or ``ref_key`` is not an output of the env (when attached),
            or, called on a TensorDict, is found neither at the root nor under ``"next"``.
        ValueError: when the shapes do not expand on the right.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(batch_size=[2]), ExpandAs("done", "observation", out_key="done_obs"))
        >>> env.observation_spec["done_obs"].shape, env.rollout(2)["next", "done_obs"].shape
        (torch.Size([2, 1]), torch.Size([2, 2, 1]))
    """

    def __init__(self, in_key: NestedKey, ref_key: NestedKey, out_key: NestedKey | None = None) -> None:
        super().__init__(in_keys=[in_key], out_keys=[in_key if out_key is None else out_key])
        self.in_key = _unravel(in_key)
        self.ref_key = _unravel(ref_key)
        self.out_key = self.out_keys[0]
        self._ref_shape: torch.Size | None = None  # the reference's spec shape, for resets that lack it

    def _expand_in(self, tensordict: TensorDictBase, ref_shape: torch.Size | None) -> bool:
        value = td_read(tensordict, self.in_key)
        ref = td_read(tensordict, self.ref_key)
        shape = ref.shape if ref is not None else ref_shape
        if value is None or shape is None:
            return False
        tensordict.set(self.out_key, _expand_right(value, shape, repr(self.in_key)))
        return True

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not self._expand_in(tensordict, None) and td_read(tensordict, self.in_key) is not None:
            raise KeyError(
                f"ExpandAs: the reference {self.ref_key!r} is missing from the step's output "
                f"(keys {sorted(map(str, tensordict.keys(True, True)))}). Fix: pass a ref_key the env writes."
            )
        return tensordict

    def _spec_shape(self, tensordict: TensorDictBase) -> torch.Size | None:
        """The reference's shape from its spec (once attached), for data that lacks it (a reset's output)."""
        if self._ref_shape is None:
            return None
        return torch.Size([*tensordict.batch_size, *self._ref_shape])

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        self._expand_in(tensordict_reset, self._spec_shape(tensordict_reset))
        return tensordict_reset

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Expand at the root and under ``"next"``, wherever both entries are found.

        Once attached to an env, the reference's spec stands in for a missing reference
        (the root of a rollout holds no reward), as at reset.
        """
        nxt = tensordict.get("next", None)
        done_root = self._expand_in(tensordict, self._spec_shape(tensordict))
        done_next = nxt is not None and self._expand_in(nxt, self._spec_shape(nxt))
        if not (done_root or done_next):
            raise KeyError(
                f"ExpandAs: no level of the tensordict holds both {self.in_key!r} and {self.ref_key!r} (root keys "
                f"{sorted(map(str, tensordict.keys()))}). Fix: pass keys the data holds side by side."
            )
        return tensordict

    def _find(self, output_spec: Composite, key: NestedKey) -> tuple[str, TensorSpec]:
        for name in _SLOTS:
            slot = _slot(output_spec, name)
            if key in slot.keys(True, True):
                return name, _leaf(slot, key)
        have = sorted(str(k) for name in _SLOTS for k in _slot(output_spec, name).keys(True, True))
        raise KeyError(f"ExpandAs: {key!r} is not an output of the env (it writes {have}). Fix: pass one of those.")

    def _check_spec_keys(self, output_spec: Composite, input_spec: Composite) -> None:
        self._find(output_spec, self.in_key)
        self._find(output_spec, self.ref_key)

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        _, ref_spec = self._find(output_spec, self.ref_key)
        name, in_spec = self._find(output_spec, self.in_key)
        if name == "full_done_spec" and self.out_key != self.in_key:
            name = "full_observation_spec"  # a copy of a flag under another name is an observation, not a flag
        batch = len(output_spec.shape)
        self._ref_shape = torch.Size(ref_spec.shape[batch:])
        while len(in_spec.shape) < len(ref_spec.shape):
            in_spec = in_spec.unsqueeze(-1)
        try:
            expanded = in_spec.expand(*ref_spec.shape)
        except (RuntimeError, ValueError):
            raise ValueError(
                f"ExpandAs: {self.in_key!r} of shape {tuple(in_spec.shape)} cannot be expanded on the right to "
                f"{self.ref_key!r}'s shape {tuple(ref_spec.shape)}. Fix: pick a ref_key whose shape starts like it."
            ) from None
        _slot(output_spec, name)[self.out_key] = expanded
        return output_spec

    def _extra_repr(self) -> str:
        return f"in_key={self.in_key!r}, ref_key={self.ref_key!r}, out_key={self.out_key!r}"

    def __repr__(self) -> str:
        return f"ExpandAs({self._extra_repr()})"
