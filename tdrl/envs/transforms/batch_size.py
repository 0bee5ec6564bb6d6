"""BatchSizeTransform: give an env another batch size.

Two uses. With ``batch_size``, an env whose ``_reset``/``_step`` follow the batch of
the TensorDict they receive (a stateless env, e.g. one computing the next state from
the state it is given) is run as a batch of that size: resets are expanded to it and
its specs describe it, so collectors can drive it. With ``reshape_fn`` (a reshape,
flatten, unflatten, squeeze or unsqueeze of the batch dims, written once for
TensorDicts and tensors, e.g. ``lambda data: data.reshape(1, 1)``), a batched env's
batch dims are rearranged: its outputs are reshaped on the way out and its inputs
reshaped back before it reads them.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(batch_size=[6]), BatchSizeTransform(reshape_fn=lambda d: d.reshape(2, 3)))
    >>> env.batch_size, env.rollout(4)["next", "observation"].shape
    (torch.Size([2, 3]), torch.Size([2, 3, 4, 1]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Composite, TensorSpec

__all__ = ["BatchSizeTransform"]


def _rebatch(spec: Any, batch_dims: int, new_batch: torch.Size, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``spec`` with its leading ``batch_dims`` dims replaced by ``new_batch`` (bounds mapped with ``fn``)."""
    if isinstance(spec, Composite):
        entries = {key: _rebatch(spec[key], batch_dims, new_batch, fn) for key in spec.keys()}
        return Composite(entries, shape=(*new_batch, *spec.shape[batch_dims:]), device=spec.device)
    leaf = cast(TensorSpec, spec)
    return leaf._reshaped(torch.Size((*new_batch, *leaf.shape[batch_dims:])), fn)


class BatchSizeTransform(Transform):
    """Set (``batch_size``) or rearrange (``reshape_fn``) the batch size of the env it is attached to.

    Keyword Args:
        batch_size: the new batch size, to which the parent's expands (for envs that
            follow the batch of their input). Exclusive with ``reshape_fn``.
        reshape_fn: a map of the batch dims that works on TensorDicts and tensors alike
            (reshape, flatten, unflatten, squeeze, unsqueeze). Exclusive with ``batch_size``.
        reset_func: ``reset_func(tensordict, tensordict_reset)`` builds the reset's result
            from the reset's input and the base env's reset output (before the batch change).
        env_kwarg: pass ``env=`` (the transformed env) to ``reset_func`` too.

    Raises:
        ValueError: when both or neither of ``batch_size`` and ``reshape_fn`` are given, or
            (when attached) the parent's batch size cannot become the new one.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.envs import EnvBase, TransformedEnv
        >>> from tdrl.specs import Composite, Unbounded
        >>> class Stateless(EnvBase):  # follows the batch of the tensordict it gets
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.observation_spec = Composite(observation=Unbounded(shape=(1,)))
        ...         self.action_spec = Unbounded(shape=(1,))
        ...     def _reset(self, tensordict, **kwargs):
        ...         batch = tensordict.batch_size if tensordict is not None else torch.Size([])
        ...         return TensorDict({"observation": torch.zeros(*batch, 1)}, batch)
        ...     def _step(self, tensordict):
        ...         obs = tensordict["observation"] + tensordict["action"]
        ...         done = torch.zeros_like(obs, dtype=torch.bool)
        ...         return TensorDict({"observation": obs, "reward": obs.clone(), "done": done,
        ...             "terminated": done.clone(), "truncated": done.clone()}, tensordict.batch_size)
        ...     def _set_seed(self, seed):
        ...         pass
        >>> env = TransformedEnv(Stateless(), BatchSizeTransform(batch_size=[5]))
        >>> env.batch_size, env.rollout(3).batch_size
        (torch.Size([5]), torch.Size([5, 3]))
    """

    def __init__(
        self,
        *,
        batch_size: torch.Size | tuple | list | None = None,
        reshape_fn: Callable[[Any], Any] | None = None,
        reset_func: Callable[..., TensorDictBase] | None = None,
        env_kwarg: bool = False,
    ) -> None:
        if (batch_size is None) == (reshape_fn is None):
            raise ValueError(
                "BatchSizeTransform takes one of batch_size (the new batch size) or reshape_fn (a map of the batch "
                "dims, e.g. lambda data: data.reshape(1, 1)), not both nor neither."
            )
        super().__init__()
        self.batch_size = torch.Size(batch_size) if batch_size is not None else None
        self.reshape_fn = reshape_fn
        self.reset_func = reset_func
        self.env_kwarg = env_kwarg
        self._parent_batch: torch.Size | None = None  # the attached env's batch size, learnt from the chain

    # the batch of a whole rollout has a time dim the reshape does not expect: stepping only
    time_vectorizable = False

    def _new_batch(self, batch_size: torch.Size) -> torch.Size:
        if self.batch_size is not None:
            return self.batch_size
        fn = cast(Callable[[Any], Any], self.reshape_fn)
        return torch.Size(fn(torch.zeros(batch_size, device="meta")).shape)

    def transform_env_batch_size(self, batch_size: torch.Size) -> torch.Size:
        self._parent_batch = torch.Size(batch_size)
        return self._new_batch(batch_size)

    # --- specs ------------------------------------------------------------------------------
    def _map_batch(self, spec: Composite) -> Composite:
        old = spec.shape
        new = self._new_batch(old)
        nb = len(old)
        if self.batch_size is not None:
            if len(new) < nb or any(o != n and o != 1 for o, n in zip(old, new[len(new) - nb :])):
                raise ValueError(
                    f"BatchSizeTransform: the env's batch size {tuple(old)} cannot expand to {tuple(new)} (it must "
                    "end the new one, dims of size 1 may grow). Fix: pass a batch_size ending with it, or reshape_fn."
                )

            def fn(t: torch.Tensor) -> torch.Tensor:
                return t.expand(*new, *t.shape[nb:])

        else:
            if new.numel() != old.numel():
                raise ValueError(
                    f"BatchSizeTransform: reshape_fn maps the batch size {tuple(old)} to {tuple(new)}, which holds "
                    "another number of sub-envs. Fix: reshape_fn must keep the sub-envs (reshape, flatten, "
                    "unflatten, squeeze or unsqueeze the batch dims)."
                )

            def fn(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(*new, *t.shape[nb:])

        return _rebatch(spec, nb, new, fn)

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        return self._map_batch(output_spec)

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        return self._map_batch(input_spec)

    # --- data -------------------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        if self.reset_func is not None:
            if self.env_kwarg:
                tensordict_reset = self.reset_func(tensordict, tensordict_reset, env=self._env_of_chain())
            else:
                tensordict_reset = self.reset_func(tensordict, tensordict_reset)
        if self.batch_size is not None:
            if tensordict_reset.batch_size == self.batch_size:
                return tensordict_reset
            return tensordict_reset.expand(self.batch_size).clone()
        return self._reshape(tensordict_reset)

    def _reshape(self, tensordict: TensorDictBase) -> TensorDictBase:
        fn = cast(Callable[[Any], Any], self.reshape_fn)
        return fn(tensordict)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.reshape_fn is not None:
            return self._reshape(tensordict)
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Apply ``reshape_fn`` to ``tensordict`` (no change with ``batch_size``); returns the result."""
        return self._call(tensordict)

    def _has_inverse(self) -> bool:
        return self.reshape_fn is not None

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Bring the env's batch dims back to the parent's (dims after them, e.g. time, are kept)."""
        parent = self._parent_batch
        if self.reshape_fn is None or parent is None:
            return tensordict
        outer = self._new_batch(parent)
        extra = tensordict.batch_size[len(outer) :]
        return tensordict.reshape(*parent, *extra)

    def _reset_env_preprocess(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        return None if tensordict is None else self._inv_call(tensordict)

    def _extra_repr(self) -> str:
        if self.batch_size is not None:
            return f"batch_size={tuple(self.batch_size)}"
        return f"reshape_fn={self.reshape_fn!r}"

    def __repr__(self) -> str:
        return f"BatchSizeTransform({self._extra_repr()})"
