"""Envs that reset themselves: AutoResetEnv and AutoResetTransform.

Some simulators (gymnasium's vector envs, many GPU envs) start the next episode inside
the step that ends one: the observation they return with ``done`` is already the first
of the next episode. tdrl's step/reset cycle expects the last observation of the ending
episode under ``"next"`` and a reset that returns the first of the next one.
``AutoResetEnv`` with an ``AutoResetTransform`` restores that cycle without resetting
the simulator twice:

- at a step that ends episodes, the transform keeps the observations the simulator
  returned (the next episodes' first ones) and writes fill values (NaN, -1, False by
  dtype) in their place under ``"next"`` for the sub-envs that are done;
- the reset that follows (``env.step_and_maybe_reset``, a rollout, a collector) does not
  call the simulator: it returns the kept observations.

``SomeEnv(..., auto_reset=True)`` builds the pair around the env, as in TorchRL
(``auto_reset_replace=False`` keeps the returned values under ``"next"`` instead of the fills).

Examples:
    >>> import torch
    >>> from tdrl.testing import CountingEnv
    >>> class SelfResetting(CountingEnv):  # its step restarts the count when the episode ends
    ...     def _step(self, tensordict):
    ...         out = super()._step(tensordict)
    ...         if out["done"].any():
    ...             self.count.zero_()
    ...             out["observation"] = self.count.clone()
    ...         return out
    >>> env = SelfResetting(max_steps=2, auto_reset=True)
    >>> type(env).__name__
    'AutoResetEnv'
    >>> ro = env.rollout(5, break_when_any_done=False)
    >>> ro["next", "observation"].squeeze(-1), ro["observation"].squeeze(-1)
    (tensor([1., nan, 1., nan, 1.]), tensor([0., 1., 0., 1., 0.]))
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs.common import EnvBase
from tdrl.envs.transforms.env import TransformedEnv
from tdrl.envs.transforms.transforms import Transform, _slot
from tdrl.envs.utils import step_mdp
from tdrl.specs import Composite

__all__ = ["AutoResetTransform", "AutoResetEnv"]

_NOT_IN_AUTO_RESET_ENV = (
    "AutoResetTransform works inside an AutoResetEnv, whose resets after a done return the observations the "
    "simulator already started the next episode with; it is attached to a {env}. Fix: build "
    "AutoResetEnv(env, AutoResetTransform()), or pass auto_reset=True to the env's constructor."
)


class AutoResetTransform(Transform):
    """Keep the observations an auto-resetting env returns with ``done``, for the reset that follows.

    Keyword Args:
        replace: with False, the returned values stay under ``"next"`` (no fills); this
            overrides the three fill values.
        fill_float: written in place of floating-point entries of done sub-envs (``"nan"``
            or a number; None: no replacement).
        fill_int: written in place of signed integer entries (None: no replacement).
        fill_bool: written in place of boolean and unsigned entries (None: no replacement).

    Raises:
        ValueError: when attached to an env that is not an :class:`AutoResetEnv`, or
            whose done flags are not at the root (grouped multi-agent dones).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"next": {"observation": torch.tensor([[1.0], [2.0]]),
        ...     "done": torch.tensor([[False], [True]])}}, [2])
        >>> AutoResetTransform()(td)["next", "observation"].squeeze(-1)
        tensor([1., nan])
    """

    def __init__(
        self,
        *,
        replace: bool | None = None,
        fill_float: float | str | None = "nan",
        fill_int: int | None = -1,
        fill_bool: bool | None = False,
    ) -> None:
        super().__init__()
        if replace is False:
            fill_float = fill_int = fill_bool = None
        if fill_float == "nan":
            fill_float = float("nan")
        self.fill_float = fill_float
        self.fill_int = fill_int
        self.fill_bool = fill_bool
        self._observation_keys: list = []  # the entries of the env before this transform, learnt from its specs
        self._kept: TensorDictBase | None = None  # the next episodes' first observations, until the reset

    # the kept observations are handed from a step to the next reset: stepping only
    time_vectorizable = False

    def _fill_for(self, dtype: torch.dtype) -> Any:
        if dtype.is_floating_point:
            return self.fill_float
        if dtype != torch.bool and dtype.is_signed:
            return self.fill_int
        return self.fill_bool

    def _filled(self, value: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        fill = self._fill_for(value.dtype)
        if fill is None:
            return value
        mask = done.reshape(*done.shape[:-1], *([1] * (value.ndim - done.ndim + 1)))
        return torch.where(mask, torch.full_like(value, fill), value)

    def _keys(self, tensordict: TensorDictBase) -> list:
        if self._observation_keys:
            return self._observation_keys
        return [k for k in tensordict.keys(True, True) if k not in ("done", "terminated", "truncated", "reward")]

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        done = next_tensordict.get("done")
        if not bool(done.any()):
            return next_tensordict
        kept = TensorDict({}, batch_size=next_tensordict.batch_size, device=next_tensordict.device)
        for key in self._keys(next_tensordict):
            value = next_tensordict.get(key, None)
            if value is None:
                continue
            kept.set(key, value)
            next_tensordict.set(key, self._filled(value, done))
        self._kept = kept
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        auto = tensordict is not None and tensordict.get("_reset", None) is not None
        kept, self._kept = self._kept, None
        if auto and kept is not None:
            tensordict_reset.update(kept)
        return tensordict_reset

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write the fill values under ``"next"`` where the step is done (what stepping writes; nothing is kept)."""
        nxt = tensordict.get("next", None)
        if nxt is None:
            return tensordict
        done = nxt.get("done")
        for key in self._keys(nxt):
            value = nxt.get(key, None)
            if value is not None:
                nxt.set(key, self._filled(value, done))
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        env = self._env_of_chain()
        if env is not None and not isinstance(env, AutoResetEnv):
            raise ValueError(_NOT_IN_AUTO_RESET_ENV.format(env=type(env).__name__))
        done_keys = _slot(output_spec, "full_done_spec").keys(True, True)
        if any(not isinstance(key, str) for key in done_keys):
            raise ValueError(
                f"AutoResetTransform handles done flags at the root; the env has {done_keys}. Fix: group the "
                "agents' done flags at the root, or reset the groups yourself."
            )
        self._observation_keys = list(_slot(output_spec, "full_observation_spec").keys(True, True))
        return output_spec

    def _extra_repr(self) -> str:
        return f"fill_float={self.fill_float}, fill_int={self.fill_int}, fill_bool={self.fill_bool}"

    def __repr__(self) -> str:
        return f"AutoResetTransform({self._extra_repr()})"


class AutoResetEnv(TransformedEnv):
    """A TransformedEnv over an env that resets itself when an episode ends (see the module's text).

    A reset whose input flags sub-envs to reset (``"_reset"``, as after a done) returns
    what the :class:`AutoResetTransform` kept at the step, without calling the base env;
    any other reset (the first one, ``env.reset()``) resets the base env.

    Args:
        env: the auto-resetting env.
        transform: an :class:`AutoResetTransform` (or a Compose holding one).

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> env = AutoResetEnv(CountingEnv(), AutoResetTransform(replace=False))
        >>> env.reset()["observation"]
        tensor([0.])
    """

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        if tensordict is None or tensordict.get("_reset", None) is None:
            return super()._reset(tensordict, **kwargs)
        base = self.base_env
        keep = list(self.full_state_spec.keys(True, True))
        tensordict_reset = tensordict.select(*keep, strict=False)
        flags = base.full_done_spec.zero()
        for key in base.done_keys:
            tensordict_reset.set(key, flags.get(key))
        return self.transform._reset(tensordict, tensordict_reset)

    def _next_root(self, tensordict: TensorDictBase) -> TensorDictBase:
        root = step_mdp(tensordict, reward_keys=self.reward_keys)
        done = root.get("done")
        if done.any():
            root.set("_reset", done.clone())  # also without batch dims: it marks the reset as the automatic one
            root = self.reset(root)
            root.pop("_reset", None)
        return root

    def step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Step, then the next root: the sub-envs that are done start from the observations the env returned."""
        return super().step_and_maybe_reset(tensordict)

    def insert_transform(self, index: int, transform: Transform) -> TransformedEnv:
        """Refused: the AutoResetTransform must read the base env's outputs first. Use ``append_transform``."""
        raise RuntimeError(
            "AutoResetEnv.insert_transform: the AutoResetTransform must stay first; use append_transform, or wrap "
            "the env: TransformedEnv(auto_reset_env, transform)."
        )


def _wrap_auto_reset(env: EnvBase, replace: bool) -> AutoResetEnv:
    """``env`` inside an AutoResetEnv (what ``EnvClass(..., auto_reset=True)`` returns)."""
    return AutoResetEnv(env, AutoResetTransform(replace=replace))
