"""Stepping helpers shared by batched envs and collectors.

- :func:`td_from_flat`: a TensorDict from ``{key: tensor}`` without the constructor's checks.
- :class:`StepRecorder`: keeps each step's entries by reference (read with
  ``TensorDict.items()``) and stacks them once per batch, cloning only the entries of a
  writer that reuses its tensors.
- :class:`ActionRunner`: steps an env through a given sequence of actions (open loop,
  e.g. random actions), resetting what ends, with no per-step round trip to a caller.

Examples:
    >>> import torch
    >>> from tdrl.testing import CountingEnv
    >>> env = CountingEnv(max_steps=2)
    >>> actions = td_from_flat({"action": torch.zeros(3, 1, dtype=torch.int64)}, torch.Size([3]))
    >>> data, root = ActionRunner(env).run(env.reset(), actions, 3)
    >>> data["next", "observation"].squeeze(-1), root["observation"]
    (tensor([1., 2., 1.]), tensor([1.]))
"""

from __future__ import annotations

from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._compat import td_flat, td_unchecked
from tdrl._gc import gc_paused  # (re-exported: the collectors import it from here)
from tdrl.envs._validation import _validation
from tdrl.envs.common import EnvBase

__all__ = [
    "td_from_flat",
    "group_dims",
    "set_group_dims",
    "done_groups",
    "end_in_groups",
    "reward_exclusions",
    "StepRecorder",
    "ActionRunner",
    "gc_paused",
]


def td_from_flat(source: dict, batch_size: torch.Size, device: torch.device | None = None) -> TensorDict:
    """A TensorDict from a ``{key: tensor}`` mapping whose keys may be nested tuples, without checks."""
    if any(type(k) is tuple for k in source):
        return TensorDict(source, batch_size=batch_size, device=device)
    return td_unchecked(source, batch_size, device)


def group_dims(*specs: Any) -> list[tuple[tuple, torch.Size]]:
    """``(key, dims after the batch)`` of every sub-Composite with its own dims, e.g. ``("agents",): [n_agents]``.

    A TensorDict built from flat keys (:func:`td_from_flat`) gives its sub-TensorDicts the
    root's batch size only; :func:`set_group_dims` gives them back the group's dims.
    """
    out: list[tuple[tuple, torch.Size]] = []
    seen: set = set()

    def walk(spec: Any, prefix: tuple, ndim: int) -> None:
        for key in spec.keys():
            sub = spec[key]
            if not hasattr(sub, "keys"):
                continue
            extra = sub.shape[ndim:]
            if extra and (*prefix, key) not in seen:
                seen.add((*prefix, key))
                out.append(((*prefix, key), torch.Size(extra)))
            walk(sub, (*prefix, key), len(sub.shape))

    for spec in specs:
        walk(spec, (), len(spec.shape))
    return out


def set_group_dims(td: TensorDictBase, groups: list) -> TensorDictBase:
    """Give the sub-TensorDicts of ``td`` named in ``groups`` (from :func:`group_dims`) their dims, in place."""
    for key, extra in groups:  # outer groups come first: a nested group extends its parent's dims
        sub = td.get(key, None)
        if isinstance(sub, TensorDictBase):
            parent = td if len(key) == 1 else td.get(key[:-1])
            sub.batch_size = torch.Size([*parent.batch_size, *extra])
    return td


def done_groups(done_keys: list) -> list[tuple]:
    """The groups with their own done flag, e.g. ``[("agents",)]`` for ``("agents", "done")``."""
    return [k[:-1] for k in done_keys if isinstance(k, tuple) and len(k) > 1 and k[-1] == "done"]


def end_in_groups(next_td: TensorDictBase, ended: torch.Tensor, groups: list[tuple]) -> None:
    """Set the ``truncated`` and ``done`` flags of every group where the env-level ``ended`` (``[*B, 1]``) is set.

    A step limit that ends the episode at the top level ends it for every agent too: a value
    estimator reading a group's per-agent ``done`` must not bootstrap across the reset.
    """
    for group in groups:
        for name in ("truncated", "done"):
            key = (*group, name)
            value = next_td.get(key, None)
            if value is None:
                continue
            mask = ended.reshape(*ended.shape[:-1], *([1] * (value.ndim - ended.ndim + 1)))
            next_td.set(key, value | mask)


def reward_exclusions(reward_keys: list) -> tuple[set[str], dict[str, list]]:
    """What the next step's root leaves out of ``"next"``: the reward leaves, and only them.

    Returns the top-level reward keys (dropped whole) and, for rewards inside a group such
    as ``("agents", "reward")``, ``{group: [key inside the group]}``: the group itself
    (observations, per-agent done flags) is carried to the next step without its reward.
    """
    top: set[str] = set()
    nested: dict[str, list] = {}
    for key in reward_keys:
        if isinstance(key, str) or len(key) == 1:
            top.add(key if isinstance(key, str) else key[0])
        else:
            nested.setdefault(key[0], []).append(key[1:] if len(key) > 2 else key[1])
    return top, nested


class StepRecorder:
    """Keeps every step's entries by reference and stacks them once per batch.

    Laid out from a first step's TensorDict (nested recorders for sub-TensorDicts), it
    reads each step with ``TensorDict.items()`` (no per-key ``get``). Entries missing at a
    step are zeros; :meth:`guard` clones the entries of a writer that reuses its tensors.
    """

    __slots__ = ("batch", "clone", "lists", "n", "originals", "subs", "zeros")

    def __init__(self, td: TensorDictBase, skip: tuple = ()) -> None:
        self.batch = td.batch_size  # a group's sub-TensorDict has more dims (e.g. [*B, n_agents])
        self.lists: dict[str, list] = {}
        self.subs: dict[str, StepRecorder] = {}
        self.zeros: dict[str, torch.Tensor] = {}
        self.clone: set = set()
        self.originals: dict[str, list] = {}
        for key, value in td.items():
            if key in skip:
                continue
            if isinstance(value, torch.Tensor):
                self.lists[key] = []
                self.zeros[key] = torch.zeros_like(value)
            else:
                self.subs[key] = StepRecorder(cast(TensorDictBase, value))
        self.n = len(self.lists) + len(self.subs)

    def new_batch(self) -> None:
        for lst in self.lists.values():
            lst.clear()
        for sub in self.subs.values():
            sub.new_batch()

    def record(self, td: TensorDictBase, t: int) -> None:
        lists, subs = self.lists, self.subs
        seen = 0
        for key, value in td.items():
            lst = lists.get(key)
            if lst is not None:
                lst.append(value)
                seen += 1
            else:
                sub = subs.get(key)
                if sub is not None:
                    sub.record(cast(TensorDictBase, value), t)  # a sub-recorder's key holds a TensorDict
                    seen += 1
        if seen != self.n:
            self._fill(t)

    def record_and_carry(self, td: TensorDictBase, t: int, skip: set, strip: dict | None = None) -> dict:
        """:meth:`record`, also returning the entries of ``td`` not in ``skip`` (the next step's root).

        One pass over ``td``: a collector reads each step's ``"next"`` once. Sub-TensorDicts
        are shallow-copied in the result, so that writing into the next root (a policy
        writing an action under a nested key) cannot alter the recorded step; a sub-TensorDict
        named in ``strip`` (``{key: [keys inside it]}``, e.g. a group's reward) is carried
        without those entries.
        """
        lists, subs = self.lists, self.subs
        carry = {}
        seen = 0
        for key, value in td.items():
            lst = lists.get(key)
            if lst is not None:
                lst.append(value)
                seen += 1
                if key not in skip:
                    carry[key] = value
                continue
            sub = subs.get(key)
            if sub is not None:
                sub.record(cast(TensorDictBase, value), t)  # a sub-recorder's key holds a TensorDict
                seen += 1
            if key not in skip:
                if isinstance(value, TensorDictBase):
                    inner = strip.get(key) if strip else None
                    carry[key] = value.exclude(*inner) if inner else value.copy()
                else:
                    carry[key] = value
        if seen != self.n:
            self._fill(t)
        return carry

    def _fill(self, t: int) -> None:
        """Entries missing at step ``t`` (e.g. policy outputs during random steps) are zeros."""
        for key, lst in self.lists.items():
            if len(lst) <= t:
                lst.append(self.zeros[key])
        for sub in self.subs.values():
            sub._fill(t)

    def guard(self, checking: bool) -> None:
        """Clone the entries that an env or policy rewrites in place instead of returning anew.

        While ``checking`` (the first steps), every entry of the step is cloned and the
        originals are kept alive, so that a later entry with the same memory address
        proves the writer reuses its tensor; such keys are cloned at every step from then on.
        """
        for key, lst in self.lists.items():
            value = lst[-1]
            if value is self.zeros[key]:
                continue
            if checking:
                originals = self.originals.setdefault(key, [])
                if any(o.data_ptr() == value.data_ptr() for o in originals) and value.numel():
                    self.clone.add(key)
                originals.append(value)
                lst[-1] = value.clone()
            elif key in self.clone:
                lst[-1] = value.clone()
        for sub in self.subs.values():
            sub.guard(checking)

    def stop_checking(self) -> None:
        self.originals.clear()
        for sub in self.subs.values():
            sub.stop_checking()

    def needs_clones(self) -> bool:
        return bool(self.clone) or any(sub.needs_clones() for sub in self.subs.values())

    def leaves(self, prefix: tuple = ()) -> list:
        """``(key, zero entry)`` for every leaf, keys as tuples."""
        out = [((*prefix, key), zero) for key, zero in self.zeros.items()]
        for key, sub in self.subs.items():
            out += sub.leaves((*prefix, key))
        return out

    def restore_group_dims(self, out: TensorDictBase, lead: torch.Size, prefix: tuple = ()) -> None:
        """Give each sub-TensorDict of the stacked ``out`` its own batch dims after ``lead``.

        A group such as ``"agents"`` has batch size ``[*B, n_agents]`` at each step; built from
        flat keys, the stacked batch would only have ``[*B, T]``.
        """
        for key, sub in self.subs.items():
            extra = sub.batch[len(self.batch) :]
            shape = torch.Size([*lead, *extra])
            if extra:
                out.get((*prefix, key)).batch_size = shape
            sub.restore_group_dims(out, shape, (*prefix, key))

    def stack(self, dim: int, out: dict, prefix: tuple = ()) -> None:
        """Stack each key's steps into ``out``, then let go of the steps (they are freed now, not at the next batch)."""
        for key, lst in self.lists.items():
            out[(*prefix, key)] = torch.stack(lst, dim)
            lst.clear()
        for key, sub in self.subs.items():
            sub.stack(dim, out, (*prefix, key))


class ActionRunner:
    """Steps one env through a given sequence of actions (open loop), resetting what ends.

    A batch of random actions does not depend on observations, so a batched env can run
    all of its steps without a round trip per step: in its workers for ParallelEnv.
    """

    def __init__(self, env: EnvBase) -> None:
        self.env = env
        self.direct = type(env).step is EnvBase.step
        self.reward_top, self.reward_nested = reward_exclusions(env.reward_keys)
        self.action_keys = list(env.action_keys)
        self.roots: StepRecorder | None = None
        self.nexts: StepRecorder | None = None
        self.checks = 3
        self.guarded = True

    def run(self, root: TensorDictBase, actions: TensorDictBase, steps: int) -> tuple[TensorDictBase, TensorDictBase]:
        """``steps`` steps from ``root``; returns the stacked steps (time last) and the next root."""
        with gc_paused():  # every step is kept until stacked (see gc_paused)
            return self._run(root, actions, steps)

    def _run(self, root: TensorDictBase, actions: TensorDictBase, steps: int) -> tuple[TensorDictBase, TensorDictBase]:
        env, batch = self.env, self.env.batch_size
        direct = self.direct and not (_validation.actions or _validation.outputs)  # set_validation: env.step checks
        tdim = len(batch)
        seqs = [(k, actions.get(k).unbind(tdim)) for k in self.action_keys]
        if self.roots is not None:
            self.roots.new_batch()
            cast(StepRecorder, self.nexts).new_batch()  # built with roots, at the first step
        for t in range(steps):
            td = root
            for key, seq in seqs:
                td.set(key, seq[t])
            if self.roots is None:
                self.roots = StepRecorder(td, skip=("next", "_reset"))
            self.roots.record(td, t)
            if self.nexts is None:
                nxt = env.step(td).get("next")  # EnvBase.step's checks, once
                self.nexts = StepRecorder(nxt)
            elif direct:
                nxt = env._step(td)
            else:
                nxt = env.step(td).get("next")
            self.nexts.record(nxt, t)
            if self.guarded:
                self._guard()
            src = {k: v for k, v in nxt.items() if k not in self.reward_top}
            for group, inner in self.reward_nested.items():
                if group in src:
                    src[group] = src[group].exclude(*inner)
            root = td_flat(src, batch)  # the step's tensors and sub-TensorDicts, no dicts
            done = src["done"]
            if bool(done.any() if batch else done):
                if batch:
                    root.set("_reset", done.clone())
                    root = env.reset(root)
                else:
                    root = env.reset()
        out: dict = {}
        roots, nexts = cast(StepRecorder, self.roots), cast(StepRecorder, self.nexts)  # the first step built them
        roots.stack(tdim, out)
        nexts.stack(tdim, out, ("next",))
        data = TensorDict({k[0] if len(k) == 1 else k: v for k, v in out.items()}, batch_size=(*batch, steps))
        roots.restore_group_dims(data, data.batch_size)
        nexts.restore_group_dims(data, data.batch_size, ("next",))
        return data, root

    def _guard(self) -> None:
        checking = self.checks > 0
        roots, nexts = cast(StepRecorder, self.roots), cast(StepRecorder, self.nexts)  # run built them
        roots.guard(checking)
        nexts.guard(checking)
        if checking:
            self.checks -= 1
            if not self.checks:
                roots.stop_checking()
                nexts.stop_checking()
                self.guarded = roots.needs_clones() or nexts.needs_clones()
