"""``EnvBase.rollout``: run steps with a policy (or random actions) and stack them along time.

:class:`_EnvRollouts` is a mixin of :class:`~tdrl.envs.EnvBase`. A backend may offer a
policy-free rollout without per-step TensorDicts (``_rollout_fast``); otherwise each step
goes through ``env.step`` and is written into a preallocated TensorDict.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._compat import td_entries, td_flat
from tdrl.data.replay_buffers._storage_base import _NUMPY_DTYPES
from tdrl.envs._validation import _validation
from tdrl.envs.utils import step_mdp

if TYPE_CHECKING:
    import numpy as np

    from tdrl.envs.common import EnvBase

__all__ = ["_EnvRollouts", "next_root"]

# a step's entry of these dtypes is written into the rollout's CPU buffer through numpy: one
# assignment (~0.5 us) instead of torch's select + copy_ (two dispatched ops, ~4 us); same bytes
_NUMPY_WRITE_DTYPES = frozenset(_NUMPY_DTYPES - {torch.complex64, torch.complex128})


def _numpy_view(dst: torch.Tensor) -> np.ndarray | None:
    """``dst`` as a numpy array sharing its memory, where numpy can write it as torch would; else None."""
    if type(dst) is not torch.Tensor or not dst.is_cpu or dst.requires_grad or dst.dtype not in _NUMPY_WRITE_DTYPES:
        return None
    try:
        return dst.numpy()
    except RuntimeError:  # (a conjugate or negative view)
        return None


def next_root(stepped: TensorDictBase, reward_keys: list) -> TensorDictBase:
    """``step_mdp(stepped, reward_keys=reward_keys)``: the root of the step after ``stepped``.

    When ``"next"`` holds tensors only, the rewards are top-level keys and the root's other
    entries are tensors on the same batch and device, the result is built in one pass over
    each (the same entries, in the same order, sharing the same tensors); anything else goes
    through :func:`~tdrl.envs.utils.step_mdp`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"observation": torch.zeros(1), "action": torch.ones(1)}, [])
        >>> td["next"] = TensorDict({"observation": torch.ones(1), "reward": torch.ones(1)}, [])
        >>> sorted(next_root(td, ["reward"]).keys())
        ['observation']
    """
    nxt = stepped.get("next", None)
    if (
        type(nxt) is TensorDict
        and type(stepped) is TensorDict
        and nxt.batch_size == stepped.batch_size
        and nxt.device == stepped.device
        and all(type(k) is str for k in reward_keys)
    ):
        src = {}
        for key, value in nxt.items():
            if not isinstance(value, torch.Tensor):
                break
            if key not in reward_keys:
                src[key] = value
        else:
            for key, value in stepped.items():
                if key in _NOT_CARRIED or key in src:
                    continue
                if not isinstance(value, torch.Tensor):
                    break
                src[key] = value
            else:
                return td_flat(src, nxt.batch_size, nxt.device)
    return step_mdp(stepped, reward_keys=reward_keys)


_NOT_CARRIED = ("action", "next")  # step_mdp's default exclusions besides the reward


class _EnvRollouts:
    """The rollouts of :class:`~tdrl.envs.EnvBase` (a mixin: EnvBase holds the state)."""

    if TYPE_CHECKING:
        batch_size: torch.Size
        batch_locked: bool

        @property
        def batch_dims(self) -> int: ...

        @property
        def reward_keys(self) -> list: ...

        def reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase: ...

        def step(self, tensordict: TensorDictBase) -> TensorDictBase: ...

        def rand_action(self, tensordict: TensorDictBase | None = None) -> TensorDictBase: ...

        def _next_root(self, tensordict: TensorDictBase) -> TensorDictBase: ...

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
        """Run up to ``max_steps`` steps and stack them along a new last batch dim.

        Args:
            max_steps: the number of steps.
            policy: reads the root and writes the action; ``None`` draws random actions
                from the action spec.
            callback: called as ``callback(env, td)`` after each step.
            auto_reset: reset before the first step (else ``tensordict`` is the start).
            break_when_any_done: stop after the first step where any sub-env is done; when
                False, done sub-envs are reset and the rollout goes on.
            tensordict: the starting TensorDict (with ``auto_reset=False``), or the input
                of the first reset.
            return_contiguous: kept for TorchRL compatibility; the result is always one
                tensor per key.
            break_when_all_done: stop when every sub-env is done.
            set_truncated: mark the last step as truncated (and done) if it is not done.

        Returns:
            A TensorDict of batch size ``[*env.batch_size, steps]`` with a ``"next"`` entry.

        Raises:
            ValueError: ``max_steps`` < 1, or ``auto_reset=False`` without a tensordict.
        """
        if max_steps < 1:
            raise ValueError(f"rollout: max_steps must be >= 1, got {max_steps}.")
        if auto_reset:
            td = self.reset(tensordict)
        elif tensordict is None:
            raise ValueError("rollout(auto_reset=False) needs tensordict= the step to start from (e.g. env.reset()).")
        else:
            td = tensordict
        fast = None
        # without batch dims "all done" is "done"; with them the fast paths, which stop on any, do not apply
        all_done = break_when_all_done and not break_when_any_done and bool(self.batch_size)
        if policy is None and callback is None and not set_truncated and not _validation.outputs and not all_done:
            # steps without env.step's checks
            fast = self._rollout_fast(td, max_steps, break_when_any_done or break_when_all_done)
        if fast is not None:
            return fast
        if policy is not None:
            from tdrl.modules._lean import call_direct, lean_policy  # (tdrl.modules imports tdrl.envs)
            from tdrl.modules.rnn import check_recurrent_primers

            check_recurrent_primers(policy, self, "rollout")
            policy = lean_policy(policy)  # the same calls, without tensordict's per-call dispatch
            if isinstance(policy, torch.nn.Module):  # its forward, unless hooks or compiling need __call__
                policy = partial(call_direct, policy)
        return self._rollout_loop(
            td, max_steps, policy, callback, break_when_any_done, break_when_all_done, set_truncated
        )

    def _rollout_fast(self, td: TensorDictBase, max_steps: int, break_when_any_done: bool) -> TensorDictBase | None:
        """Backends may run a policy-free rollout without per-step TensorDicts; None = not supported."""
        return None

    def _rollout_loop(self, td, max_steps, policy, callback, break_when_any_done, break_when_all_done, set_truncated):
        from tdrl.envs.transforms.next_obs import _delta_layout  # (tdrl.envs.transforms imports tdrl.envs)

        layout = _delta_layout(self)  # NextObservationDelta: keep ("next", "delta", k), not ("next", k)
        out = None
        writer: _StepWriter | None = None
        # time goes after the data's batch dims: the env's, or any a non-batch-locked env is given
        time_dim = self.batch_dims if self.batch_locked else td.batch_dims
        steps = max_steps
        for t in range(max_steps):
            td = policy(td) if policy is not None else self.rand_action(td)
            preset = td.get("next", None)  # what the policy wrote for the next step (its recurrent state)
            td = stepped = self.step(td)
            if preset is not None:
                td.get("next").update(preset)
            if layout.next_keys:
                td = layout.recorded(stepped)
            if callback is not None:
                callback(self, td)
            if out is None:
                out = td.unsqueeze(time_dim).expand(*td.batch_size[:time_dim], max_steps).clone()
                writer = _StepWriter(out, td, time_dim)
            if not cast(_StepWriter, writer).write(td, t):  # built with out, at the first step
                out[(slice(None),) * time_dim + (t,)] = td
            done = td.get(("next", "done"))
            if (break_when_any_done and done.any()) or (break_when_all_done and done.all()):
                steps = t + 1
                break
            if t < max_steps - 1:
                if break_when_any_done:
                    td = next_root(stepped, self.reward_keys)
                else:
                    td = self._next_root(stepped)
                td = layout.next_root(td)
        out = cast(TensorDictBase, out)  # rollout checked max_steps >= 1, so the first step built it
        if steps < max_steps:
            out = out[(slice(None),) * time_dim + (slice(0, steps),)].clone()
        if set_truncated:
            last = (slice(None),) * time_dim + (-1,)
            for key in ("truncated", "done"):
                if ("next", key) in out.keys(True, True):
                    out.get(("next", key))[last] = True
        return out


class _StepWriter:
    """Writes each step of a rollout into the buffers laid out from its first step.

    The layout is read once: for the step's root and each sub-TensorDict (``"next"``, a
    group), its number of entries and, per tensor entry, the buffer, the buffer's numpy view
    (or None) and the shape the entry must have. Each step then reads the entry dicts of its
    TensorDicts directly (no walk of the tree per step). An entry of the buffer's dtype, on
    CPU and outside autograd is written through numpy (the same bytes as ``copy_``); any other
    through ``select(time_dim, t).copy_``. A step laid out differently (an entry missing,
    added or of another shape, a TensorDict that is not a plain one) is not written:
    :meth:`write` returns False and the caller assigns the step with TensorDict indexing,
    which says what does not fit.
    """

    __slots__ = ("nodes", "time_dim")

    def __init__(self, out: TensorDictBase, first: TensorDictBase, time_dim: int) -> None:
        self.time_dim = time_dim
        # (path to the sub-TensorDict, its entry count, [(key, buffer, numpy view, step shape)]);
        # None: the first step holds something other than tensors and plain TensorDicts
        self.nodes: list | None = []
        self._lay_out(out, first, ())

    def _lay_out(self, out: TensorDictBase, td: TensorDictBase, path: tuple) -> None:
        entries = td_entries(td)
        if entries is None or self.nodes is None:
            self.nodes = None
            return
        leaves = []
        for key, value in entries.items():
            if type(value) is torch.Tensor:
                dst = out.get((*path, key))
                shape = dst.shape[: self.time_dim] + dst.shape[self.time_dim + 1 :]
                leaves.append((key, dst, _numpy_view(dst), shape))
            elif isinstance(value, TensorDictBase):
                self._lay_out(out, value, (*path, key))
            else:
                self.nodes = None
                return
        if self.nodes is not None:
            self.nodes.append((path, len(entries), leaves))

    def write(self, td: TensorDictBase, t: int) -> bool:
        """Write step ``t``; False (nothing or part written) if its layout is not the first step's."""
        nodes = self.nodes
        if nodes is None:
            return False
        time_dim = self.time_dim
        row = (slice(None),) * time_dim + (t,)
        for path, count, leaves in nodes:
            entries = td_entries(td)
            for key in path:
                entries = td_entries(entries.get(key)) if entries is not None else None
            if entries is None or len(entries) != count:
                return False
            for key, dst, dst_np, shape in leaves:
                src = entries.get(key)
                if not isinstance(src, torch.Tensor) or src.shape != shape:
                    return False
                if (
                    dst_np is not None
                    and type(src) is torch.Tensor
                    and src.dtype is dst.dtype
                    and src.is_cpu
                    and not src.requires_grad
                ):
                    try:
                        dst_np[row] = src.numpy()
                        continue
                    except RuntimeError:  # (a conjugate or negative view): torch's copy below
                        pass
                dst.select(time_dim, t).copy_(src)
        return True
