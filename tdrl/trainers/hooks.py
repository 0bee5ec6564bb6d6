"""The trainer hooks (TorchRL's): what a :class:`~tdrl.trainers.Trainer` does at its hook points.

Each hook's :meth:`register` puts it at its usual point and names it for checkpoints; call
:meth:`~tdrl.trainers.Trainer.register_op` directly to put it elsewhere.

========================  =====================================  =========================
hook                      point(s)                               logs
========================  =====================================  =========================
``ReplayBufferTrainer``   batch_process, process_optim_batch,
                          post_loss
``OptimizerHook``         optimizer                              ``grad_norm_<index>``
``BatchSubSampler``       process_optim_batch
``RewardNormalizer``      batch_process, process_optim_batch
``SelectKeys``            batch_process
``LogScalar``             pre_steps_log                          ``<logname>``, ``<logname>_std``
``CountFramesLog``        pre_steps_log                          ``n_frames``
``UpdateWeights``         post_steps (or post_optim)
``LogValidationReward``   post_steps_log                         ``r_evaluation``, ``total_r_evaluation``
========================  =====================================  =========================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import NestedKey, TensorDictBase, pad
from torch import nn

from tdrl.trainers._grads import clip_gradients
from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = [
    "BatchSubSampler",
    "CountFramesLog",
    "LogScalar",
    "LogValidationReward",
    "OptimizerHook",
    "ReplayBufferTrainer",
    "RewardNormalizer",
    "SelectKeys",
    "UpdateWeights",
    "mask_batch",
]

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


class OptimizerHook(TrainerHookBase):
    """Backpropagates the sum of loss components, clips, steps the optimizer, zeroes the grads.

    Registered at ``optimizer``; adds ``grad_norm_<index>`` (the gradients' total norm
    before clipping) to the losses. A :class:`~tdrl.trainers.Trainer` built with an
    ``optimizer`` registers one over all ``loss_*`` entries.

    Args:
        optimizer: the optimizer.
        loss_components: the loss entries to sum (``None``: every entry whose name starts
            with ``"loss"``).

    Raises:
        ValueError: for an empty ``loss_components``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> w = torch.nn.Parameter(torch.ones(1))
        >>> hook = OptimizerHook(torch.optim.SGD([w], lr=0.5))
        >>> out = hook(TensorDict({"loss_a": (2 * w).sum()}), True, None, 0)
        >>> out["grad_norm_0"].item(), w.item()
        (2.0, 0.0)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, loss_components: Sequence[str] | None = None) -> None:
        if loss_components is not None and not loss_components:
            raise ValueError("OptimizerHook: loss_components is empty; pass None to sum every loss_* entry.")
        self.optimizer = optimizer
        self.loss_components = None if loss_components is None else set(loss_components)

    def _grad_clip(self, clip_grad_norm: bool, clip_norm: float | None) -> float:
        return clip_gradients(self.optimizer, clip_grad_norm, clip_norm)

    def __call__(
        self, losses_td: TensorDictBase, clip_grad_norm: bool, clip_norm: float | None, index: int
    ) -> TensorDictBase:
        if self.loss_components is None:
            components = [item for key, item in losses_td.items() if key.startswith("loss")]
        else:
            components = [item for key, item in losses_td.items() if key in self.loss_components]
        if not components:
            raise KeyError(
                f"OptimizerHook: no loss to optimize among {sorted(losses_td.keys())}; expected "
                f"{sorted(self.loss_components) if self.loss_components else 'entries named loss_*'}. "
                "Pass loss_components=[...] naming the loss entries."
            )
        loss = components[0]
        for component in components[1:]:
            loss = loss + component
        loss.backward()
        losses_td.set(f"grad_norm_{index}", torch.tensor(self._grad_clip(clip_grad_norm, clip_norm)))
        self.optimizer.step()
        self.optimizer.zero_grad()
        return losses_td

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if state_dict:
            self.optimizer.load_state_dict(dict(state_dict))

    def register(self, trainer: Trainer, name: str = "optimizer") -> None:
        trainer.register_op("optimizer", self)
        trainer.register_module(name, self)


class LogScalar(TrainerHookBase):
    """Logs a reduction of one entry of each collected batch (at ``pre_steps_log``).

    Only the valid frames count when the batch has a ``("collector", "mask")``.

    Args:
        key: the entry (default ``("next", "reward")``).
        logname: the logged name (default ``str(key)``); TorchRL's examples use ``"r_training"``.
        log_pbar: show it on the progress bar.
        include_std: also log ``<logname>_std`` (with more than one value).
        reduction: ``"mean"``, ``"sum"``, ``"min"`` or ``"max"``.

    Raises:
        ValueError: for another reduction.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({("next", "reward"): torch.tensor([[1.0], [3.0]])}, [2])
        >>> LogScalar(logname="r_training")(batch)
        {'r_training': 2.0, 'log_pbar': False, 'r_training_std': 1.4142135381698608}
    """

    def __init__(
        self,
        key: NestedKey = REWARD_KEY,
        logname: str | None = None,
        log_pbar: bool = False,
        include_std: bool = True,
        reduction: str = "mean",
    ) -> None:
        if reduction not in ("mean", "sum", "min", "max"):
            raise ValueError(f"LogScalar: reduction must be 'mean', 'sum', 'min' or 'max', got {reduction!r}.")
        self.key = key
        self.logname = logname if logname is not None else str(key)
        self.log_pbar = log_pbar
        self.include_std = include_std
        self.reduction = reduction

    def __call__(self, batch: TensorDictBase) -> dict[str, Any]:
        value = batch.get(self.key)
        mask = batch.get(_MASK_KEY, None)
        if mask is not None:
            value = value[mask]
        if self.reduction == "mean":
            reduced = value.float().mean()
        else:
            reduced = getattr(value, self.reduction)()
        out: dict[str, Any] = {self.logname: reduced.item(), "log_pbar": self.log_pbar}
        if self.include_std and value.numel() > 1:
            out[f"{self.logname}_std"] = value.float().std().item()
        return out

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        trainer.register_op("pre_steps_log", self)
        trainer.register_module(f"log_{self.logname}" if name is None else name, self)


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


class CountFramesLog(TrainerHookBase):
    """Logs ``n_frames``, the frames collected so far (valid frames x ``frame_skip``).

    Args:
        frame_skip: frames per collected step.
        log_pbar: show it on the progress bar.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> hook = CountFramesLog(frame_skip=2)
        >>> _ = hook(TensorDict({}, [5]))
        >>> hook(TensorDict({}, [5]))
        {'n_frames': 20, 'log_pbar': False}
    """

    def __init__(self, frame_skip: int, log_pbar: bool = False) -> None:
        self.frame_skip = frame_skip
        self.log_pbar = log_pbar
        self.frame_count = 0

    def __call__(self, batch: TensorDictBase) -> dict[str, Any]:
        mask = batch.get(_MASK_KEY, None)
        frames = batch.numel() if mask is None else int(mask.sum())
        self.frame_count += frames * self.frame_skip
        return {"n_frames": self.frame_count, "log_pbar": self.log_pbar}

    def state_dict(self) -> dict[str, Any]:
        return {"frame_count": self.frame_count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.frame_count = int(state_dict["frame_count"])

    def register(self, trainer: Trainer, name: str = "count_frames_log") -> None:
        trainer.register_module(name, self)
        trainer.register_op("pre_steps_log", self)


class UpdateWeights(TrainerHookBase):
    """Pushes the trained policy's weights to the collector every ``update_weights_interval``
    batches (at ``post_steps``), or optimizer steps (``interval_unit="optim_steps"``, at
    ``post_optim``).

    Args:
        collector: the collector (``update_policy_weights_`` is called).
        update_weights_interval: batches (or optimizer steps) between two pushes.
        policy_weights_getter: returns the weights to push (``None``: the collector copies
            from the policy it was given).
        weight_update_map: TorchRL's weight-sync-scheme mapping; not supported (refused).
        trainer: the trainer (needed for ``interval_unit="optim_steps"``; set by
            :meth:`register`).
        sender: TorchRL's weight-sync sender; not supported (refused).
        interval_unit: ``"batches"`` or ``"optim_steps"``.

    Raises:
        ValueError: for an interval below 1, another unit, or the unsupported arguments.

    Examples:
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> collector = SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=8)
        >>> hook = UpdateWeights(collector, update_weights_interval=2)
        >>> hook(); hook(); hook.counter
        2
    """

    def __init__(
        self,
        collector: Any = None,
        update_weights_interval: int = 1,
        policy_weights_getter: Callable[[], Any] | None = None,
        weight_update_map: dict[str, str] | None = None,
        trainer: Trainer | None = None,
        *,
        sender: Any = None,
        interval_unit: str = "batches",
    ) -> None:
        if weight_update_map is not None or sender is not None:
            raise ValueError(
                "UpdateWeights: weight_update_map and sender (TorchRL's weight-sync schemes) are not supported; "
                "pass policy_weights_getter=lambda: TensorDict.from_module(policy) instead."
            )
        if collector is None:
            raise ValueError("UpdateWeights: pass the collector whose policy weights to update.")
        if (
            isinstance(update_weights_interval, bool)
            or not isinstance(update_weights_interval, int)
            or update_weights_interval < 1
        ):
            raise ValueError(
                f"UpdateWeights: update_weights_interval must be an int >= 1, got {update_weights_interval!r}."
            )
        if interval_unit not in ("batches", "optim_steps"):
            raise ValueError(f"UpdateWeights: interval_unit must be 'batches' or 'optim_steps', got {interval_unit!r}.")
        self.collector = collector
        self.update_weights_interval = update_weights_interval
        self.policy_weights_getter = policy_weights_getter
        self.weight_update_map = None
        self.trainer = trainer
        self.sender = None
        self.interval_unit = interval_unit
        self.counter = 0
        self._last_update_count = 0

    def __call__(self) -> None:
        if self.interval_unit == "optim_steps":
            if self.trainer is None:
                raise ValueError(
                    "UpdateWeights: interval_unit='optim_steps' needs the trainer; use hook.register(trainer)."
                )
            count = self.trainer._optim_count
            if count - self._last_update_count < self.update_weights_interval:
                return
            self._last_update_count = count
        else:
            self.counter += 1
            if self.counter % self.update_weights_interval:
                return
        weights = None if self.policy_weights_getter is None else self.policy_weights_getter()
        if weights is None:
            self.collector.update_policy_weights_()
        else:
            self.collector.update_policy_weights_(weights)

    def state_dict(self) -> dict[str, Any]:
        return {"counter": self.counter, "last_update_count": self._last_update_count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.counter = int(state_dict.get("counter", 0))
        self._last_update_count = int(state_dict.get("last_update_count", 0))

    def register(self, trainer: Trainer, name: str = "update_weights") -> None:
        if self.trainer is None:
            self.trainer = trainer
        trainer.register_module(name, self)
        trainer.register_op("post_optim" if self.interval_unit == "optim_steps" else "post_steps", self)


class LogValidationReward(TrainerHookBase):
    """Evaluates the policy every ``record_interval`` calls (at ``post_steps_log``) and logs
    ``r_evaluation`` (the mean reward per step, divided by ``frame_skip``) and
    ``total_r_evaluation`` (the mean return per trajectory).

    The rollout runs ``record_frames`` steps with resets (``break_when_any_done=False``),
    under ``exploration_type``, with the policy and env in eval mode, without gradients.
    When the env has a transform with ``dump`` (a video recorder), it is called after each
    evaluation. Unlike TorchRL, the env is not closed after each evaluation (it stays
    usable for the next one).

    Args:
        record_interval: calls between two evaluations (the first call evaluates).
        record_frames: steps per evaluation.
        frame_skip: divides the per-step reward.
        policy_exploration: the policy to evaluate.
        environment: the evaluation env.
        exploration_type: the exploration type during the evaluation.
        log_keys: the entries to log (default ``[("next", "reward")]``).
        out_keys: the logged name per entry (default: ``"r_evaluation"`` for the reward,
            ``str(key)`` for others).
        suffix: passed to the env transform's ``dump``.
        log_pbar: show the values on the progress bar.
        recorder: TorchRL's old name of ``environment``.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> hook = LogValidationReward(record_interval=2, record_frames=6, policy_exploration=None,
        ...                            environment=CountingEnv(max_steps=3))
        >>> out = hook(None)
        >>> out["r_evaluation"].item(), out["total_r_evaluation"].item(), hook(None)
        (1.0, 3.0, None)
    """

    def __init__(
        self,
        *,
        record_interval: int,
        record_frames: int,
        frame_skip: int = 1,
        policy_exploration: Any,
        environment: Any = None,
        exploration_type: Any = None,
        log_keys: list[NestedKey] | None = None,
        out_keys: dict[NestedKey, str] | None = None,
        suffix: str | None = None,
        log_pbar: bool = False,
        recorder: Any = None,
    ) -> None:
        from tdrl.envs.utils import ExplorationType

        if environment is not None and recorder is not None:
            raise ValueError("LogValidationReward: pass the env as environment= only (recorder= is its old name).")
        environment = recorder if environment is None else environment
        if environment is None:
            raise ValueError("LogValidationReward: pass the evaluation env as environment=.")
        for name, value in (("record_interval", record_interval), ("record_frames", record_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LogValidationReward: {name} must be a positive int, got {value!r}.")
        self.record_interval = record_interval
        self.record_frames = record_frames
        self.frame_skip = frame_skip
        self.policy_exploration = policy_exploration
        self.environment = environment
        self.exploration_type = ExplorationType.RANDOM if exploration_type is None else exploration_type
        self.log_keys = [REWARD_KEY] if log_keys is None else list(log_keys)
        self.out_keys = dict(out_keys) if out_keys is not None else {REWARD_KEY: "r_evaluation"}
        self.suffix = suffix
        self.log_pbar = log_pbar
        self._count = 0

    def _out_key(self, key: NestedKey) -> str:
        return self.out_keys.get(key, key if isinstance(key, str) else str(key))

    @torch.inference_mode()
    def __call__(self, batch: TensorDictBase | None) -> dict[str, Any] | None:
        from tdrl.collectors import split_trajectories
        from tdrl.envs.utils import set_exploration_type

        del batch
        out: dict[str, Any] | None = None
        if self._count % self.record_interval == 0:
            policy = self.policy_exploration
            with set_exploration_type(self.exploration_type):
                if isinstance(policy, nn.Module):
                    policy.eval()
                self.environment.eval()
                try:
                    rollout = self.environment.rollout(
                        max_steps=self.record_frames, policy=policy, auto_reset=True, break_when_any_done=False
                    )
                finally:
                    if isinstance(policy, nn.Module):
                        policy.train()
                    self.environment.train()
            dump = getattr(getattr(self.environment, "transform", None), "dump", None)
            if callable(dump):
                dump(suffix=self.suffix)
            trajectories = split_trajectories(rollout)
            out = {}
            for key in self.log_keys:
                value = trajectories.get(key).float()
                name = self._out_key(key)
                if key == REWARD_KEY:
                    mask = trajectories.get(_MASK_KEY)
                    out[name] = value[mask].mean() / self.frame_skip
                    out["total_" + name] = value.sum(dim=trajectories.ndim - 1).mean()
                else:
                    out[name] = value
            out["log_pbar"] = self.log_pbar
        self._count += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"_count": self._count, "recorder_state_dict": self.environment.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._count = int(state_dict["_count"])
        self.environment.load_state_dict(state_dict["recorder_state_dict"])

    def register(self, trainer: Trainer, name: str = "recorder") -> None:
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
