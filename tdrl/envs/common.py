"""EnvBase: the environment API every tdrl env implements.

An env reads the root of a TensorDict (the action) and writes what follows under
``"next"``: the observation, ``"reward"`` and the done flags ``"done"``,
``"terminated"`` and ``"truncated"``. Its specs say, for every entry it reads or
writes, the shape (batch dims first), dtype and domain.

A subclass declares its specs in ``__init__`` and implements three methods:

- ``_reset(tensordict) -> TensorDict``: the first observation (and done flags, which
  default to False). For a batched env, ``tensordict["_reset"]`` (shape ``[*B, 1]``)
  flags the sub-envs to reset; entries of the others are kept by ``reset``.
- ``_step(tensordict) -> TensorDict``: reads the action, returns the next observation,
  reward and done flags.
- ``_set_seed(seed)``: seeds the simulator.

Examples:
    >>> from tdrl.testing import CountingEnv
    >>> env = CountingEnv(max_steps=4)
    >>> ro = env.rollout(10)
    >>> ro.batch_size  # stops at the first done
    torch.Size([4])
    >>> ro["next", "observation"].squeeze(-1)
    tensor([1., 2., 3., 4.])
"""

from __future__ import annotations

from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from tdrl._compat import td_attach, td_read
from tdrl.envs._env_checks import (
    _BAD_ACTION_DTYPE,
    _BAD_ACTION_SHAPE,
    _NO_ACTION,
    _NOT_A_TENSORDICT,
    _NOT_RESET,
    _RESET_RETURNED,
    _STEP_RETURNED,
    _complete_done_flags,
    _EnvChecks,
    _shown,
    _ZeroOneCast,
)
from tdrl.envs._env_rollout import _EnvRollouts, next_root
from tdrl.envs._env_specs import _done_spec, _EnvSpecs, make_composite_from_td
from tdrl.envs._validation import _validation
from tdrl.specs import Composite, Unbounded

__all__ = ["EnvBase", "make_composite_from_td"]


class EnvBase(_EnvSpecs, _EnvChecks, _EnvRollouts, nn.Module):
    """Base class of tdrl environments.

    Args:
        device: where the env's tensors live (default CPU).
        batch_size: the env's batch shape: ``[]`` for one env, ``[N]`` for N envs
            stepped together.

    Attributes:
        output_spec: Composite holding ``full_observation_spec``, ``full_reward_spec`` and
            ``full_done_spec``.
        input_spec: Composite holding ``full_action_spec`` and ``full_state_spec``.
        batch_locked: True (the default) when inputs must have the env's batch size. A
            subclass sets it to False (as a class attribute, TorchRL's convention) when its
            ``_reset``/``_step`` take any batch of inputs, e.g. a stateless env run on
            ``env.reset(params_with_batch_size_10)``: actions are then checked on their
            trailing (spec) dims only, and missing done flags take the input's batch size.
    """

    batch_locked: bool = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """Build the env; ``auto_reset=True`` (TorchRL's constructor argument) returns it inside an ``AutoResetEnv``.

        ``auto_reset=True`` says the env starts the next episode inside the step that ends
        one; ``auto_reset_replace`` (default True) is the ``replace`` argument of the
        :class:`~tdrl.envs.AutoResetTransform` put around it. Without ``auto_reset`` the
        env is built as usual.
        """
        if not kwargs.get("auto_reset", False):
            return super().__new__(cls)
        rest = {k: v for k, v in kwargs.items() if k not in ("auto_reset", "auto_reset_replace")}
        env = super().__new__(cls)
        cls.__init__(env, *args, **rest)  # the AutoResetEnv returned is not a cls: Python will not call __init__ again
        from tdrl.envs.transforms.auto_reset import _wrap_auto_reset  # (the transforms import this module)

        return _wrap_auto_reset(env, replace=kwargs.get("auto_reset_replace", True))

    def __init__(
        self,
        device: torch.device | str | None = None,
        batch_size: torch.Size | tuple | list | None = None,
    ) -> None:
        super().__init__()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.batch_size = torch.Size(batch_size or ())
        self.output_spec = Composite(
            full_observation_spec=Composite(shape=self.batch_size),
            full_reward_spec=Composite(
                reward=Unbounded(shape=(*self.batch_size, 1), device=self.device), shape=self.batch_size
            ),
            full_done_spec=_done_spec(self.batch_size, self.device),
            shape=self.batch_size,
        )
        self.input_spec = Composite(
            full_action_spec=Composite(shape=self.batch_size),
            full_state_spec=Composite(shape=self.batch_size),
            shape=self.batch_size,
        )
        self._is_reset = False
        self._action_checks: list | None = None
        self._done_checks: tuple = ()  # the done keys step requires from _step, set with _action_checks

    # --- the API ---------------------------------------------------------------------------
    def reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        """Reset the env and return the first step's TensorDict.

        Args:
            tensordict: optional input. For a batched env, its ``"_reset"`` entry (bool,
                shape ``[*B, 1]``) selects the sub-envs to reset; the others keep the
                values ``tensordict`` holds. Other root entries (e.g. a policy's recurrent
                state) are carried over.
            **kwargs: passed to ``_reset``.

        Returns:
            A TensorDict of batch size ``env.batch_size`` with the observation and done flags:
            ``tensordict`` itself, updated in place, when one was given without a ``"_reset"``
            mask or a ``"next"`` entry (as in TorchRL: ``env.reset(td) is td``).
        """
        mask = None
        if tensordict is not None:
            mask = tensordict.get("_reset", None)
        out = self._reset(tensordict, **kwargs)
        if type(out) is not TensorDict and not isinstance(out, TensorDictBase):
            raise TypeError(_RESET_RETURNED.format(env=type(self).__name__, got=_shown(out)))
        if self._action_checks is None:  # the done keys are cached with the action checks (per spec change)
            self._prepare_action_checks()
        for key in self._done_checks:
            if td_read(out, key) is None:
                leading = out.batch_size[: max(0, out.batch_dims - self.batch_dims)]  # a non-batch-locked env's batch
                out.set(key, self.full_done_spec[key].zero(leading))  # [*B, 1], or [*B, n_agents, 1] in a group
        if tensordict is not None:
            if mask is not None and self.batch_size and not bool(mask.all()):
                out = self._keep_unreset(out, tensordict, mask)
            action_keys = self.action_keys
            for key in tensordict.keys():
                if key not in ("next", "_reset") and key not in out.keys() and key not in action_keys:
                    out.set(key, tensordict.get(key))
        if not self._is_reset:  # nn.Module.__setattr__ is slow: resets are on the collectors' hot path
            self._is_reset = True
        if _validation.outputs:
            self._validate_outputs(out, "reset", (self.full_observation_spec, self.full_done_spec), ())
        if (
            tensordict is not None
            and mask is None
            and "next" not in tensordict.keys()
            and tensordict.batch_size == out.batch_size
            and not tensordict.is_locked
        ):
            return tensordict.update(out)  # TorchRL's env.reset(td) fills td in place and returns it
        return out

    def _keep_unreset(self, out: TensorDictBase, old: TensorDictBase, mask: torch.Tensor) -> TensorDictBase:
        for key in out.keys(True, True):
            if key in old.keys(True, True):
                new_v, old_v = out.get(key), old.get(key)
                m = mask.reshape(*mask.shape[: self.batch_dims], *([1] * (new_v.ndim - self.batch_dims)))
                out.set(key, torch.where(m, new_v, old_v))
        return out

    def step(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Apply ``tensordict``'s action and write the result under ``"next"``.

        Args:
            tensordict: the current step, holding the action (see ``action_spec``).

        Returns:
            ``tensordict``, with ``"next"`` set to the next observation, reward and done flags.

        Raises:
            TypeError: when ``tensordict`` is not a TensorDict, or ``_step`` returns none.
            RuntimeError: when the env was never reset.
            KeyError: when the action entry is missing, or ``_step`` wrote no done flag.
            ValueError: when the action has the wrong shape or dtype.
        """
        if type(tensordict) is not TensorDict and not isinstance(tensordict, TensorDictBase):
            raise TypeError(
                _NOT_A_TENSORDICT.format(env=type(self).__name__, got=_shown(tensordict), key=self.action_key)
            )
        if not self._is_reset:
            raise RuntimeError(_NOT_RESET.format(env=type(self).__name__))
        checks = self._action_checks or self._prepare_action_checks()
        for key, shape, dtype, castable, exact in checks:
            action = td_read(tensordict, key)
            if action is None:
                raise KeyError(
                    _NO_ACTION.format(env=type(self).__name__, key=key, keys=sorted(map(str, tensordict.keys())))
                )
            if action.shape != shape and (self.batch_locked or action.shape[action.ndim - len(shape) :] != shape):
                raise ValueError(
                    _BAD_ACTION_SHAPE.format(
                        env=type(self).__name__,
                        key=key,
                        actual=tuple(action.shape),
                        expected=tuple(shape),
                        batch=tuple(self.batch_size),
                        spec=tuple(shape[self.batch_dims :]),
                    )
                )
            if action.dtype != dtype:
                if not castable or (dtype.is_floating_point and not action.dtype.is_floating_point):
                    raise ValueError(
                        _BAD_ACTION_DTYPE.format(env=type(self).__name__, key=key, actual=action.dtype, expected=dtype)
                    )
                converted = action.to(dtype) if exact is None else exact.cast(action, dtype)
                if converted is None:  # only a _ZeroOneCast refuses
                    raise ValueError(self._zero_one_message(key, action, dtype, cast(_ZeroOneCast, exact)))
                tensordict.set(key, converted)
        if _validation.actions:
            self._validate_actions(tensordict)
        next_td = self._step(tensordict)
        if type(next_td) is not TensorDict and not isinstance(next_td, TensorDictBase):
            raise TypeError(_STEP_RETURNED.format(env=type(self).__name__, got=_shown(next_td)))
        for key in self._done_checks:
            if td_read(next_td, key) is None:
                _complete_done_flags(next_td, self.done_keys, type(self).__name__)
                break
        if _validation.outputs:
            specs = (self.full_observation_spec, self.full_reward_spec, self.full_done_spec)
            self._validate_outputs(next_td, "step", specs, ("next",))
        td_attach(tensordict, "next", next_td)  # tensordict.set, without its checks when the layouts match
        return tensordict

    def step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Step, then build the root of the following step, resetting the sub-envs that are done.

        Returns:
            ``(tensordict, next_root)``: the stepped input (with ``"next"``) and the
            TensorDict to feed the policy at the following step.
        """
        tensordict = self.step(tensordict)
        layout = self._step_layout()  # NextObservationDelta: the step keeps ("next", "delta", k), not ("next", k)
        return layout.recorded(tensordict), layout.next_root(self._next_root(tensordict))

    def _step_layout(self) -> Any:
        """The env's ``_DeltaLayout``, computed once per spec or transform change (not on every step).

        It is cached beside the action checks, which every spec or transform change clears:
        a cache made for the current checks is current. Without checks yet (``step`` not
        called), it is computed each time.
        """
        checks = self._action_checks
        cached = self.__dict__.get("_delta_layout_cache")
        if cached is not None and checks is not None and cached[0] is checks:
            return cached[1]
        from tdrl.envs.transforms.next_obs import _delta_layout  # (tdrl.envs.transforms imports tdrl.envs)

        layout = _delta_layout(self)
        if checks is not None:  # (not nn.Module.__setattr__: slow, and this is no module state)
            self.__dict__["_delta_layout_cache"] = (checks, layout)
        return layout

    def _next_root(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The root of the step after ``tensordict`` (already stepped), done sub-envs reset."""
        root = next_root(tensordict, self.reward_keys)  # step_mdp's result, in one pass for plain layouts
        done = root.get("done")
        if done.any():
            if self.batch_size:
                root.set("_reset", done.clone())
            root = self.reset(root)
        return root

    def rand_action(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Write a random action drawn from the action spec into ``tensordict``."""
        if tensordict is None:
            tensordict = TensorDict({}, batch_size=self.batch_size, device=self.device)
        leading = () if self.batch_locked else tensordict.batch_size[: max(0, tensordict.batch_dims - self.batch_dims)]
        for key in self.action_keys:
            tensordict.set(key, self.full_action_spec[key].rand(leading))
        return tensordict

    def rand_step(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Step with a random action (resetting first when ``tensordict`` is None)."""
        if tensordict is None:
            tensordict = self.reset()
        return self.step(self.rand_action(tensordict))

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seed the env; returns the next seed to use for another env (``seed + 1``)."""
        self._set_seed(seed)
        if seed is None:
            return None
        return int(seed) + 1

    def fake_tensordict(self) -> TensorDictBase:
        """A zero-filled TensorDict with every entry the env reads and writes, ``"next"`` included."""
        root = self.full_observation_spec.zero()
        root.update(self.full_done_spec.zero())
        root.update(self.full_state_spec.zero())
        root.update(self.full_action_spec.zero())
        nxt = self.full_observation_spec.zero()
        nxt.update(self.full_done_spec.zero())
        nxt.update(self.full_reward_spec.zero())
        root.set("next", nxt)
        from tdrl.envs.transforms.next_obs import _delta_layout  # (tdrl.envs.transforms imports tdrl.envs)

        return _delta_layout(self).fake(root)  # NextObservationDelta: ("next", "delta", k) for ("next", k)

    def append_transform(self, transform: Any) -> Any:
        """Wrap this env and ``transform`` into a new ``TransformedEnv`` and return it (TorchRL's).

        The env itself is left as it is; keep using the returned env. On a ``TransformedEnv``
        the transform is appended in place and the same env is returned.

        Args:
            transform: a ``Transform`` (or a ``Compose``).

        Returns:
            ``TransformedEnv(self, transform)``.

        Examples:
            >>> from tdrl.envs import StepCounter
            >>> from tdrl.testing import CountingEnv
            >>> env = CountingEnv().append_transform(StepCounter(max_steps=3))
            >>> type(env).__name__, env.rollout(10).shape
            ('TransformedEnv', torch.Size([3]))
        """
        from tdrl.envs.transforms.env import TransformedEnv

        return TransformedEnv(self, transform)

    def close(self) -> None:
        """Release the simulator's resources. Safe to call twice."""
        self._is_reset = False

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # --- to implement --------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        raise NotImplementedError(f"{type(self).__name__} must implement _reset(tensordict) -> TensorDict")

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise NotImplementedError(f"{type(self).__name__} must implement _step(tensordict) -> TensorDict")

    def _set_seed(self, seed: int | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_seed(seed)")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_size={tuple(self.batch_size)}, device={self.device},\n"
            f"  observation_spec={self.full_observation_spec},\n  action_spec={self.action_spec},\n"
            f"  reward_spec={self.reward_spec})"
        )
