"""The collector's stepping loop: validated once, then lean per step.

Per step the loop calls the policy on the current root, steps the env, keeps a
reference to every entry of the step (``TensorDict.items()`` over the root and the
``"next"`` entry, no per-key ``get``), and builds the next root from ``"next"``. At the
end of the batch each key's references are stacked once. Envs and tdrl's modules
return new tensors at every step, so keeping references is safe; the first steps
check it (an env that writes into the same tensor each step is cloned from then on).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from tdrl._compat import td_flat, td_pop, td_read, td_write
from tdrl.collectors._compact import stop_recording
from tdrl.collectors._index_actions import IndexActionEncoder, index_action_specs
from tdrl.envs._stepping import (
    StepRecorder,
    done_groups,
    end_in_groups,
    gc_paused,
    reward_exclusions,
    td_from_flat,
)
from tdrl.envs._validation import _validation
from tdrl.envs.common import EnvBase
from tdrl.envs.transforms.next_obs import _delta_layout
from tdrl.modules._lean import call_direct, lean_policy
from tdrl.modules.rnn import check_recurrent_primers

__all__ = ["StepLoop", "NO_ACTION", "BAD_ACTION"]

if TYPE_CHECKING:
    from typing import Protocol

    class _OpenLoopEnv(Protocol):
        """An env that runs a given sequence of actions itself (the batched envs)."""

        def _rollout_actions(
            self, root: TensorDictBase, actions: TensorDictBase
        ) -> tuple[TensorDictBase, TensorDictBase]: ...


NO_ACTION = (
    "{cls}: the policy did not write the action {key!r}. After calling it, the tensordict holds "
    "{keys}. Make the policy write env.action_key ({key!r}), e.g. ProbabilisticActor(..., out_keys=[{key!r}]) "
    "or TensorDictModule(net, in_keys=['observation'], out_keys=[{key!r}])."
)
BAD_ACTION = (
    "{cls}: the policy wrote {key!r} with shape {actual}, but the env expects {expected} "
    "(env batch_size {batch} + action spec shape {spec}). Fix the policy's output size "
    "(e.g. its last layer's out_features) or its in_keys."
)


def _merge_preset(nxt: TensorDictBase, preset: TensorDictBase, keys: list) -> None:
    """``nxt.update(preset)``: the policy's ``"next"`` entries (a recurrent state) over the env's step.

    When ``preset`` holds exactly the tensors ``keys`` found at setup, they are written one
    by one (``update`` walks and checks the whole TensorDict); anything else is ``update``.
    """
    if len(keys) == len(preset.keys()):
        values = [td_read(preset, key) for key in keys]
        if all(isinstance(value, torch.Tensor) for value in values):
            for key, value in zip(keys, values):
                td_write(nxt, key, value)
            return
    nxt.update(preset)


class StepLoop:
    """How a collector's steps run and are recorded; set up on the first step, reused for every batch."""

    def __init__(self, collector: Any) -> None:
        self.c = collector
        env: EnvBase = collector.env
        self.env = env
        self.batch = env.batch_size
        self.single = not self.batch
        policy = lean_policy(collector._policy)  # the same calls, without tensordict's per-call dispatch
        # a module policy runs its forward directly while it has no hooks (checked at each call)
        self.policy = partial(call_direct, policy) if isinstance(policy, nn.Module) else policy
        self.move = collector.policy_device != collector.env_device
        self.smr = type(env).step_and_maybe_reset is not EnvBase.step_and_maybe_reset
        self.direct = not self.smr and type(env).step is EnvBase.step
        self.action_keys = list(env.action_keys)
        self.action_top = {k if isinstance(k, str) else k[0] for k in self.action_keys}
        # the next root drops the reward leaves only: ("agents", "reward") leaves the rest of "agents"
        # NextObservationDelta: ("next", k) is carried to the next root but not recorded, its delta is not carried
        self.delta_layout = _delta_layout(env)
        self.reward_top, self.reward_nested = reward_exclusions([*env.reward_keys, *self.delta_layout.root_keys])
        self.max_steps = collector.max_frames_per_traj
        self.done_groups = done_groups(env.done_keys)  # max_frames_per_traj ends their episodes too
        self.reset_when_done = collector.reset_when_done
        # random actions do not depend on observations: a batched env can run them without a round trip per step
        self.open_loop = (
            hasattr(type(env), "_rollout_actions")
            and self.max_steps is None
            and collector.reset_when_done
            and not self.move
        )
        self.validated = False
        self.truncations = torch.zeros(0)

    # --- the first step: validation and the layout of a batch -------------------------------
    def call_policy(self, td: TensorDictBase) -> TensorDictBase:
        if self.move:
            out = self.policy(td.to(self.c.policy_device))
            return (out if out is not None else td).to(self.c.env_device)
        out = self.policy(td)
        return td if out is None else out

    def check_policy(self, td: TensorDictBase) -> None:
        cls = type(self.c).__name__
        keys = td.keys(True, True)
        for key in self.action_keys:
            if key not in keys:
                raise KeyError(NO_ACTION.format(cls=cls, key=key, keys=sorted(map(str, keys))))
            spec = self.env.full_action_spec[key]
            value = td.get(key)
            if value.shape != spec.shape:
                raise ValueError(
                    BAD_ACTION.format(
                        cls=cls,
                        key=key,
                        actual=tuple(value.shape),
                        expected=tuple(spec.shape),
                        batch=tuple(self.batch),
                        spec=tuple(spec.shape[len(self.batch) :]),
                    )
                )

    def setup(self, root: TensorDictBase) -> None:
        """Run one validated step on a copy of ``root`` and fix the layout of a batch from it.

        The env is reset afterwards by the caller, so the first batch starts from a reset.
        """
        check_recurrent_primers(self.c._policy, self.env, type(self.c).__name__)
        before = set(root.keys())
        with torch.random.fork_rng(devices=[]):  # the probe does not move the caller's random stream
            td = self.call_policy(root.clone())
            index_actions = index_action_specs(td, self.env.full_action_spec, self.action_keys)
            if index_actions:  # an argmax policy for one-hot actions: encode what it writes from now on
                self.policy = IndexActionEncoder(self.policy, index_actions)
                td = IndexActionEncoder(lambda x: x, index_actions)(td)
            self.check_policy(td)
            preset = td.get("next", None)
            if preset is not None:
                td = td.exclude("next")
            td = self.env.step(td)  # EnvBase.step's checks, once
        nxt = td.get("next")
        if preset is not None:
            nxt.update(preset)
        self.root_slots = StepRecorder(td, skip=("next", "_reset"))
        self.next_slots = StepRecorder(nxt)
        compact = (*getattr(self.c, "_compact_next_keys", ()), *self.delta_layout.next_keys)
        if compact:  # compact_obs: carried to the next root, not recorded
            stop_recording(self.next_slots, [k[1:] for k in compact])
        self.next_carry = [k for k in nxt.keys() if k not in self.reward_top]
        self.root_carry = [
            k for k in before if k not in self.next_carry and k not in self.action_top and k not in ("next", "_reset")
        ]
        self.recurrent = list(preset.keys()) if preset is not None else []
        # the env resets the states it declares (a TensorDictPrimer's value); the others restart from zero
        declared = set(self.env.full_observation_spec.keys())
        self.zeroed_at_reset = [k for k in self.recurrent if k not in declared]
        self.carries = bool(self.recurrent or self.root_carry)
        self.validated = True
        self.checks_left = 3
        self.guarded = False

    # --- the loop ----------------------------------------------------------------------------
    def run(self, root: TensorDictBase, steps: int, random_batch: bool) -> tuple[TensorDictBase, TensorDictBase]:
        """Collect ``steps`` steps from ``root``; returns the stacked batch and the next root."""
        with gc_paused():  # the batch's steps are kept until stacked: no garbage for the collector to scan
            return self._run(root, steps, random_batch)

    def _run(self, root: TensorDictBase, steps: int, random_batch: bool) -> tuple[TensorDictBase, TensorDictBase]:
        rs, ns = self.root_slots, self.next_slots
        rs.new_batch()
        ns.new_batch()
        trunc_rec: list | None = [] if self.max_steps is not None else None
        # with action masks in the data (legal moves change per step), random actions are drawn step by step
        per_step_random = random_batch and self.c._random.reads_masks(root)
        actions = self.c._random.draw(steps) if random_batch and not per_step_random else None
        policy = self.c._random if per_step_random else (self.call_policy if self.move else self.policy)
        # under set_validation every step goes through env.step, which checks it (read once per batch)
        checking = _validation.actions or _validation.outputs
        if actions is not None and self.open_loop and not self.recurrent and not checking:
            tdim = len(self.batch)
            seq = td_from_flat({k: v.movedim(0, tdim) for k, v in actions}, torch.Size([*self.batch, steps]))
            data, root = cast("_OpenLoopEnv", self.env)._rollout_actions(root, seq)  # open_loop: it has one
            return self._conform(data, steps), root
        env = self.env
        env_step = env._step
        smr, direct, recurrent = self.smr, self.direct and not checking, self.recurrent
        reward_top, reward_nested = self.reward_top, self.reward_nested
        guarded = self.checks_left > 0 or self.guarded
        for t in range(steps):
            if actions is not None:
                td = root
                for key, value in actions:
                    td.set(key, value[t])
            else:
                out = policy(root)
                td = root if out is None else out
            rs.record(td, t)
            if guarded:
                rs.guard(self.checks_left > 0)
            preset = None
            if recurrent:
                if td is root:  # the collector's own root, recorded above: drop "next" in place
                    preset = td_pop(td, "next")
                else:
                    preset = td.get("next", None)
                    if preset is not None:
                        td = td.exclude("next")
            if smr:
                td, root_after = env.step_and_maybe_reset(td)
                nxt = td.get("next")
            elif direct:
                nxt = env_step(td)
            else:
                nxt = env.step(td).get("next")
            if preset is not None:
                _merge_preset(nxt, preset, recurrent)
            over = None
            if trunc_rec is not None:
                over = self._count_steps(nxt)
                trunc_rec.append(over)
            if smr:
                ns.record(nxt, t)
            else:
                carry = ns.record_and_carry(nxt, t, reward_top, reward_nested)
            if guarded:
                ns.guard(self.checks_left > 0)
                if self.checks_left:
                    self.checks_left -= 1
                    if not self.checks_left:
                        rs.stop_checking()
                        ns.stop_checking()
                        guarded = bool(
                            rs.clone or ns.clone or any(x.clone for x in (*rs.subs.values(), *ns.subs.values()))
                        )
            if smr:
                root = self._after_smr(nxt, root_after, over)
            else:
                root = self._next_root(td, nxt, carry, over)
        self.guarded = guarded
        out = self._stack(steps)
        if trunc_rec is not None:
            self.truncations = torch.stack(trunc_rec, dim=len(self.batch))
        return out, root

    def _count_steps(self, nxt: TensorDictBase) -> torch.Tensor:
        steps = self.c._traj_steps
        steps += 1
        over = steps >= self.max_steps
        if bool(over.any()):
            nxt.set("truncated", nxt.get("truncated") | over)
            nxt.set("done", nxt.get("done") | over)
            if self.done_groups:
                end_in_groups(nxt, over, self.done_groups)
        return over.reshape(self.batch)

    def _next_root(
        self, td: TensorDictBase, nxt: TensorDictBase, src: dict, over: torch.Tensor | None
    ) -> TensorDictBase:
        """The next step's root from ``src`` (the step's "next" entries minus the reward), resetting what ended."""
        for key in self.root_carry:
            value = td.get(key, None)
            if value is not None and key not in src:
                src[key] = value
        root = td_flat(src, self.batch)  # src holds the step's tensors and (copied) sub-TensorDicts, no dicts
        done = src.get("done")
        if done is None:
            done = nxt.get("done")
        if not self.reset_when_done:
            if over is None or not bool(over.any()):
                return root
            done = over.reshape(done.shape)
        if self.single:
            if not bool(done):
                return root
            if self.carries:
                return self._after_reset(self.env.reset(root), None)
            self.c._traj_steps.zero_()
            return self.env.reset()  # nothing of the old root survives a reset
        if not bool(done.any()):
            return root
        mask = done.clone()
        root.set("_reset", mask)
        return self._after_reset(self.env.reset(root), mask)

    def _after_smr(self, nxt: TensorDictBase, root: TensorDictBase, over: torch.Tensor | None) -> TensorDictBase:
        done = nxt.get("done")
        if self.recurrent:
            any_done = bool(done.any())
            for key in self.recurrent:
                value = nxt.get(key)
                reset_value = root.get(key, None) if any_done and key not in self.zeroed_at_reset else None
                if reset_value is not None:  # the env just reset these sub-envs' state to its primer's value
                    m = done.reshape(*self.batch, *([1] * (value.ndim - len(self.batch))))
                    value = torch.where(m, reset_value, value)
                root.set(key, value)
        if over is not None and bool(over.any()):
            extra = over.reshape(done.shape) & ~done
            if bool(extra.any()):
                root.set("_reset", extra)
                root = self.env.reset(root)
                done = done | extra
        if not bool(done.any()):
            return root
        return self._after_reset(root, done)

    def _after_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        """Zero the carried recurrent state and the step counters of the envs that were reset."""
        steps = self.c._traj_steps
        if mask is None:
            steps.zero_()
        else:
            steps.masked_fill_(mask.reshape(steps.shape), 0)
        for key in self.zeroed_at_reset:
            value = root.get(key, None)
            if value is None:
                continue
            if mask is None:
                root.set(key, torch.zeros_like(value))
            else:
                m = mask.reshape(*self.batch, *([1] * (value.ndim - len(self.batch))))
                root.set(key, value.masked_fill(m, 0))
        return root

    def _conform(self, data: TensorDictBase, steps: int) -> TensorDictBase:
        """``data`` with the batch layout of the closed-loop path (policy outputs as zeros)."""
        tdim = len(self.batch)
        src = {}
        for prefix, slots in (((), self.root_slots), (("next",), self.next_slots)):
            for key, zero in slots.leaves(prefix):
                value = data.get(key, None)
                if value is None:
                    value = torch.zeros((*self.batch, steps, *zero.shape[tdim:]), dtype=zero.dtype, device=zero.device)
                src[key] = value
        out = TensorDict({k[0] if len(k) == 1 else k: v for k, v in src.items()}, batch_size=(*self.batch, steps))
        self.root_slots.restore_group_dims(out, out.batch_size)
        self.next_slots.restore_group_dims(out, out.batch_size, ("next",))
        return out

    def _stack(self, steps: int) -> TensorDictBase:
        dim = len(self.batch)
        src: dict = {}
        self.root_slots.stack(dim, src)
        self.next_slots.stack(dim, src, ("next",))
        out = TensorDict({k[0] if len(k) == 1 else k: v for k, v in src.items()}, batch_size=(*self.batch, steps))
        self.root_slots.restore_group_dims(out, out.batch_size)
        self.next_slots.restore_group_dims(out, out.batch_size, ("next",))
        return out
