"""The Transform base class (Compose, the container that chains transforms, is in ``compose``).

A transform maps TensorDicts and says how it changes the env's specs. The same object
works in three places:

- attached to an env (``TransformedEnv(env, t)``): the env calls its ``_reset`` and
  ``_step`` hooks on every reset and step, ``_inv_call`` on the action before the base
  env sees it, and its ``transform_*_spec`` methods once, when the chain is built, so
  the env's specs describe what it emits;
- called on a plain TensorDict (``t(td)``, e.g. inside a replay buffer or as a module):
  ``forward`` maps the root and the ``"next"`` entry in place;
- inverted (``t.inv(td)``): maps an action written against the transformed spec back
  to the base env's action.

Keys: ``in_keys`` are read and ``out_keys`` written (``out_keys`` default to
``in_keys``); for the inverse, ``out_keys_inv`` (the name the policy writes) is read
and ``in_keys_inv`` (the name the base env reads) written.

A transform declares ``time_vectorizable = True`` when its ``forward`` applied to a
whole rollout (time along the last batch dim) gives exactly what stepping with it
gives: ``TransformedEnv.rollout`` without a policy then runs the base env's rollout and
maps it at once, with no per-step TensorDict work.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.envs.transforms import Compose, RewardScaling, StepCounter
    >>> t = Compose(RewardScaling(loc=0.0, scale=2.0))
    >>> td = TensorDict({"next": {"reward": torch.ones(3, 1)}}, [3])
    >>> t(td)["next", "reward"].squeeze(-1)
    tensor([2., 2., 2.])
    >>> t.append(StepCounter())
    >>> len(t), type(t[1]).__name__
    (2, 'StepCounter')
"""

from __future__ import annotations

import copy
import importlib
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl._compat import td_read, td_write
from tdrl.specs import Composite, NestedKey, TensorSpec

if TYPE_CHECKING:
    from tdrl.envs.common import EnvBase
    from tdrl.envs.transforms._spec_decorators import _apply_to_composite, _apply_to_composite_inv  # noqa: F401
    from tdrl.envs.transforms.compose import Compose

__all__ = ["Transform", "Compose"]

_MISSING_IN_KEY = (
    "{name}: in_key {key!r} is not produced by the env it is attached to ({env}); the env writes "
    "{have}. Fix: pass in_keys from that list, or place this transform after the one that creates {key!r}."
)
_MISSING_INV_KEY = (
    "{name}: in_keys_inv entry {key!r} is not an input of the env it is attached to ({env}); the env reads "
    "{have}. Fix: pass in_keys_inv from that list (the base env's action names)."
)
_MISSING_FORWARD_KEY = (
    "{name}: in_key {key!r} is neither at the root nor under 'next' of the tensordict (root keys {root}, "
    "'next' keys {nxt}). Fix: pass in_keys naming entries the data has."
)
_ALREADY_ATTACHED = (
    "{name} is already attached to {other}; a transform instance lives in one chain. "
    "Fix: use a fresh instance or transform.clone()."
)


def _unravel(key: NestedKey) -> NestedKey:
    """A nested key in canonical form: a string, or a tuple of two or more strings."""
    if isinstance(key, tuple):
        flat: list = []
        for part in key:
            flat.extend(part if isinstance(part, tuple) else (part,))
        if not flat or not all(isinstance(p, str) for p in flat):
            raise TypeError(f"a key is a string or a tuple of strings, got {key!r}")
        return flat[0] if len(flat) == 1 else tuple(flat)
    if not isinstance(key, str):
        raise TypeError(f"a key is a string or a tuple of strings, got {key!r}")
    return key


def _as_key_list(keys: NestedKey | Sequence[NestedKey] | None) -> list:
    """A key or a sequence of keys as a list of canonical keys (a tuple of strings is one key)."""
    if keys is None:
        return []
    if isinstance(keys, (str, tuple)):
        return [_unravel(keys)]
    return [_unravel(k) for k in keys]


def _slot(spec: Composite, name: str) -> Composite:
    """The Composite an env's output or input spec holds under ``name`` (``"full_done_spec"``, ...)."""
    return cast(Composite, spec[name])


def _leaf(spec: Composite, key: NestedKey) -> TensorSpec:
    """The leaf spec ``spec`` holds under ``key`` (a key of ``spec.keys(True, True)``, or a transform's in_key)."""
    return cast(TensorSpec, spec[key])


def _key_tuple(key: NestedKey) -> tuple:
    return key if isinstance(key, tuple) else (key,)


class Transform(nn.Module):
    """Base class of transforms.

    Subclasses usually implement ``_apply_transform(x)`` (one tensor in, one out) and,
    when it changes shape, dtype or domain, ``_transform_spec(spec)``; transforms
    with state across steps override ``_reset``/``_step`` and ``forward``.

    Args:
        in_keys: the entries read (root and ``"next"``).
        out_keys: where the results go; defaults to ``in_keys`` (in place).
        in_keys_inv: the base env's input entries the inverse writes (e.g. ``["action"]``).
        out_keys_inv: the entries the inverse reads (the names the policy writes);
            default ``in_keys_inv``.

    Raises:
        ValueError: when ``out_keys`` and ``in_keys`` (or their inverses) differ in length.
    """

    #: forward over a whole rollout (time = last batch dim) equals stepping with the transform
    time_vectorizable: bool = True

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__()
        self.__dict__["_container"] = None
        self.in_keys = _as_key_list(in_keys)
        self.out_keys = _as_key_list(out_keys) if out_keys is not None else list(self.in_keys)
        self.in_keys_inv = _as_key_list(in_keys_inv)
        self.out_keys_inv = _as_key_list(out_keys_inv) if out_keys_inv is not None else list(self.in_keys_inv)
        self._check_key_lengths()

    def _check_key_lengths(self) -> None:
        name = type(self).__name__
        if len(self.in_keys) != len(self.out_keys):
            raise ValueError(
                f"{name}: in_keys {self.in_keys} and out_keys {self.out_keys} must have the same length "
                f"(one output per input)."
            )
        if len(self.in_keys_inv) != len(self.out_keys_inv):
            raise ValueError(
                f"{name}: in_keys_inv {self.in_keys_inv} and out_keys_inv {self.out_keys_inv} "
                "must have the same length."
            )

    # --- where the transform lives ----------------------------------------------------
    # The link to the container is a weak reference: the container holds the transform, so a
    # strong link back would make a reference cycle, and a TransformedEnv (with the ParallelEnv
    # workers it owns) would then be freed only by Python's cycle collector, not when the last
    # reference goes.
    @property
    def container(self) -> Any:
        """The ``Compose`` or ``TransformedEnv`` holding this transform (None when standalone)."""
        return _container_of(self)

    def set_container(self, container: Any) -> None:
        """Attach to ``container``; raises if the transform already lives elsewhere."""
        current = _container_of(self)
        if current is not None and current is not container:
            raise ValueError(_ALREADY_ATTACHED.format(name=type(self).__name__, other=type(current).__name__))
        _link_container(self, container)

    def reset_parent(self) -> None:
        """Detach from its container."""
        self.__dict__["_container"] = None

    @property
    def parent(self) -> EnvBase | None:
        """The env this transform reads from, i.e. the base env plus the transforms before it.

        None when the transform is not attached to an env.
        """
        from tdrl.envs.transforms.compose import Compose
        from tdrl.envs.transforms.env import TransformedEnv

        container = self.container
        if container is None:
            return None
        if isinstance(container, TransformedEnv):
            return container.base_env
        if isinstance(container, Compose):
            before = container._before(self)
            outer = container.parent if container.container is not None else None
            if outer is None:
                return None
            return TransformedEnv._view(outer, before) if before else outer
        return None

    def _env_of_chain(self) -> Any:
        """The TransformedEnv at the top of this transform's chain (None when standalone)."""
        from tdrl.envs.transforms.env import TransformedEnv

        node: Any = self
        while node is not None and not isinstance(node, TransformedEnv):
            node = _container_of(node) if isinstance(node, Transform) else None
        return node

    def _notify_spec_change(self) -> None:
        """Recompute the specs of the env this transform is attached to (if any)."""
        env = self._env_of_chain()
        if env is not None:
            env._refresh_specs()

    def clone(self) -> Transform:
        """A deep copy, detached from any env."""
        return copy.deepcopy(self)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_container"] = None  # the container re-links its children when it is unpickled
        return state

    # --- per-step hooks (called by TransformedEnv) --------------------------------------
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Map one step's entries in place (``in_keys`` -> ``out_keys``); missing keys are skipped."""
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = td_read(tensordict, in_key)
            if value is not None:
                td_write(tensordict, out_key, self._apply_transform(value))
        return tensordict

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        """Map the reset output ``tensordict_reset``; ``tensordict`` is the reset's input (may be None)."""
        return self._call(tensordict_reset)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        """Map the step output ``next_tensordict``; ``tensordict`` is the current (transformed) root."""
        return self._call(next_tensordict)

    # --- the inverse (actions) ---------------------------------------------------------
    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Read ``out_keys_inv``, write ``in_keys_inv`` (in place)."""
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            value = td_read(tensordict, out_key)
            if value is not None:
                td_write(tensordict, in_key, self._inv_apply_transform(value))
        return tensordict

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Map an input written against the transformed specs back to the base env's (a shallow copy)."""
        if not self._has_inverse():
            return tensordict
        return self._inv_call(tensordict.copy())

    def _has_inverse(self) -> bool:
        return bool(self.in_keys_inv)

    # --- state carried through the root ----------------------------------------------
    def _carried_keys(self) -> list:
        """Entries this transform writes and reads back from the root at the next step (its state)."""
        return []

    def _rewritten_keys(self) -> set:
        """Entries whose values this transform replaces (a later transform may not replace a carried one)."""
        return set(self.out_keys)

    def _carry_inside(self, key: NestedKey) -> bool:
        """Asked when a later transform rewrites or drops the carried ``key``: keep that state inside instead.

        Returns True when the transform can keep the state in itself from now on (it then
        no longer lists ``key`` in ``_carried_keys``); False when the chain must be refused.
        """
        return False

    @property
    def _vectorizable(self) -> bool:
        """Whether a policy-free rollout may be mapped at once (no action map, and time-vectorizable)."""
        return self.time_vectorizable and not self._has_inverse()

    @property
    def _frame_skip(self) -> int:
        return 1

    # --- what the env looks like from outside -----------------------------------------
    def transform_env_device(self, device: torch.device) -> torch.device:
        """The device of the env seen through this transform, given the device of the env it reads from."""
        return device

    def transform_env_batch_size(self, batch_size: torch.Size) -> torch.Size:
        """The batch size of the env seen through this transform, given that of the env it reads from."""
        return batch_size

    def _reset_env_preprocess(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        """Map the reset's input before the base env reads it (e.g. back to its device); identity by default.

        Called before every reset of the env, with None when the reset has no input.
        """
        return tensordict

    # --- plain TensorDicts -----------------------------------------------------------
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Apply the transform to ``tensordict``'s root and its ``"next"`` entry, in place.

        Raises:
            KeyError: when an in_key is neither at the root nor under ``"next"``.
        """
        nxt = tensordict.get("next", None)
        self._check_forward_keys(tensordict, nxt)
        tensordict = self._call(tensordict)
        if nxt is not None:
            new = self._call(nxt)
            if new is not nxt:
                tensordict.set("next", new)
        return tensordict

    def _check_forward_keys(self, tensordict: TensorDictBase, nxt: TensorDictBase | None) -> None:
        for key in self.in_keys:
            if tensordict.get(key, None) is None and (nxt is None or nxt.get(key, None) is None):
                raise KeyError(
                    _MISSING_FORWARD_KEY.format(
                        name=type(self).__name__,
                        key=key,
                        root=sorted(map(str, tensordict.keys())),
                        nxt=sorted(map(str, nxt.keys())) if nxt is not None else [],
                    )
                )

    # --- specs -----------------------------------------------------------------------
    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        """Check the keys against the incoming specs, then transform them (called when the chain is built)."""
        self._check_spec_keys(output_spec, input_spec)
        return self.transform_output_spec(output_spec), self.transform_input_spec(input_spec)

    def _check_spec_keys(self, output_spec: Composite, input_spec: Composite) -> None:
        outputs = _spec_keys(output_spec, ("full_observation_spec", "full_reward_spec", "full_done_spec"))
        outputs += _spec_keys(input_spec, ("full_state_spec",))
        env = self._env_name()
        for key in self.in_keys:
            if key not in outputs:
                raise KeyError(
                    _MISSING_IN_KEY.format(name=type(self).__name__, key=key, env=env, have=_leaf_list(outputs))
                )
        inputs = _spec_keys(input_spec, ("full_action_spec", "full_state_spec"))
        for key in self.in_keys_inv:
            if key not in inputs:
                raise KeyError(
                    _MISSING_INV_KEY.format(name=type(self).__name__, key=key, env=env, have=_leaf_list(inputs))
                )

    def _env_name(self) -> str:
        env = self._env_of_chain()
        if env is None:
            return "unknown env"
        base = env._base_or_none()
        return repr(base).split("\n")[0] if base is not None else type(env).__name__

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        """Transform the env's output spec (observation, reward and done specs)."""
        output_spec["full_observation_spec"] = self.transform_observation_spec(
            _slot(output_spec, "full_observation_spec")
        )
        output_spec["full_reward_spec"] = self.transform_reward_spec(_slot(output_spec, "full_reward_spec"))
        output_spec["full_done_spec"] = self.transform_done_spec(_slot(output_spec, "full_done_spec"))
        return output_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        """Transform the env's input spec (action and state specs) as the policy sees them."""
        input_spec["full_action_spec"] = self.transform_action_spec(_slot(input_spec, "full_action_spec"))
        input_spec["full_state_spec"] = self.transform_state_spec(_slot(input_spec, "full_state_spec"))
        return input_spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        return self._map_spec(observation_spec)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return self._map_spec(reward_spec)

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        return done_spec

    def transform_action_spec(self, action_spec: Composite) -> Composite:
        return self._map_inv_spec(action_spec)

    def transform_state_spec(self, state_spec: Composite) -> Composite:
        return self._map_inv_spec(state_spec)

    def _map_spec(self, spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            if in_key in spec:
                spec[out_key] = self._transform_spec(_leaf(spec, in_key), in_key)
        return spec

    def _map_inv_spec(self, spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            if in_key in spec:
                new = self._transform_inv_spec(_leaf(spec, in_key), in_key)
                if out_key != in_key:
                    del spec[in_key]
                spec[out_key] = new
        return spec

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        """The spec of ``out = _apply_transform(x)`` for ``x`` in ``spec`` (default: unchanged)."""
        return spec

    def _transform_inv_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        """The spec the policy writes against, given the base env's input ``spec`` (default: unchanged)."""
        return spec

    def __repr__(self) -> str:
        parts = [f"in_keys={self.in_keys}", f"out_keys={self.out_keys}"]
        if self.in_keys_inv:
            parts += [f"in_keys_inv={self.in_keys_inv}", f"out_keys_inv={self.out_keys_inv}"]
        extra = self._extra_repr()
        if extra:
            parts.insert(0, extra)
        return f"{type(self).__name__}({', '.join(parts)})"

    def _extra_repr(self) -> str:
        return ""

    def dump(self, **kwargs: Any) -> None:
        """Write out what the transform has recorded (a no-op but for recorders such as ``VideoRecorder``)."""
        del kwargs


def _container_of(transform: Transform) -> Any:
    """The container ``transform`` is linked to (None when standalone, or when the container is gone)."""
    ref = transform.__dict__.get("_container")
    return None if ref is None else ref()


def _link_container(transform: Transform, container: Any) -> None:
    """Link ``transform`` to ``container`` by a weak reference (no cycle: see ``Transform.container``)."""
    transform.__dict__["_container"] = weakref.ref(container)


def _spec_keys(spec: Composite, slots: tuple) -> list:
    out: list = []
    for slot in slots:
        out.extend(_slot(spec, slot).keys(True, False))
    return out


def _leaf_list(keys: list) -> list:
    return sorted({str(k) for k in keys})


# Names defined in other modules and still importable from this one (TorchRL's path, or code
# written before the split): read on first use, since those modules import this one.
_MOVED = {
    "Compose": "tdrl.envs.transforms.compose",
    "_as_transform": "tdrl.envs.transforms._callable",
    "_CallableTransform": "tdrl.envs.transforms._callable",
    "_apply_to_composite": "tdrl.envs.transforms._spec_decorators",
    "_apply_to_composite_inv": "tdrl.envs.transforms._spec_decorators",
}


def __getattr__(name: str) -> Any:
    """The other transforms, read through this module's path as TorchRL's ``torchrl.envs.transforms.transforms``.

    Programs written for TorchRL import transforms from that module
    (``from torchrl.envs.transforms.transforms import TransformedEnv``); the names live in
    the modules of ``tdrl.envs.transforms`` and are looked up there on first use.
    """
    if name in _MOVED:  # names that lived here before the module was split (same objects)
        module = importlib.import_module(_MOVED[name])
        return getattr(module, name)
    import tdrl.envs.transforms as package

    if name in package.__all__:
        return getattr(package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
