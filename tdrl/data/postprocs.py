"""Post-processing of collected batches: :class:`MultiStep` (n-step returns).

A post-processor maps a collector batch (time along the last batch dim) to another; pass
it as a collector's ``postproc=``, or as a replay-buffer transform: in
``ReplayBuffer(transform=MultiStep(...))`` it acts on what ``extend`` writes (a collector
batch), never on samples, which are not trajectories. It keeps nothing from one batch to
the next; :class:`~tdrl.envs.transforms.MultiStepTransform` (a replay-buffer transform)
holds a batch's last steps back until the next ``extend`` gives them their full windows.
"""

from __future__ import annotations

from typing import cast

import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl.specs import NestedKey

__all__ = ["MultiStep"]

_END_KEYS = ("done", "truncated", "terminated")
_BAD_DONE_SHAPE = (
    "MultiStep: ('next', 'done') has shape {done}, the batch has batch_size {batch}; MultiStep needs "
    "one done flag per step (shape [*B, T] or [*B, T, 1], time along the last batch dim). Fix: pass "
    "a collector batch or a rollout (not a flat sample of unrelated transitions)."
)
_MISSING_KEY = (
    "MultiStep: the batch has no {key} entry under 'next' (its {what}); it has {found}. Fix: name the batch's "
    "keys, e.g. MultiStepTransform(n_steps, gamma, reward_keys=[('agents', 'reward')]) for a group's rewards "
    "(or set MultiStep's reward_keys / done_key)."
)


class MultiStep(nn.Module):
    """Rewrites each step of a trajectory batch as an ``n_steps`` transition.

    For step ``t`` of a batch (time along the last batch dim), with ``k`` the number of
    steps from ``t`` to the end of its trajectory in the batch (its own step included)
    capped at ``n_steps``:

    - ``("next", "reward")`` becomes ``sum(gamma**i * r[t + i] for i < k)``; the original
      is kept as ``("next", "original_reward")``;
    - every other ``"next"`` entry (observation, step count, ...) becomes that of step
      ``t + k - 1``, the last step summed;
    - ``"steps_to_next_obs"`` holds ``k`` and ``"gamma"`` holds ``gamma ** k`` (value
      estimators and losses discount the bootstrap by it); ``"nonterminal"`` is false
      where ``k == 1`` (the last step of a trajectory in the batch).

    An episode end (``("next", "done")``) inside the window stops the sum there. A
    truncated end still bootstraps from the observation it reached; a terminated one does
    not: ``("next", "terminated")`` is that of step ``t + k - 1``. Here tdrl departs from
    TorchRL 0.14.1 on purpose: TorchRL leaves ``("next", "terminated")`` at step ``t``'s
    value, so the target of a step fewer than ``n_steps`` before a termination bootstraps
    from the terminal observation. ``("next", "done")`` and ``("next", "truncated")`` stay
    as they were (as in TorchRL), so trajectory boundaries do not move. The last steps of
    a batch get shorter windows (the following steps are in the next batch: nothing is
    kept across calls); in a replay buffer, :class:`~tdrl.envs.transforms.MultiStepTransform`
    holds them back until the next ``extend`` and writes them with full windows.

    Args:
        gamma: discount factor, in ``(0, 1]``.
        n_steps: the longest look-ahead (``1``: one-step transitions, rewards unchanged).

    Raises:
        ValueError: for ``n_steps < 1`` or ``gamma`` outside ``(0, 1]``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> done = torch.tensor([False, False, True, False, False]).view(1, 5, 1)
        >>> data = TensorDict({"observation": torch.arange(5.0).view(1, 5, 1),
        ...     "next": {"observation": torch.arange(1.0, 6.0).view(1, 5, 1), "reward": torch.ones(1, 5, 1),
        ...              "done": done, "terminated": done.clone(), "truncated": torch.zeros_like(done)}}, [1, 5])
        >>> out = MultiStep(gamma=0.5, n_steps=2)(data)
        >>> out["next", "reward"].flatten().tolist()
        [1.5, 1.5, 1.0, 1.5, 1.0]
        >>> out["next", "observation"].flatten().tolist(), out["steps_to_next_obs"].flatten().tolist()
        ([2.0, 3.0, 3.0, 5.0, 5.0], [2, 2, 1, 2, 1])
        >>> out["next", "terminated"].flatten().tolist()  # step 1's window ends with the termination
        [False, True, True, False, False]
    """

    def __init__(self, gamma: float, n_steps: int) -> None:
        super().__init__()
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"MultiStep: n_steps must be a positive integer, got {n_steps!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"MultiStep: gamma must lie in (0, 1], got {gamma!r}")
        self.gamma = gamma
        self.n_steps = n_steps
        self.register_buffer("gammas", torch.tensor([gamma**i for i in range(n_steps)], dtype=torch.float))
        self.done_key: NestedKey = "done"
        self.done_keys: tuple[NestedKey, ...] = _END_KEYS
        self.reward_keys: tuple[NestedKey, ...] = ("reward",)
        self.mask_key: NestedKey | None = ("collector", "mask")

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Returns a new TensorDict (a shallow copy: the root entries are shared) with
        the n-step entries; ``tensordict`` itself is left as it was."""
        out = tensordict.clone(False)
        if out.batch_dims < 1:
            raise ValueError(_BAD_DONE_SHAPE.format(done="(missing)", batch=list(out.batch_size)))
        nxt = out.get("next", None)
        found = [] if nxt is None else list(nxt.keys(include_nested=True, leaves_only=True))
        for key, what in [(self.done_key, "done_key"), *((k, "reward_keys") for k in self.reward_keys)]:
            if nxt is None or not isinstance(nxt.get(key, None), torch.Tensor):
                raise KeyError(_MISSING_KEY.format(key=repr(key), what=what, found=found))
        done = nxt.get(self.done_key)
        batch = out.batch_size
        if done.shape == (*batch, 1):
            done = done.squeeze(-1)
        elif done.shape != batch:
            raise ValueError(_BAD_DONE_SHAPE.format(done=list(done.shape), batch=list(batch)))
        done = done.bool()
        steps = done.shape[-1]
        t = torch.arange(steps, device=done.device)
        # the last step of each step's trajectory inside the batch: the first done at or after it
        ends = torch.where(done, t, torch.full_like(t, steps - 1))
        ends = ends.flip(-1).cummin(-1).values.flip(-1)
        count = torch.clamp_max(ends - t + 1, self.n_steps)  # k: the steps summed
        last = t + count - 1

        mask = None if self.mask_key is None else out.get(self.mask_key, None)
        summed = [self._discounted_sum(nxt.get(key), count) for key in self.reward_keys]
        moved = nxt.exclude(*self.reward_keys, *self.done_keys)
        gathered = moved.gather(-1, last) if len(moved.keys()) else None
        terminated = nxt.get("terminated", None)
        for key, reward in zip(self.reward_keys, summed):
            nxt.rename_key_(key, "original_reward")
            nxt.set(key, reward)
        if gathered is not None:
            nxt.update(gathered)
        if terminated is not None:
            index = last.reshape(*last.shape, *([1] * (terminated.ndim - last.ndim))).expand_as(terminated)
            nxt.set("terminated", terminated.gather(last.ndim - 1, index))
        out.set("steps_to_next_obs", count)
        out.set("gamma", self.gamma**count)
        nonterminal = count != 1
        if mask is not None:
            nonterminal = nonterminal & mask.reshape(nonterminal.shape).bool()
        out.set("nonterminal", nonterminal)
        return out

    #: a replay buffer applies this transform to what is written, never to samples
    _applies_on_write = True

    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Sampled data passes unchanged (in a replay buffer, n-step returns are computed on
        ``extend``)."""
        return tensordict

    def _discounted_sum(self, reward: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """``sum(gamma**i * reward[t + i] for i < count[t])`` along the time dim of ``count``."""
        tdim = count.ndim - 1
        extra = reward.ndim - count.ndim  # feature dims after time (e.g. the trailing 1)
        moved = reward.movedim(tdim, -1)  # [*B, *F, T]
        padded = torch.nn.functional.pad(moved, (0, self.n_steps - 1))
        windows = padded.unfold(-1, self.n_steps, 1)  # [*B, *F, T, n]
        gammas = cast(torch.Tensor, self.gammas).to(device=reward.device, dtype=reward.dtype)
        within = torch.arange(self.n_steps, device=count.device) < count.unsqueeze(-1)  # [*B, T, n]
        within = within.reshape(*count.shape[:-1], *([1] * extra), *within.shape[-2:])
        weights = torch.where(within, gammas, torch.zeros((), dtype=reward.dtype, device=reward.device))
        return (windows * weights).sum(-1).movedim(-1, tdim)

    def __repr__(self) -> str:
        return f"MultiStep(gamma={self.gamma}, n_steps={self.n_steps})"
