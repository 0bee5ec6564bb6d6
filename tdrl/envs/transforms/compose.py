"""Compose, the container that chains transforms (applied in order, inverses in reverse order)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl.envs.transforms._callable import _as_transform
from tdrl.envs.transforms.transforms import Transform, _link_container, _slot
from tdrl.specs import Composite, NestedKey

__all__ = ["Compose"]

_REWRITES_CARRIED = (
    "{later} rewrites or drops {key!r}, which {owner} carries from one step to the next: it reads the root's "
    "{key!r} at each step, so the next step would start from the rewritten value (summing or counting it again, "
    "or failing to find it). Fix: have {later} write its result under another key (out_keys=[...]), or "
    "place it before {owner}."
)


def _name_of(transform: Transform) -> str:
    """A transform's class name (a Compose by its members), for messages."""
    if isinstance(transform, Compose):
        return f"Compose({', '.join(type(t).__name__ for t in transform.transforms)})"
    return type(transform).__name__


def _owner_name(owner: Transform, key: NestedKey) -> str:
    """The class name of the transform that carries ``key`` (found inside a nested Compose)."""
    if isinstance(owner, Compose):
        for t in owner.transforms:
            if key in t._carried_keys():
                return _owner_name(t, key)
    return type(owner).__name__


class Compose(Transform):
    """A chain of transforms applied in order (inverses in reverse order).

    Indexable (``compose[0]``), sliceable (``compose[1:]`` is a Compose sharing the same
    transform objects, not attached to the env), iterable and appendable. When the
    Compose is attached to an env, ``append``/``insert`` recompute the env's specs and
    undo the change if the new transform cannot accept them.

    Args:
        *transforms: the transforms, first applied first (or one list of them, or
            ``transforms=[...]``). A plain function ``tensordict -> tensordict`` (say
            ``lambda td: td.to(device)``) is accepted as in TorchRL: it is applied to each
            step's and reset's output and in ``forward``, has no inverse and changes no spec.

    Examples:
        >>> from tdrl.envs import Compose, DoubleToFloat, StepCounter, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), Compose(StepCounter(), DoubleToFloat()))
        >>> env.transform[0]
        StepCounter(max_steps=None)
        >>> env.transform[1:]
        Compose(
            DoubleToFloat(in_keys=[], out_keys=[]))
    """

    # An nn.ModuleList at runtime (so the transforms are submodules), declared as the sequence of
    # Transforms it holds: what mypy sees through ModuleList is nn.Module.
    transforms: Sequence[Transform]
    # The same ModuleList as a plain instance attribute: the per-step hooks read it without
    # nn.Module's attribute lookup (about a microsecond a read). ``__setattr__`` keeps it in step.
    _members: Sequence[Transform]

    def __init__(
        self,
        *transforms: Transform | Callable[[TensorDictBase], TensorDictBase] | Sequence[Transform],
        _link: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if "transforms" in kwargs:
            if transforms:
                raise TypeError("Compose: give the transforms as arguments or as transforms=[...], not both.")
            transforms = tuple(kwargs.pop("transforms"))
        if kwargs:
            raise TypeError(f"Compose: unexpected keyword arguments {sorted(kwargs)}; it takes transforms=[...] only.")
        if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
            transforms = tuple(transforms[0])
        items = [_as_transform(t, "Compose") for t in transforms]
        if _link:
            for t in items:
                t.set_container(self)
        self.transforms = cast("Sequence[Transform]", nn.ModuleList(items))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "transforms":
            self.__dict__["_members"] = value

    # --- sequence API ------------------------------------------------------------------
    def __getitem__(self, item: int | slice) -> Transform:
        if isinstance(item, slice):
            return Compose(*self.transforms[item], _link=False)
        return self.transforms[item]

    def __len__(self) -> int:
        return len(self.transforms)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.transforms)

    def _before(self, transform: Transform) -> list:
        for i, t in enumerate(self.transforms):
            if t is transform:
                return list(self.transforms[:i])
        return list(self.transforms)

    def append(self, transform: Transform | Callable[[TensorDictBase], TensorDictBase]) -> None:
        """Append ``transform``; if attached to an env, its specs are recomputed (undone on error)."""
        self.insert(len(self.transforms), transform)

    def insert(self, index: int, transform: Transform | Callable[[TensorDictBase], TensorDictBase]) -> None:
        """Insert ``transform`` at ``index``; if attached to an env, its specs are recomputed (undone on error)."""
        transform = _as_transform(transform, "Compose.insert")
        transform.set_container(self)
        items = list(self.transforms)
        if index < 0:
            index += len(items) + 1
        items.insert(index, transform)
        old = self.transforms
        self.transforms = cast("Sequence[Transform]", nn.ModuleList(items))
        try:
            self._notify_spec_change()
        except Exception:
            self.transforms = old
            transform.reset_parent()
            self._notify_spec_change()
            raise

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__["_members"] = self.transforms  # (a Compose pickled before the mirror existed)
        for t in self.transforms:
            _link_container(t, self)

    # --- hooks -----------------------------------------------------------------------
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for t in self._members:
            tensordict = t._call(tensordict)
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        for t in self.transforms:
            tensordict = t(tensordict)
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        for t in self._members:
            tensordict_reset = t._reset(tensordict, tensordict_reset)
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for t in self._members:
            next_tensordict = t._step(tensordict, next_tensordict)
        return next_tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for t in tuple(self._members)[::-1]:  # (reversed() on a ModuleList indexes it item by item: slow)
            tensordict = t._inv_call(tensordict)
        return tensordict

    def _has_inverse(self) -> bool:
        return any(t._has_inverse() for t in self.transforms)

    def dump(self, **kwargs: Any) -> None:
        """Call ``dump(**kwargs)`` on each transform in order (e.g. a ``VideoRecorder`` writes its video)."""
        for t in self.transforms:
            t.dump(**kwargs)

    @property
    def time_vectorizable(self) -> bool:  # type: ignore[override]  # read-only here; the base's is a class flag
        return all(t.time_vectorizable for t in self.transforms)

    @property
    def _vectorizable(self) -> bool:
        return not self.__dict__.get("_casts_carried", False) and all(t._vectorizable for t in self.transforms)

    @property
    def _frame_skip(self) -> int:
        n = 1
        for t in self.transforms:
            n *= t._frame_skip
        return n

    def transform_env_device(self, device: torch.device) -> torch.device:
        for t in self.transforms:
            device = t.transform_env_device(device)
        return device

    def transform_env_batch_size(self, batch_size: torch.Size) -> torch.Size:
        for t in self.transforms:
            batch_size = t.transform_env_batch_size(batch_size)
        return batch_size

    def _reset_env_preprocess(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        for t in reversed(self.transforms):
            tensordict = t._reset_env_preprocess(tensordict)
        return tensordict

    def _carried_keys(self) -> list:
        return [key for t in self.transforms for key in t._carried_keys()]

    def _rewritten_keys(self) -> set:
        return {key for t in self.transforms for key in t._rewritten_keys()}

    def _carry_inside(self, key: NestedKey) -> bool:
        owners = [t for t in self.transforms if key in t._carried_keys()]
        return bool(owners) and all(t._carry_inside(key) for t in owners)

    # --- specs -----------------------------------------------------------------------
    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        """Each transform's specs in turn; refuses a transform that rewrites or drops an entry an earlier one carries.

        StepCounter, RewardSum and CatFrames keep their state in the entry they write and
        read it back from the root at the next step; a later transform that replaced that
        entry (a normalization, a scaling, a rename) would feed its result back to them.
        CatFrames then keeps its stack of raw frames inside itself instead (as TorchRL's
        does, so ``CatFrames`` followed by ``ObservationNorm`` on the same key works);
        StepCounter and RewardSum refuse the chain.
        """
        carried: dict = {}  # key -> the transform that reads it back at the next step
        casts_carried = False
        for t in self.transforms:
            output_spec, input_spec = t._transform_specs(output_spec, input_spec)
            if carried:
                observations = _slot(output_spec, "full_observation_spec")
                rewards = _slot(output_spec, "full_reward_spec")
                rewritten = t._rewritten_keys()
                for key, owner in list(carried.items()):
                    if key in rewritten or (key not in observations and key not in rewards):
                        if owner._carry_inside(key):
                            del carried[key]  # the owner no longer reads it back from the root
                            continue
                        raise ValueError(
                            _REWRITES_CARRIED.format(later=_name_of(t), key=key, owner=_owner_name(owner, key))
                        )
                    casts_carried = casts_carried or key in t.out_keys  # a cast (rewrites nothing): allowed
            for key in t._carried_keys():
                carried[key] = t
        # stepping re-reads the cast state at each step (rounded each time); mapping a whole rollout would
        # cast once at the end: such a chain takes the stepping road, so that both give the same data
        self.__dict__["_casts_carried"] = casts_carried
        return output_spec, input_spec

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        for t in self.transforms:
            output_spec = t.transform_output_spec(output_spec)
        return output_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        for t in self.transforms:
            input_spec = t.transform_input_spec(input_spec)
        return input_spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for t in self.transforms:
            observation_spec = t.transform_observation_spec(observation_spec)
        return observation_spec

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        for t in self.transforms:
            reward_spec = t.transform_reward_spec(reward_spec)
        return reward_spec

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        for t in self.transforms:
            done_spec = t.transform_done_spec(done_spec)
        return done_spec

    def transform_action_spec(self, action_spec: Composite) -> Composite:
        for t in self.transforms:
            action_spec = t.transform_action_spec(action_spec)
        return action_spec

    def transform_state_spec(self, state_spec: Composite) -> Composite:
        for t in self.transforms:
            state_spec = t.transform_state_spec(state_spec)
        return state_spec

    def __repr__(self) -> str:
        inner = ",\n".join("    " + repr(t).replace("\n", "\n    ") for t in self.transforms)
        return f"Compose(\n{inner})" if inner else "Compose()"
