"""ActionMask: keep the env's discrete action spec masked with the legal actions of the moment.

The env writes which actions are legal (``"action_mask"``, bool ``[..., n]``) at each reset
and step; the transform copies that mask into the action spec of the env it is attached
to, so ``env.rand_action``, a policy-free ``env.rollout`` and ``RandomPolicy(env.action_spec)``
only draw legal actions.

Examples:
    >>> import torch
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing.masked import MaskedDiscreteEnv
    >>> env = TransformedEnv(MaskedDiscreteEnv(n=4), ActionMask())
    >>> _ = torch.manual_seed(0)
    >>> ro = env.rollout(10)
    >>> ro["next", "reward"].squeeze(-1)  # four legal moves, then the board is full
    tensor([1., 1., 1., 1.])
"""

from __future__ import annotations

from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.transforms.transforms import Transform, _as_key_list, _leaf_list, _spec_keys
from tdrl.specs import Categorical, Composite, MultiCategorical, MultiOneHot, NestedKey, OneHot, TensorSpec

_MASKABLE = (Categorical, OneHot, MultiCategorical, MultiOneHot)

__all__ = ["ActionMask"]

_NOT_IN_ENV = (
    "ActionMask updates the action spec of the env it is attached to, and cannot run on a plain tensordict "
    "(a replay buffer or a module chain). Fix: use it inside TransformedEnv(env, ActionMask(...))."
)
_BAD_SPEC = (
    "ActionMask: the action {key!r} has spec {spec}; a mask needs a MultiCategorical, MultiOneHot, "
    "Categorical or OneHot action. "
    "Fix: pass action_key naming a discrete action of the env."
)
_BAD_MASK = (
    "ActionMask: the mask {key!r} has shape {shape}; the action {action!r} (spec shape {spec_shape}, n={n}) needs "
    "a mask of shape {want}. Fix: have the env write one bool per action value."
)


class ActionMask(Transform):
    """Masks the env's discrete action spec with the mask the env writes at each reset and step.

    Reads ``mask_key`` from each reset and step output and stores it as the mask of the
    spec of ``action_key`` (``Categorical``, ``OneHot``, ``MultiCategorical`` or
    ``MultiOneHot``; for the last two, one bool per value of each sub-action, the blocks
    concatenated along the last dim) of the env it is attached to;
    random actions drawn from that spec (``env.rand_action``, a rollout without a policy,
    ``RandomPolicy(env.action_spec)``) are then legal. Writes no entry and leaves the
    specs' shapes unchanged. Only works attached to an env.

    Args:
        action_key: the discrete action whose spec is masked (default ``"action"``).
        mask_key: the bool entry ``[..., n]`` the env writes (default ``"action_mask"``).

    Raises:
        TypeError: when a key is not a string or tuple of strings.
        KeyError: (at attach time) when the env writes no ``mask_key`` or reads no ``action_key``.
        ValueError: (at attach time) when the action is not one of those specs; at a step
            when the mask's shape does not fit the action spec.
        RuntimeError: when called on a plain tensordict (no env).

    Examples:
        >>> import torch
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing.masked import MaskedDiscreteEnv
        >>> env = TransformedEnv(MaskedDiscreteEnv(n=3), ActionMask())
        >>> td = env.reset()
        >>> td["action"] = torch.tensor(0)
        >>> td = env.step(td)
        >>> env.action_spec.mask
        tensor([False,  True,  True])
        >>> sorted({int(env.rand_action()["action"]) for _ in range(30)})
        [1, 2]
    """

    time_vectorizable = False  # it acts on the env's spec at each step

    def __init__(self, action_key: NestedKey = "action", mask_key: NestedKey = "action_mask") -> None:
        super().__init__()
        for name, key in (("action_key", action_key), ("mask_key", mask_key)):
            if not isinstance(key, (str, tuple)):
                raise TypeError(f"ActionMask: {name} must be a string or a tuple of strings, got {key!r}.")
        self.action_key = _as_key_list(action_key)[0]
        self.mask_key = _as_key_list(mask_key)[0]
        self.in_keys = [self.action_key, self.mask_key]  # TorchRL's in_keys; no out_keys: it writes nothing
        self.out_keys = []
        self._spec_cache: tuple | None = None  # (the live action spec, the mask shape it takes)

    # --- specs -----------------------------------------------------------------------------
    def _check_spec_keys(self, output_spec: Composite, input_spec: Composite) -> None:
        outputs = _spec_keys(output_spec, ("full_observation_spec",)) + _spec_keys(input_spec, ("full_state_spec",))
        if self.mask_key not in outputs:
            raise KeyError(
                f"ActionMask: the env writes no mask {self.mask_key!r} (its observations and states are "
                f"{_leaf_list(outputs)}). Fix: pass mask_key naming the env's mask entry."
            )
        actions = cast(Composite, input_spec["full_action_spec"])
        if self.action_key not in actions.keys(True, True):
            raise KeyError(
                f"ActionMask: the env reads no action {self.action_key!r} (its actions are "
                f"{_leaf_list(list(actions.keys(True, True)))}). Fix: pass action_key naming one of them."
            )
        spec = actions[self.action_key]
        if not isinstance(spec, _MASKABLE):
            raise ValueError(_BAD_SPEC.format(key=self.action_key, spec=spec))

    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        self._spec_cache = None  # the env's specs are being rebuilt: find the live spec again at the next call
        return super()._transform_specs(output_spec, input_spec)

    def _live_spec(self) -> tuple[Any, tuple]:
        """The live action spec (the one ``rand_action`` draws from) and the mask shape it takes."""
        cached = self.__dict__.get("_spec_cache")
        if cached is not None:
            return cached
        env = self._env_of_chain()
        if env is None:
            raise RuntimeError(_NOT_IN_ENV)
        spec = cast(TensorSpec, env.full_action_spec[self.action_key])
        if not isinstance(spec, _MASKABLE):  # a later transform replaced it
            raise ValueError(_BAD_SPEC.format(key=self.action_key, spec=spec))
        if isinstance(spec, Categorical):
            want = (*spec.shape, spec.n)
        elif isinstance(spec, MultiCategorical):
            want = (*spec.shape[:-1], int(spec.nvec.reshape(-1, spec.shape[-1])[0].sum()))
        else:
            want = tuple(spec.shape)
        self._spec_cache = (spec, want)
        return spec, want

    # --- hooks -----------------------------------------------------------------------------
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        spec, want = self._live_spec()
        mask = td_read(tensordict, self.mask_key)
        if mask is None:
            return tensordict  # nothing new: the spec keeps the last mask
        n = want[-1]
        if mask.shape != want:
            if (
                isinstance(spec, Categorical)
                and spec.shape
                and spec.shape[-1] == 1
                and tuple(mask.shape) == (*want[:-2], n)
            ):
                mask = mask.unsqueeze(-2)  # an action of shape [..., 1] and a mask [..., n]
            elif mask.shape[-1] != n or not _expands(tuple(mask.shape), want):
                raise ValueError(
                    _BAD_MASK.format(
                        key=self.mask_key,
                        shape=tuple(mask.shape),
                        action=self.action_key,
                        spec_shape=tuple(spec.shape),
                        n=n,
                        want=want,
                    )
                )
        if mask.dtype != torch.bool or mask.device != torch.device(spec.device or "cpu"):
            mask = mask.to(device=spec.device, dtype=torch.bool)
        spec.update_mask(mask if mask.shape == want else mask.expand(want))
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Refused: the transform acts on an env's spec (see the class docstring)."""
        raise RuntimeError(_NOT_IN_ENV)

    def _extra_repr(self) -> str:
        return f"action_key={self.action_key!r}, mask_key={self.mask_key!r}"

    def __repr__(self) -> str:
        return f"ActionMask({self._extra_repr()})"


def _expands(shape: tuple, target: tuple) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without changing ``target``."""
    if len(shape) > len(target):
        return False
    return all(a in (1, b) for a, b in zip(shape[::-1], target[::-1]))
