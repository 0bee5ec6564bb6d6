"""TransformedEnv: an env seen through a chain of transforms.

Its specs are the base env's specs passed through the transforms, computed when the
chain is built or changed (never per step). A step applies the transforms' inverse to
the action, steps the base env, then runs each transform's ``_step`` hook on the
result; a reset runs the base env's reset then each ``_reset`` hook.

A rollout without a policy takes a faster road when every transform in the chain is
time-vectorizable (stateless maps such as ``ObservationNorm`` and ``DoubleToFloat``, and
counters such as ``StepCounter()`` without ``max_steps``): the base env runs its own
rollout (for gymnasium, numpy written straight into preallocated tensors) and the
transforms map the stacked result at once. Set ``env.vectorized_rollout = False`` to
force the per-step road.

Examples:
    >>> from tdrl.envs import Compose, DoubleToFloat, StepCounter, TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=3), Compose(StepCounter(), DoubleToFloat()))
    >>> ro = env.rollout(5)
    >>> ro["next", "step_count"].squeeze(-1)
    tensor([1, 2, 3])
    >>> env = env.append_transform(StepCounter(step_count_key="steps_again"))
    >>> "steps_again" in env.observation_spec.keys()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.common import EnvBase
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.transforms import Transform, _link_container

__all__ = ["TransformedEnv"]


def _skip_whole_step(tensordict: TensorDictBase) -> bool:
    """Pop the ``"_step"`` mask a ConditionalSkip wrote; True when no sub-env steps (a partial skip is refused)."""
    mask = tensordict.get("_step")
    del tensordict["_step"]
    if bool(mask.all()):
        return False
    if bool(mask.any()):
        raise RuntimeError(
            f"ConditionalSkip: the condition skips some sub-envs of the batch and not others "
            f"({mask.flatten().tolist()}); tdrl skips whole steps only. Fix: make the condition agree across the batch."
        )
    return True


def _has_reset_preprocess(transform: Transform) -> bool:
    if isinstance(transform, Compose):
        return any(_has_reset_preprocess(t) for t in transform.transforms)
    return type(transform)._reset_env_preprocess is not Transform._reset_env_preprocess


class TransformedEnv(EnvBase):
    """An env whose outputs (and inputs) go through ``transform``.

    Args:
        env: the base env.
        transform: a Transform or a Compose; None means an empty Compose.

    Attributes:
        base_env: the wrapped env.
        vectorized_rollout: allow policy-free rollouts to map the stacked base rollout
            at once when the chain allows it (default True).

    Raises:
        TypeError: when ``env`` is not an EnvBase or ``transform`` not a Transform.
        KeyError: when a transform does not find a key it reads in the specs it receives.
        ValueError: when a transform cannot accept the specs it receives.

    Examples:
        >>> from tdrl.envs import ObservationNorm, TransformedEnv
        >>> from tdrl.testing import ContinuousActionMock
        >>> env = TransformedEnv(ContinuousActionMock(), ObservationNorm(loc=0.0, scale=2.0))
        >>> env.transform.scale
        tensor(2.)
        >>> env.base_env
        ContinuousActionMock(batch_size=(), device=cpu,
          ...
    """

    def __init__(self, env: EnvBase, transform: Transform | None = None, *, _link: bool = True) -> None:
        if not isinstance(env, EnvBase):
            raise TypeError(f"TransformedEnv wraps an EnvBase, got {type(env).__name__}.")
        if transform is None:
            transform = Compose()
        if not isinstance(transform, Transform):
            raise TypeError(
                f"TransformedEnv: transform must be a Transform (or Compose), got {type(transform).__name__}."
            )
        super().__init__(device=env.device, batch_size=env.batch_size)
        self.base_env = env
        self.vectorized_rollout = True
        self._link = _link
        self._frame_skip = 1
        self._has_inv = False
        self._reset_preprocess = False
        self._register_transform(transform)
        if _link:
            transform.set_container(self)
        try:
            self._refresh_specs()
        except Exception:
            if _link:
                transform.reset_parent()
            raise

    @classmethod
    def _view(cls, env: EnvBase, transforms: list) -> TransformedEnv:
        """A TransformedEnv over ``transforms`` that does not take ownership of them (for ``parent``)."""
        return cls(env, Compose(*transforms, _link=False), _link=False)

    # --- the chain -----------------------------------------------------------------------
    def _register_transform(self, transform: Transform) -> None:
        """Registers ``transform`` as the ``transform`` submodule and as the hot paths' plain reference."""
        super().__setattr__("transform", transform)  # nn.Module's registration, not the property setter
        # resets and steps are the collectors' hot path: they read this tuple, not nn.Module's lookups
        self._chain = (self.base_env, transform)

    @property
    def transform(self) -> Transform:
        """The transform; a Compose is indexable (``env.transform[0]``)."""
        return self._chain[1]

    @transform.setter
    def transform(self, transform: Transform) -> None:
        if not isinstance(transform, Transform):
            raise TypeError(f"TransformedEnv.transform must be a Transform, got {type(transform).__name__}.")
        old = self.transform
        old.reset_parent()
        transform.set_container(self)
        self._register_transform(transform)
        try:
            self._refresh_specs()
        except Exception:
            transform.reset_parent()
            old.set_container(self)
            self._register_transform(old)
            self._refresh_specs()
            raise

    def __setattr__(self, name: str, value: Any) -> None:
        if "_chain" in self.__dict__:  # built
            if name == "transform":
                # object.__setattr__ runs the property's setter, which nn.Module's __setattr__ would bypass
                object.__setattr__(self, name, value)
                return
            if name == "base_env":
                raise AttributeError(
                    "TransformedEnv.base_env cannot be replaced: the specs and the transforms were built for the "
                    "current one. Build a new env instead: TransformedEnv(new_env, Compose(...))."
                )
        super().__setattr__(name, value)

    def append_transform(self, transform: Transform) -> TransformedEnv:
        """Append ``transform`` at the end of the chain (specs recomputed; undone on error).

        Returns:
            this env (TorchRL's return value, so calls chain).
        """
        self._as_compose().append(transform)
        return self

    def insert_transform(self, index: int, transform: Transform) -> TransformedEnv:
        """Insert ``transform`` at ``index`` of the chain (specs recomputed; undone on error).

        Returns:
            this env (TorchRL's return value, so calls chain).
        """
        self._as_compose().insert(index, transform)
        return self

    def _as_compose(self) -> Compose:
        current = self.transform
        if isinstance(current, Compose):
            return current
        current.reset_parent()
        compose = Compose(current)
        compose.set_container(self)
        self._register_transform(compose)
        return compose

    def _refresh_specs(self) -> None:
        """Recompute the specs from the base env's through the chain."""
        base = self.base_env
        output_spec, input_spec = self.transform._transform_specs(base.output_spec.clone(), base.input_spec.clone())
        # the env's batch size and device follow the chain (BatchSizeTransform, DeviceCastTransform)
        self.batch_size = torch.Size(self.transform.transform_env_batch_size(base.batch_size))
        self.device = torch.device(self.transform.transform_env_device(base.device))
        self.output_spec = output_spec
        self.input_spec = input_spec
        self._action_checks = None
        self._frame_skip = self.transform._frame_skip
        self._has_inv = self.transform._has_inverse()
        # the reset's input goes through the chain's preprocess only for chains that have one (DeviceCastTransform)
        self._reset_preprocess = _has_reset_preprocess(self.transform)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.__dict__.get("_link", True):
            _link_container(self.transform, self)  # not nn.Module's setattr: no env-in-transform cycle

    @property
    def batch_locked(self) -> bool:  # type: ignore[override]
        """Whether the base env is batch-locked (a transformed env takes the batches its base env takes)."""
        return self.base_env.batch_locked

    # --- EnvBase -------------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        base, transform = self._chain
        base_in = tensordict
        if self._reset_preprocess:  # called without an input too: a transform may act before every reset
            base_in = transform._reset_env_preprocess(tensordict)
        out = base._reset(base_in, **kwargs)
        if base._action_checks is None:  # the base env's done keys, cached with its action checks
            base._prepare_action_checks()
        for key in base._done_checks:
            if td_read(out, key) is None:  # out's batch: a non-batch-locked base env may run a larger one
                out.set(key, torch.zeros((*out.batch_size, 1), dtype=torch.bool, device=base.device))
        if not base._is_reset:  # nn.Module.__setattr__ is slow
            base._is_reset = True
        return transform._reset(tensordict, out)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        base, transform = self._chain
        base_in = transform._inv_call(tensordict.copy()) if self._has_inv else tensordict
        # a ConditionalSkip may ask to skip this step
        if self._has_inv and td_read(base_in, "_step") is not None and _skip_whole_step(base_in):
            return self._skipped_step(base_in)
        if self._frame_skip == 1:
            next_td = base._step(base_in)
        else:
            next_td = self._skip_frames(base_in)
        return transform._step(tensordict, next_td)

    def _skipped_step(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The output of a skipped step: the root's state again, zero reward (the transforms do not run)."""
        lead = tensordict.batch_size[: max(0, tensordict.batch_dims - self.batch_dims)]
        out = self.full_done_spec.zero(lead)
        out.update(self.full_observation_spec.zero(lead))
        out.update(self.full_reward_spec.zero(lead))
        for key in list(out.keys(True, True)):
            value = tensordict.get(key, None)
            if value is not None:
                out.set(key, value.clone())
        return out

    def _skip_frames(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Repeat the action ``frame_skip`` times, summing rewards; stop early when any sub-env is done."""
        base = self.base_env
        total = None
        for _ in range(self._frame_skip):
            next_td = base._step(tensordict)
            rewards = [next_td.get(k) for k in base.reward_keys]
            total = rewards if total is None else [a + b for a, b in zip(total, rewards)]
            if next_td.get("done").any():
                break
        for key, value in zip(base.reward_keys, cast("list[torch.Tensor]", total)):  # the loop ran (frame_skip > 1)
            next_td.set(key, value)
        return next_td

    def _set_seed(self, seed: int | None) -> None:
        self.base_env._set_seed(seed)

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seed the base env; returns what the base env returns (the next seed to use)."""
        return self.base_env.set_seed(seed, static_seed=static_seed)

    def rollout(
        self,
        max_steps: int,
        policy: Callable[[TensorDictBase], TensorDictBase] | None = None,
        callback: Callable[[EnvBase, TensorDictBase], Any] | None = None,
        auto_reset: bool = True,
        break_when_any_done: bool = True,
        tensordict: TensorDictBase | None = None,
        return_contiguous: bool = True,
        break_when_all_done: bool = False,
        set_truncated: bool = False,
    ) -> TensorDictBase:
        """``EnvBase.rollout``; without a policy, a time-vectorizable chain maps the base env's rollout at once."""
        if (
            policy is None
            and callback is None
            and auto_reset
            and tensordict is None
            and self.vectorized_rollout
            and self.transform._vectorizable
        ):
            if max_steps < 1:
                raise ValueError(f"rollout: max_steps must be >= 1, got {max_steps}.")
            out = self.base_env.rollout(
                max_steps,
                break_when_any_done=break_when_any_done,
                break_when_all_done=break_when_all_done,
                set_truncated=set_truncated,
            )
            self._is_reset = True
            return self.transform(out)
        return super().rollout(
            max_steps,
            policy=policy,
            callback=callback,
            auto_reset=auto_reset,
            break_when_any_done=break_when_any_done,
            tensordict=tensordict,
            return_contiguous=return_contiguous,
            break_when_all_done=break_when_all_done,
            set_truncated=set_truncated,
        )

    def close(self) -> None:
        """Close the base env (a parent view made by ``Transform.parent`` leaves it open)."""
        super().close()
        base = self._base_or_none()
        if base is not None and self.__dict__.get("_link", True):
            base.close()

    # --- attribute access ------------------------------------------------------------------
    def _base_or_none(self) -> EnvBase | None:
        """The base env, or ``None`` while the env is being built or torn down (no attribute lookups)."""
        chain = self.__dict__.get("_chain")
        return chain[0] if chain is not None else None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            base = self._base_or_none()
            if base is None:
                raise
            try:
                return getattr(base, name)
            except AttributeError:
                raise AttributeError(
                    f"TransformedEnv (and its base env {type(base).__name__}) has no attribute {name!r}."
                ) from None

    def __repr__(self) -> str:
        env = repr(self.base_env).replace("\n", "\n    ")
        transform = repr(self.transform).replace("\n", "\n    ")
        return f"TransformedEnv(\n    env={env},\n    transform={transform})"
