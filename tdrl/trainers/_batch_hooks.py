"""The batch hooks (TorchRL's): what a :class:`~tdrl.trainers.Trainer` does to each collected batch.

Replay-buffer storage and sampling, key selection, sub-sampling and reward normalization; the
constants for the reward and the collector's padding mask that the other hooks share. Import them
from :mod:`tdrl.trainers.hooks` (or :mod:`tdrl.trainers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import NestedKey, TensorDictBase, pad

from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = ["BatchSubSampler", "ReplayBufferTrainer", "RewardNormalizer", "SelectKeys", "mask_batch"]

REWARD_KEY: NestedKey = ("next", "reward")
_MASK_KEY: NestedKey = ("collector", "mask")


def mask_batch(batch: TensorDictBase) -> TensorDictBase:
    """The valid frames of a padded batch (those where ``("collector", "mask")`` is set),
    flattened; the batch itself when it has no mask.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({"x": torch.arange(4.0), ("collector", "mask"): torch.tensor([1, 1, 0, 1]).bool()}, [4])
        >>> mask_batch(batch)["x"]
        tensor([0., 1., 3.])
    """
    mask = batch.get(_MASK_KEY, None)
    return batch if mask is None else batch[mask]


class SelectKeys(TrainerHookBase):
    """Keeps only ``keys`` in each collected batch (at ``batch_process``).

    Args:
        keys: the keys to keep.

    Raises:
        TypeError: when ``keys`` is a single string (pass a list).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> SelectKeys(["a"])(TensorDict({"a": torch.zeros(2), "b": torch.ones(2)}, [2])).keys()
        _StringKeys(dict_keys(['a']))
    """

    def __init__(self, keys: Sequence[NestedKey]) -> None:
        if isinstance(keys, str):
            raise TypeError(f"SelectKeys: keys must be a list of keys, got the string {keys!r}; pass [{keys!r}].")
        self.keys = list(keys)

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        return batch.select(*self.keys)

    def register(self, trainer: Trainer, name: str = "select_keys") -> None:
        trainer.register_op("batch_process", self)
        trainer.register_module(name, self)


class ReplayBufferTrainer(TrainerHookBase):
    """Fills a replay buffer with each batch and samples the optimization batches from it.

    Registered at ``batch_process`` (:meth:`extend`), ``process_optim_batch``
    (:meth:`sample`) and ``post_loss`` (:meth:`update_priority`). Its checkpoint state is
    the buffer's (content, sampler, writer, generator).

    Args:
        replay_buffer: the buffer.
        batch_size: items per sample (``None``: the buffer's own batch size).
        memmap: accepted for TorchRL compatibility; the buffer's storage decides.
        device: where samples are moved (``None``: where the buffer keeps them).
        flatten_tensordicts: write the valid frames of each batch as a flat batch (the
            masked frames with ``("collector", "mask")``, else all, with the last step of
            each trajectory marked truncated).
        max_dims: without ``flatten_tensordicts``, pad each batch to these sizes per
            dimension (``-1``: no padding on that dimension).
        iterate: sample by iterating over the buffer; an exhausted pass ends the batch's
            optimization and restarts at the next one.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> hook = ReplayBufferTrainer(TensorDictReplayBuffer(storage=LazyTensorStorage(100)), batch_size=4)
        >>> _ = hook.extend(TensorDict({"obs": torch.arange(10.0)}, [10]))
        >>> hook.sample(None).shape
        torch.Size([4])
    """

    def __init__(
        self,
        replay_buffer: Any,
        batch_size: int | None = None,
        memmap: bool = False,
        device: Any = None,
        flatten_tensordicts: bool = False,
        max_dims: Sequence[int] | None = None,
        iterate: bool = False,
    ) -> None:
        self.replay_buffer = replay_buffer
        update = getattr(replay_buffer, "update_tensordict_priority", None)
        self._update_priority: Callable[[TensorDictBase], None] | None = update if callable(update) else None
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"ReplayBufferTrainer: batch_size must be a positive int or None, got {batch_size!r}.")
        self.batch_size = batch_size
        self.memmap = memmap
        self.device = None if device is None else torch.device(device)
        self.flatten_tensordicts = flatten_tensordicts
        self.max_dims = None if max_dims is None else list(max_dims)
        self.iterate = iterate
        self.replay_buffer_iter = iter(replay_buffer) if iterate else None

    def extend(self, batch: TensorDictBase) -> TensorDictBase:
        """Writes ``batch`` (flattened or padded as configured) into the buffer; returns it."""
        if self.flatten_tensordicts:
            mask = batch.get(_MASK_KEY, None)
            if mask is not None:
                batch = batch[mask]
            else:
                truncated = batch.get(("next", "truncated"), None)
                if truncated is not None:
                    truncated[..., -1, :] = True
                batch = batch.reshape(-1)
        elif self.max_dims is not None:
            if len(self.max_dims) != batch.ndim:
                raise ValueError(
                    f"ReplayBufferTrainer: max_dims has {len(self.max_dims)} sizes for a batch of shape "
                    f"{tuple(batch.shape)}; give one size per batch dimension (-1 for no padding)."
                )
            pads: list[int] = []
            for size, limit in zip(batch.shape, self.max_dims):
                pads += [0, 0 if limit == -1 else limit - size]
            batch = pad(batch, pads)
        batch = batch.cpu()
        self.replay_buffer.extend(batch)
        return batch

    def sample(self, batch: TensorDictBase | None) -> TensorDictBase:
        """Draws an optimization batch from the buffer (``batch`` is ignored)."""
        del batch
        if self.replay_buffer_iter is not None:
            try:
                sample = next(self.replay_buffer_iter)
            except StopIteration:
                self.replay_buffer_iter = iter(self.replay_buffer)
                raise
        else:
            sample = self.replay_buffer.sample(batch_size=self.batch_size)
        return sample if self.device is None else sample.to(self.device)

    def update_priority(self, batch: TensorDictBase) -> None:
        """Writes the sampled items' new priorities (a prioritized buffer's ``td_error``)."""
        if self._update_priority is not None:
            self._update_priority(batch)

    def state_dict(self) -> dict[str, Any]:
        return {"replay_buffer": self.replay_buffer.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.replay_buffer.load_state_dict(state_dict["replay_buffer"])

    def register(self, trainer: Trainer, name: str = "replay_buffer") -> None:
        trainer.register_op("batch_process", self.extend)
        trainer.register_op("process_optim_batch", self.sample)
        trainer.register_op("post_loss", self.update_priority)
        trainer.register_module(name, self)


class RewardNormalizer(TrainerHookBase):
    """Normalizes rewards with decayed running statistics of the collected rewards.

    :meth:`update_reward_stats` (at ``batch_process``) folds each batch into decayed
    sums; :meth:`normalize_reward` (at ``process_optim_batch``) returns a copy of the
    optimization batch with ``(reward - mean) / std * scale``. The statistics are part of
    the checkpoint.

    Args:
        decay: the decay of the running sums.
        scale: the factor applied after normalizing.
        eps: the smallest variance (default: the default dtype's eps).
        log_pbar: accepted for TorchRL compatibility (nothing is logged).
        reward_key: the reward entry (default ``("next", "reward")``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> hook = RewardNormalizer()
        >>> batch = TensorDict({("next", "reward"): torch.tensor([[1.0], [3.0]])}, [2])
        >>> hook.update_reward_stats(batch)
        >>> hook.normalize_reward(batch)["next", "reward"].squeeze(-1)
        tensor([-0.7071,  0.7071])
    """

    def __init__(
        self,
        decay: float = 0.999,
        scale: float = 1.0,
        eps: float | None = None,
        log_pbar: bool = False,
        reward_key: NestedKey | None = None,
    ) -> None:
        self._normalize_has_been_called = False
        self._update_has_been_called = False
        self._reward_stats: dict[str, Any] = {"decay": decay}
        self.scale = scale
        self.eps = torch.finfo(torch.get_default_dtype()).eps if eps is None else eps
        self.log_pbar = log_pbar
        self.reward_key = REWARD_KEY if reward_key is None else reward_key

    @torch.no_grad()
    def update_reward_stats(self, batch: TensorDictBase) -> None:
        """Folds the batch's rewards into the running statistics."""
        reward = batch.get(self.reward_key)
        mask = batch.get(_MASK_KEY, None)
        if mask is not None:
            reward = reward[mask]
        stats = self._reward_stats
        decay = stats["decay"]
        total = stats["sum"] = decay * stats.get("sum", 0.0) + reward.sum()
        squares = stats["ssq"] = decay * stats.get("ssq", 0.0) + reward.pow(2).sum()
        count = stats["count"] = decay * stats.get("count", 0.0) + reward.numel()
        stats["mean"] = total / count
        var = (squares - total.pow(2) / count) / (count - 1) if count > 1 else torch.zeros_like(total)
        stats["var"] = var
        stats["std"] = var.clamp_min(self.eps).sqrt()
        self._update_has_been_called = True

    def normalize_reward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """A copy of ``tensordict`` with the normalized reward (the input is not changed).

        Raises:
            RuntimeError: before any :meth:`update_reward_stats`.
        """
        if "mean" not in self._reward_stats:
            raise RuntimeError(
                "RewardNormalizer.normalize_reward: no statistics yet; register update_reward_stats at "
                "'batch_process' (RewardNormalizer().register(trainer) does both)."
            )
        out = tensordict.to_tensordict()
        reward = out.get(self.reward_key)
        mean = self._reward_stats["mean"].to(reward.device)
        std = self._reward_stats["std"].to(reward.device)
        out.set(self.reward_key, (reward - mean) / std * self.scale)
        self._normalize_has_been_called = True
        return out

    def state_dict(self) -> dict[str, Any]:
        stats = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self._reward_stats.items()}
        return {
            "_reward_stats": stats,
            "scale": self.scale,
            "_normalize_has_been_called": self._normalize_has_been_called,
            "_update_has_been_called": self._update_has_been_called,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        stats = state_dict["_reward_stats"]
        self._reward_stats = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in stats.items()}
        self.scale = state_dict["scale"]
        self._normalize_has_been_called = bool(state_dict["_normalize_has_been_called"])
        self._update_has_been_called = bool(state_dict["_update_has_been_called"])

    def register(self, trainer: Trainer, name: str = "reward_normalizer") -> None:
        trainer.register_op("batch_process", self.update_reward_stats)
        trainer.register_op("process_optim_batch", self.normalize_reward)
        trainer.register_module(name, self)


class BatchSubSampler(TrainerHookBase):
    """Draws a random sub-batch of the collected batch for each optimization step (on-policy).

    A one-dimensional batch gives ``batch_size`` distinct random frames. A batch of shape
    ``[*B, T]`` gives ``batch_size // sub_traj_len`` windows of ``sub_traj_len``
    consecutive steps, each from a random trajectory (row) at a random start: shape
    ``[batch_size // sub_traj_len, sub_traj_len]``. With a ``("collector", "mask")``,
    windows hold valid steps only. Draws use torch's global generator.

    Args:
        batch_size: frames per sub-batch.
        sub_traj_len: the window length (``0`` or less: whole rows).
        min_sub_traj_len: the shortest window when valid trajectories are shorter.

    Raises:
        ValueError: when ``batch_size`` is smaller than one window, or ``sub_traj_len`` is
            longer than the rows.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({"t": torch.arange(20).reshape(2, 10)}, [2, 10])
        >>> sub = BatchSubSampler(batch_size=6, sub_traj_len=3)(batch)
        >>> sub.shape, bool(((sub["t"][:, 1:] - sub["t"][:, :-1]) == 1).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(self, batch_size: int, sub_traj_len: int = 0, min_sub_traj_len: int = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BatchSubSampler: batch_size must be a positive int, got {batch_size!r}.")
        self.batch_size = batch_size
        self.sub_traj_len = sub_traj_len
        self.min_sub_traj_len = min_sub_traj_len

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        if batch.ndim == 1:
            return batch[torch.randperm(batch.shape[0])[: self.batch_size]]
        batch = batch.reshape(-1, batch.shape[-1])
        rows, length = batch.shape
        window = self.sub_traj_len if self.sub_traj_len > 0 else length
        mask = batch.get(_MASK_KEY, None)
        if mask is not None:
            traj_len = mask.sum(-1)
            window = max(self.min_sub_traj_len, min(window, int(traj_len.min())))
        else:
            traj_len = torch.full((rows,), length, device=batch.device)
        if window > length or window < 1:
            raise ValueError(
                f"BatchSubSampler: sub_traj_len={window} does not fit rows of length {length}; "
                f"pass a sub_traj_len in [1, {length}]."
            )
        count = self.batch_size // window
        if count == 0:
            raise ValueError(
                f"BatchSubSampler: batch_size={self.batch_size} is smaller than one window of {window} steps; "
                f"pass a batch_size that is a multiple of sub_traj_len."
            )
        valid = torch.arange(rows, device=batch.device)[traj_len >= window]
        picked = valid[torch.randint(valid.numel(), (count,), device=batch.device)]
        if window < length:
            starts = (torch.rand(count, device=batch.device) * (traj_len[picked] - window)).int()
        else:
            starts = torch.zeros(count, dtype=torch.int, device=batch.device)
        steps = starts.long().unsqueeze(-1) + torch.arange(window, device=batch.device)
        out = batch[picked.unsqueeze(-1), steps]
        if mask is not None and not bool(out.get(_MASK_KEY).all()):
            raise RuntimeError("BatchSubSampler: a window reached padded steps; the batch's mask is not left-aligned.")
        return out

    def register(self, trainer: Trainer, name: str = "batch_subsampler") -> None:
        trainer.register_op("process_optim_batch", self)
        trainer.register_module(name, self)
