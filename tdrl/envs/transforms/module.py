"""ModuleTransform: run a TensorDict module (a ``TensorDictModule``, a policy, an encoder) as a transform.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> encoder = TensorDictModule(torch.nn.Linear(3, 2), in_keys=["observation"], out_keys=["embedding"])
    >>> t = ModuleTransform(module=encoder, no_grad=True)
    >>> t(TensorDict({"observation": torch.zeros(4, 3)}, [4]))["embedding"].shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _as_key_list
from tdrl.specs import Composite, TensorSpec

__all__ = ["ModuleTransform"]

SpecChange = TensorSpec | Composite | Callable[[Composite], Composite] | None


def _changed(spec: Composite, change: SpecChange) -> Composite:
    if change is None:
        return spec
    if isinstance(change, (TensorSpec, Composite)):
        return change.clone()  # type: ignore[return-value]
    return change(spec)


class ModuleTransform(Transform):
    """Run ``module`` on each reset and step output (or, with ``inverse=True``, on each action).

    The module reads its ``in_keys`` and writes its ``out_keys`` in the TensorDict (a
    ``TensorDictModule`` or any module with those attributes that maps a TensorDict).
    A module does not say what it writes, so the specs change only as the
    ``*_spec_transform`` arguments say: each is either the new spec (a ``Composite`` for
    the whole observation, reward, done, action or state spec) or a function from the
    old one to the new one.

    Unlike TorchRL 0.14.1's, which runs the module on step outputs only, this one also
    runs it on reset outputs, so that the first root holds the module's outputs its specs
    declare; called on a TensorDict it maps the root and ``"next"``, as every tdrl
    transform does (TorchRL's maps the root only).

    Args:
        module: the module to run. Exclusive with ``module_factory``.
        module_factory: a function building the module (called once, here).
        no_grad: run the module under ``torch.no_grad()``.
        inverse: run the module on the policy's input before the base env reads it
            (``in_keys_inv`` are then its ``out_keys``, ``out_keys_inv`` its ``in_keys``).
        device: move the module there, and the data to it for the call.
        use_ray_service: TorchRL's remote module service; not available in tdrl.
        actor_name: accepted with ``use_ray_service`` (unused).
        num_gpus: accepted with ``use_ray_service`` (unused).
        num_cpus: accepted with ``use_ray_service`` (unused).
        observation_spec_transform: the new observation spec, or a function of the old one.
        action_spec_transform: likewise for the action spec.
        reward_spec_transform: likewise for the reward spec.
        done_spec_transform: likewise for the done spec.
        state_spec_transform: likewise for the state spec.

    Raises:
        ValueError: when neither or both of ``module`` and ``module_factory`` are given.
        NotImplementedError: for ``use_ray_service=True``.

    Examples:
        >>> import torch
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.specs import Unbounded
        >>> from tdrl.testing import CountingEnv
        >>> double = TensorDictModule(lambda x: 2 * x, in_keys=["observation"], out_keys=["double"])
        >>> def add_spec(spec):
        ...     spec["double"] = Unbounded(shape=spec["observation"].shape)
        ...     return spec
        >>> env = TransformedEnv(CountingEnv(), ModuleTransform(module=double, observation_spec_transform=add_spec))
        >>> env.rollout(3)["next", "double"].squeeze(-1)
        tensor([2., 4., 6.])
    """

    time_vectorizable = False  # a module may keep state across calls or need per-step inputs

    def __init__(
        self,
        *,
        module: Any = None,
        module_factory: Callable[[], Any] | None = None,
        no_grad: bool = False,
        inverse: bool = False,
        device: torch.device | str | None = None,
        use_ray_service: bool = False,
        actor_name: str | None = None,
        num_gpus: int | None = None,
        num_cpus: int | None = None,
        observation_spec_transform: SpecChange = None,
        action_spec_transform: SpecChange = None,
        reward_spec_transform: SpecChange = None,
        done_spec_transform: SpecChange = None,
        state_spec_transform: SpecChange = None,
    ) -> None:
        if (module is None) == (module_factory is None):
            raise ValueError(
                "ModuleTransform needs exactly one of module= and module_factory=, got "
                f"{'both' if module is not None else 'neither'}."
            )
        if use_ray_service:
            raise NotImplementedError(
                "ModuleTransform(use_ray_service=True) runs the module in a Ray actor in TorchRL; tdrl has no such "
                "service. Fix: run the module locally (use_ray_service=False)."
            )
        del actor_name, num_gpus, num_cpus  # only meaningful with the Ray service
        module = module if module is not None else module_factory()  # type: ignore[misc]
        keys_in, keys_out = _as_key_list(getattr(module, "in_keys", [])), _as_key_list(getattr(module, "out_keys", []))
        if inverse:
            super().__init__(in_keys_inv=keys_out, out_keys_inv=keys_in)
        else:
            super().__init__(in_keys=keys_in, out_keys=keys_out)
        self._device = torch.device(device) if device is not None else None
        self.module = module.to(self._device) if self._device is not None else module
        self.no_grad = no_grad
        self.inverse = inverse
        self.observation_spec_transform = observation_spec_transform
        self.action_spec_transform = action_spec_transform
        self.reward_spec_transform = reward_spec_transform
        self.done_spec_transform = done_spec_transform
        self.state_spec_transform = state_spec_transform

    def _run(self, tensordict: TensorDictBase) -> TensorDictBase:
        grad = torch.no_grad() if self.no_grad else contextlib.nullcontext()
        with grad:
            if self._device is None or tensordict.device == self._device:
                out = self.module(tensordict)
                return tensordict if out is None else out
            moved = tensordict.to(self._device)
            out = self.module(moved)
            result = (moved if out is None else out).to(tensordict.device)
            tensordict.update(result)
            return tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict if self.inverse else self._run(tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Run the module on ``tensordict``'s root and on its ``"next"`` entry (when the module reads from it)."""
        if self.inverse:
            return tensordict
        nxt = tensordict.get("next", None)
        tensordict = self._run(tensordict)
        if nxt is not None and all(nxt.get(key, None) is not None for key in self.in_keys):
            tensordict.set("next", self._run(nxt))
        return tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not self.inverse or any(tensordict.get(key, None) is None for key in self.out_keys_inv):
            return tensordict  # as every inverse: entries the data lacks (stored base-env actions) are left alone
        return self._run(tensordict)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        return _changed(observation_spec, self.observation_spec_transform)

    def transform_action_spec(self, action_spec: Composite) -> Composite:
        return _changed(action_spec, self.action_spec_transform)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return _changed(reward_spec, self.reward_spec_transform)

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        return _changed(done_spec, self.done_spec_transform)

    def transform_state_spec(self, state_spec: Composite) -> Composite:
        return _changed(state_spec, self.state_spec_transform)

    def __repr__(self) -> str:
        return f"ModuleTransform(module={type(self.module).__name__}, inverse={self.inverse}, no_grad={self.no_grad})"
