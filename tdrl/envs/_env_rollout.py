"""``EnvBase.rollout``: run steps with a policy (or random actions) and stack them along time.

:class:`_EnvRollouts` is a mixin of :class:`~tdrl.envs.EnvBase`. A backend may offer a
policy-free rollout without per-step TensorDicts (``_rollout_fast``); otherwise each step
goes through ``env.step`` and is written into a preallocated TensorDict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from tensordict import TensorDictBase

from tdrl.envs._validation import _validation
from tdrl.envs.utils import step_mdp

if TYPE_CHECKING:
    import torch

    from tdrl.envs.common import EnvBase

__all__ = ["_EnvRollouts"]


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
            from tdrl.modules._lean import lean_policy  # (tdrl.modules imports tdrl.envs)
            from tdrl.modules.rnn import check_recurrent_primers

            check_recurrent_primers(policy, self, "rollout")
            policy = lean_policy(policy)  # the same calls, without tensordict's per-call dispatch
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
        writers: list = []
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
                writers = [(key, out.get(key)) for key in td.keys(True, True)]
            if not self._write_step(writers, td, t, time_dim):
                out[(slice(None),) * time_dim + (t,)] = td
            done = td.get(("next", "done"))
            if (break_when_any_done and done.any()) or (break_when_all_done and done.all()):
                steps = t + 1
                break
            if t < max_steps - 1:
                if break_when_any_done:
                    td = step_mdp(stepped, reward_keys=self.reward_keys)
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

    @staticmethod
    def _write_step(writers: list, td: TensorDictBase, t: int, time_dim: int) -> bool:
        leaves = dict(td.items(True, True))  # one walk of the tree, not one nested get per leaf
        if len(writers) != len(leaves):
            return False
        for key, dst in writers:
            src = leaves.get(key)
            if src is None or src.shape != dst.shape[:time_dim] + dst.shape[time_dim + 1 :]:
                return False
            dst.select(time_dim, t).copy_(src)
        return True
