"""Transforms that depend on the position in an episode: StepCounter, InitTracker, CatFrames, FrameSkipTransform.

Their state travels in the TensorDict (the root holds the step count, the frame stack,
...), so a reset of some sub-envs of a batched env restarts exactly those. (CatFrames
keeps its stack inside itself when a later transform rewrites the stacked entry.) Called on a
stored trajectory (time along the last batch dim), ``forward`` recomputes what stepping
would have written, taking the first step and every step after a ``("next", "done")``
as an episode start.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=100), StepCounter(max_steps=3))
    >>> ro = env.rollout(7, break_when_any_done=False)
    >>> ro["step_count"].squeeze(-1)
    tensor([0, 1, 2, 0, 1, 2, 0])
    >>> ro["next", "truncated"].squeeze(-1)
    tensor([False, False,  True, False, False,  True, False])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read, td_write
from tdrl.data.replay_buffers._sampling import SampleContext, current_sample_context, sampling_off
from tdrl.envs._stepping import done_groups, end_in_groups
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.transforms import Transform, _slot, _unravel
from tdrl.specs import Bounded, Categorical, Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["StepCounter", "InitTracker", "CatFrames", "FrameSkipTransform"]

_NOT_FROM_RESET = (
    "{name}: the tensordict passed to step has no {key!r} entry, which reset writes. Fix: start from "
    "td = env.reset() and move to the next step with step_mdp (or env.step_and_maybe_reset)."
)


_NOT_RESET_INSIDE = (
    "CatFrames: step called before any reset; the stack of {key!r} is kept inside the transform (a later transform "
    "rewrites the stacked entry) and starts at a reset. Fix: call env.reset() first."
)


def _trajectory_starts(tensordict: TensorDictBase, name: str) -> tuple[torch.Tensor, int]:
    """Episode starts ``[*B, T]`` (bool) of a trajectory: the first step and each step after a done."""
    if tensordict.batch_dims < 1:
        raise ValueError(
            f"{name}.forward needs a trajectory with time along the last batch dim; got batch_size "
            f"{tuple(tensordict.batch_size)}. Fix: call it on a rollout (or a slice of one)."
        )
    done = tensordict.get(("next", "done"), None)
    if done is None:
        raise KeyError(
            f"{name}.forward needs ('next', 'done') to find episode boundaries; the tensordict has keys "
            f"{sorted(map(str, tensordict.keys(True, True)))}."
        )
    tdim = tensordict.batch_dims - 1
    done = done.reshape(tensordict.batch_size)
    starts = torch.ones_like(done, dtype=torch.bool)
    steps = done.shape[tdim]
    if steps > 1:
        starts.narrow(tdim, 1, steps - 1).copy_(done.narrow(tdim, 0, steps - 1))
    return starts, tdim


def _last_start(starts: torch.Tensor, tdim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each step, the time index of its episode's start, and the time index itself."""
    steps = starts.shape[tdim]
    t = torch.arange(steps, device=starts.device).view(steps, *([1] * (starts.ndim - tdim - 1)))
    t = t.expand_as(starts)
    return torch.where(starts, t, torch.zeros_like(t)).cummax(tdim).values, t


class StepCounter(Transform):
    """Count the steps since reset in ``step_count``; with ``max_steps``, truncate there.

    The root holds the count of the current step (0 after reset) and ``"next"`` the
    count after the step. When the count reaches ``max_steps``, ``("next", "truncated")``
    and (with ``update_done``) ``("next", "done")`` are set, so the episode ends; so are
    the ``truncated``/``done`` flags of a group of agents (``("agents", "done")``).

    Args:
        max_steps: the episode length at which to truncate (None: only count).
        truncated_key: the truncation flag to set.
        step_count_key: where to write the count.
        update_done: also set ``"done"`` on truncation.

    Raises:
        ValueError: when ``max_steps`` is not a positive integer.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=2), StepCounter())
        >>> env.rollout(5)["next", "step_count"].squeeze(-1)
        tensor([1, 2])
    """

    def __init__(
        self,
        max_steps: int | None = None,
        truncated_key: str = "truncated",
        step_count_key: str = "step_count",
        update_done: bool = True,
    ) -> None:
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"StepCounter: max_steps must be a positive int or None, got {max_steps!r}.")
        super().__init__()
        self.max_steps = max_steps
        self.truncated_key = _unravel(truncated_key)
        self.step_count_key = _unravel(step_count_key)
        self.update_done = update_done
        self._groups: list[tuple] = []

    @property
    def time_vectorizable(self) -> bool:  # type: ignore[override]  # read-only here; the base's is a class flag
        return self.max_steps is None  # truncating changes where episodes end: it must act while stepping

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        done = td_read(tensordict_reset, "done")
        # zeros_like: half the cost of torch.zeros(shape, dtype=, device=) (no size and device arguments to parse)
        td_write(tensordict_reset, self.step_count_key, torch.zeros_like(done, dtype=torch.int64))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        count = td_read(tensordict, self.step_count_key)
        if count is None:
            raise KeyError(_NOT_FROM_RESET.format(name="StepCounter", key=self.step_count_key))
        count = count + 1 if count.dtype is torch.bool else count + self._one(count)  # (bool + 1 is int64)
        td_write(next_tensordict, self.step_count_key, count)
        if self.max_steps is not None:
            truncated = count >= self.max_steps
            previous = next_tensordict.get(self.truncated_key, None)
            if previous is not None:
                truncated = truncated | previous
            next_tensordict.set(self.truncated_key, truncated)
            if self.update_done:
                next_tensordict.set("done", next_tensordict.get("done") | truncated)
                if self._groups and bool(truncated.any()):
                    end_in_groups(next_tensordict, truncated, self._groups)
        return next_tensordict

    def _one(self, count: torch.Tensor) -> torch.Tensor:
        """A 0-dim 1 of ``count``'s dtype and device: ``count + one`` is ``count + 1`` (same dtype, shape and
        values) without wrapping the Python scalar at every step (~1.3 us of a 2.9 us add)."""
        one = self.__dict__.get("_one_cache")
        if one is None or one.dtype is not count.dtype or one.device != count.device:
            one = torch.ones((), dtype=count.dtype, device=count.device)
            self.__dict__["_one_cache"] = one  # (not nn.Module's setattr: not a buffer, not saved)
        return one

    def _carried_keys(self) -> list:
        return [self.step_count_key]

    def _rewritten_keys(self) -> set:
        return {self.step_count_key}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write the step counts of a trajectory (time along the last batch dim) at the root and under ``"next"``."""
        starts, tdim = _trajectory_starts(tensordict, "StepCounter")
        last, t = _last_start(starts, tdim)
        count = (t - last).unsqueeze(-1)
        tensordict.set(self.step_count_key, count)
        tensordict.get("next").set(self.step_count_key, count + 1)
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        done_spec = _slot(output_spec, "full_done_spec")
        if "done" not in done_spec:
            raise KeyError(
                f"StepCounter needs a 'done' entry in the env's done spec, which has {done_spec.keys(True)}."
            )
        shape, device = done_spec["done"].shape, done_spec["done"].device
        self._groups = done_groups(done_spec.keys(True, True))  # their flags end with the env's
        _slot(output_spec, "full_observation_spec")[self.step_count_key] = Bounded(
            0, torch.iinfo(torch.int64).max, shape=shape, dtype=torch.int64, device=device
        )
        if self.max_steps is not None and self.truncated_key not in done_spec:
            done_spec[self.truncated_key] = Categorical(2, shape=shape, dtype=torch.bool, device=device)
        return output_spec

    def __repr__(self) -> str:
        return f"StepCounter(max_steps={self.max_steps})"


class InitTracker(Transform):
    """Write ``is_init``: True on the first step of an episode (after reset), False after.

    Recurrent policies read it to reset their hidden state.

    Args:
        init_key: the entry to write.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=2), InitTracker())
        >>> env.rollout(4, break_when_any_done=False)["is_init"].squeeze(-1)
        tensor([ True, False,  True, False])
    """

    def __init__(self, init_key: NestedKey = "is_init") -> None:
        super().__init__()
        self.init_key = _unravel(init_key)

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        done = tensordict_reset.get("done")
        tensordict_reset.set(self.init_key, torch.ones_like(done, dtype=torch.bool))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        done = td_read(next_tensordict, "done")
        if done is None:
            done = next_tensordict.get("done")  # (the KeyError naming the key)
        td_write(next_tensordict, self.init_key, torch.zeros_like(done, dtype=torch.bool))
        return next_tensordict

    def _rewritten_keys(self) -> set:
        return {self.init_key}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Mark the episode starts of a trajectory (time along the last batch dim)."""
        starts, _ = _trajectory_starts(tensordict, "InitTracker")
        tensordict.set(self.init_key, starts.unsqueeze(-1))
        tensordict.get("next").set(self.init_key, torch.zeros_like(starts).unsqueeze(-1))
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        done = _slot(output_spec, "full_done_spec")["done"]
        _slot(output_spec, "full_observation_spec")[self.init_key] = Categorical(
            2, shape=done.shape, dtype=torch.bool, device=done.device
        )
        return output_spec

    def __repr__(self) -> str:
        return f"InitTracker(init_key={self.init_key!r})"


class CatFrames(Transform):
    """Stack the last ``N`` frames of an entry along ``dim``; stacks restart at each reset.

    After a reset the stack is the first frame repeated (``padding="same"``) or
    ``padding_value`` frames followed by it (``padding="constant"``), so a stack never
    holds frames of two episodes.

    On an env, the stack travels in the TensorDict: each step reads the root's stack and
    appends the new frame, so stepping from any root continues that root's episode. When
    a later transform of the chain rewrites or drops the stack (``ObservationNorm`` on the
    same key, as in TorchRL's DQN tutorial), the raw stack is kept inside the transform
    instead, one row per sub-env (a partial reset restarts only the rows it resets), as
    TorchRL's CatFrames keeps it; each step then continues from the last step or reset
    of the env, and policy-free rollouts take the per-step road.

    Args:
        N: how many frames to stack.
        dim: the (negative) feature dim to concatenate along, e.g. ``-3`` for ``[C, H, W]``
            images, ``-1`` for vectors.
        in_keys: the entries to stack (default ``["pixels"]``).
        out_keys: where to write the stacks (default ``in_keys``).
        padding: ``"same"`` or ``"constant"``.
        padding_value: the value of padding frames with ``padding="constant"``.

    Raises:
        ValueError: for ``N < 1``, a non-negative ``dim`` or an unknown ``padding``.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=2), CatFrames(N=3, dim=-1, in_keys=["observation"]))
        >>> env.rollout(3, break_when_any_done=False)["next", "observation"]
        tensor([[0., 0., 1.],
                [0., 1., 2.],
                [0., 0., 1.]])

        Normalizing the stacks afterwards (``obs * scale + loc``; the raw stacks stay inside):

        >>> from tdrl.envs import Compose, ObservationNorm
        >>> stack = CatFrames(N=3, dim=-1, in_keys=["observation"])
        >>> env = TransformedEnv(CountingEnv(max_steps=5), Compose(stack, ObservationNorm(loc=0.0, scale=10.0)))
        >>> env.rollout(3)["next", "observation"]
        tensor([[ 0.,  0., 10.],
                [ 0., 10., 20.],
                [10., 20., 30.]])
    """

    def __init__(
        self,
        N: int,
        dim: int,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        padding: str = "same",
        padding_value: float = 0.0,
    ) -> None:
        if not isinstance(N, int) or N < 1:
            raise ValueError(f"CatFrames: N must be a positive int, got {N!r}.")
        if not isinstance(dim, int) or dim >= 0:
            raise ValueError(
                f"CatFrames: dim must be a negative int (a feature dim, counted from the end), got {dim!r}. "
                f"Fix: e.g. dim=-3 for [C, H, W] images or dim=-1 for vectors."
            )
        if padding not in ("same", "constant"):
            raise ValueError(f"CatFrames: padding must be 'same' or 'constant', got {padding!r}.")
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.N = N
        self.dim = dim
        self.padding = padding
        self.padding_value = padding_value
        self._stack_inside = False  # set when a later transform of the chain rewrites the stack (see _carry_inside)
        self._stacks: dict = {}  # in_key -> the raw stack of the last step or reset, while _stack_inside

    def set_container(self, container: Any) -> None:
        """Attach to ``container``; where the stack lives is decided again when the chain's specs are built."""
        if container is not self.container:
            self._stack_inside = False
            self._stacks = {}
        super().set_container(container)

    def _carry_inside(self, key: NestedKey) -> bool:
        if key not in self.out_keys:
            return False
        # once inside, the stack stays inside for this chain: the inside road is right for any chain (a rebuilt
        # chain that no longer rewrites the stack only loses the mapped rollout road), and a Transform.parent view
        # rebuilding the specs of a prefix of the chain must not move it back to the root
        self._stack_inside = True
        return True

    def _carried_keys(self) -> list:
        return [] if self._stack_inside else list(self.out_keys)

    @property
    def _vectorizable(self) -> bool:
        # a rollout mapped at once would leave the inner stacks at their last reset: the next step would be stale
        return not self._stack_inside and super()._vectorizable

    def _first_stack(self, frame: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            return torch.cat([frame] * self.N, self.dim)
        pad = torch.full_like(frame, self.padding_value)
        return torch.cat([pad] * (self.N - 1) + [frame], self.dim)

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        mask = None
        if self._stack_inside and tensordict is not None and tensordict_reset.batch_dims:
            mask = tensordict.get("_reset", None)
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            frame = tensordict_reset.get(in_key, None)
            if frame is None:
                continue
            stack = self._first_stack(frame)
            if self._stack_inside:
                kept = self._stacks.get(in_key)
                if mask is not None and kept is not None and kept.shape == stack.shape and not bool(mask.all()):
                    rows = mask.reshape(tensordict_reset.batch_size)
                    stack = torch.where(rows.view(*rows.shape, *([1] * (stack.ndim - rows.ndim))), stack, kept)
                self._stacks[in_key] = stack
            tensordict_reset.set(out_key, stack)
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            frame = next_tensordict.get(in_key, None)
            if frame is None:
                continue
            if self._stack_inside:
                stack = self._stacks.get(in_key)
                if stack is None:
                    raise KeyError(_NOT_RESET_INSIDE.format(key=in_key))
            else:
                stack = tensordict.get(out_key, None)
                if stack is None:
                    raise KeyError(_NOT_FROM_RESET.format(name="CatFrames", key=out_key))
            size = frame.shape[self.dim]
            stack = torch.cat([stack.narrow(self.dim, size, (self.N - 1) * size), frame], self.dim)
            if self._stack_inside:
                self._stacks[in_key] = stack
            next_tensordict.set(out_key, stack)
        return next_tensordict

    #: in a replay buffer, the sampler must know trajectories (see forward)
    _needs_trajectories = True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Build the stacks of a trajectory (time along the last batch dim) at the root and under ``"next"``.

        In a replay buffer (a transform of a buffer whose sampler is a ``SliceSampler``),
        each sampled item is stacked with the ``N - 1`` items before it in its stored
        trajectory, read from the storage, whatever the slices drawn; a trajectory's first
        items are padded as after a reset. The buffer refuses CatFrames with a sampler that
        ignores trajectories.
        """
        context = current_sample_context()
        if context is not None:
            return self._forward_sampled(tensordict, context)
        starts, tdim = _trajectory_starts(tensordict, "CatFrames")
        last, t = _last_start(starts, tdim)
        nxt = tensordict.get("next")
        offsets = torch.arange(1 - self.N, 1, device=starts.device)
        index = t.unsqueeze(-1) + offsets  # [*B, T, N]: the time index of each stacked frame
        valid = index >= last.unsqueeze(-1)
        index = torch.maximum(index, last.unsqueeze(-1))
        nb = tensordict.batch_dims
        results = []
        for in_key in self.in_keys:
            frames = tensordict.get(in_key)
            feat = frames.shape[nb:]
            flat = index.reshape(*index.shape[:tdim], -1)  # [*B, T * N]
            gather_index = flat.view(*flat.shape, *([1] * len(feat))).expand(*flat.shape, *feat)
            stacked = torch.gather(frames, tdim, gather_index).view(*index.shape, *feat)
            if self.padding == "constant":
                mask = valid.view(*valid.shape, *([1] * len(feat)))
                stacked = torch.where(mask, stacked, torch.full_like(stacked, self.padding_value))
            pos = nb + len(feat) + self.dim  # where the concatenated dim sits once N is merged into it
            root = stacked.movedim(nb, pos).flatten(pos, pos + 1)
            frame = nxt.get(in_key)
            size = frame.shape[self.dim]
            results.append((root, torch.cat([root.narrow(self.dim, size, (self.N - 1) * size), frame], self.dim)))
        for out_key, (root, after) in zip(self.out_keys, results):
            tensordict.set(out_key, root)
            nxt.set(out_key, after)
        return tensordict

    def _forward_sampled(self, tensordict: TensorDictBase, context: SampleContext) -> TensorDictBase:
        """The stacks of a sampled batch: each item with the items before it in its trajectory."""
        if tensordict.batch_dims != 1:
            raise ValueError(
                f"CatFrames in a replay buffer stacks sampled items (batch_size [B]), got batch_size "
                f"{list(tensordict.batch_size)}; place it before transforms that reshape the batch"
            )
        positions, inside = context.history(self.N)  # [B, N], the item itself last
        count = positions.shape[0]
        earlier = None
        if self.N > 1:
            read = list(self.in_keys)
            if isinstance(self.container, Compose):  # members before this one, as they map the sample
                before = self.container._before(self)
                if before:
                    inner = context.before
                    context = SampleContext(context.storage, context.index, context.sampler)
                    context.before = _chain(inner, before)
            earlier = context.read(positions[:, :-1].reshape(-1), read)
        nxt = tensordict.get("next", None)
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            frame = tensordict.get(in_key)
            frames = (
                [frame]
                if earlier is None
                else [*earlier.get(in_key).reshape(count, self.N - 1, *frame.shape[1:]).unbind(1), frame]
            )
            if self.padding == "constant":
                pad = torch.full_like(frame, self.padding_value)
                mask = inside.to(frame.device)
                frames = [
                    torch.where(mask[:, i].view(-1, *([1] * (frame.ndim - 1))), f, pad) for i, f in enumerate(frames)
                ]
            stack = torch.cat(frames, self.dim)
            tensordict.set(out_key, stack)
            if nxt is not None and in_key in nxt.keys(True):
                following = nxt.get(in_key)
                size = following.shape[self.dim]
                nxt.set(out_key, torch.cat([stack.narrow(self.dim, size, (self.N - 1) * size), following], self.dim))
        return tensordict

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if -self.dim > len(spec.shape):
            raise ValueError(
                f"CatFrames: dim={self.dim} does not exist for {key!r} of shape {tuple(spec.shape)}. "
                f"Fix: pass a dim between -1 and -{len(spec.shape)}."
            )
        shape = list(spec.shape)
        shape[self.dim] *= self.N
        if isinstance(spec, Bounded):
            low = torch.cat([spec.low] * self.N, self.dim)
            high = torch.cat([spec.high] * self.N, self.dim)
            if self.padding == "constant":
                pad = torch.as_tensor(self.padding_value, dtype=spec.dtype)
                low, high = torch.minimum(low, pad), torch.maximum(high, pad)
            return Bounded(low, high, shape=shape, dtype=spec.dtype, device=spec.device)
        return Unbounded(shape=shape, dtype=spec.dtype, device=spec.device)

    def _extra_repr(self) -> str:
        return f"N={self.N}, dim={self.dim}, padding={self.padding!r}"


def _chain(first: Callable[[Any], Any] | None, then: Sequence[Transform]) -> Callable[[Any], Any]:
    def apply(data: Any) -> Any:
        if first is not None:
            data = first(data)
        with sampling_off():
            for transform in then:
                data = transform(data)
        return data

    return apply


class FrameSkipTransform(Transform):
    """Repeat each action ``frame_skip`` times in the base env, summing the rewards.

    The repetition stops early when any sub-env is done. On a plain TensorDict this
    transform does nothing (it only changes how the env steps).

    Args:
        frame_skip: how many base-env steps one step makes.

    Raises:
        ValueError: when ``frame_skip`` is not a positive int.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=100), FrameSkipTransform(3))
        >>> td = env.rand_step(env.reset())
        >>> td["next", "observation"].item(), td["next", "reward"].item()
        (3.0, 3.0)
    """

    time_vectorizable = False

    def __init__(self, frame_skip: int = 1) -> None:
        if not isinstance(frame_skip, int) or frame_skip < 1:
            raise ValueError(f"FrameSkipTransform: frame_skip must be a positive int, got {frame_skip!r}.")
        super().__init__()
        self.frame_skip = frame_skip

    @property
    def _frame_skip(self) -> int:
        return self.frame_skip

    def __repr__(self) -> str:
        return f"FrameSkipTransform(frame_skip={self.frame_skip})"
