"""The logger interface every tdrl logger implements (TorchRL's ``Logger``).

A logger owns one experiment (a folder, a TensorBoard writer, a W&B run, an MLflow run) and
takes scalars, hyperparameters, videos and histograms. Trainers, evaluators and the main jobs
talk to it through this interface only, so the backend is a constructor choice.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

__all__ = ["Logger"]


def _scalar(name: str, value: Any) -> float | int | bool:
    """``value`` as a Python number, or a TypeError naming the metric."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(
                f"Logger: the metric {name!r} is a tensor of shape {tuple(value.shape)}; a scalar needs one "
                "element. Log a reduction (value.mean()) or use log_histogram for the distribution."
            )
        return value.item()
    if isinstance(value, (bool, int, float)):
        return value
    try:
        return float(value)  # numpy scalars and the like
    except (TypeError, ValueError):
        raise TypeError(
            f"Logger: the metric {name!r} is a {type(value).__name__}, not a number. Log numbers or "
            "one-element tensors."
        ) from None


class Logger(abc.ABC):
    """Base class of the loggers: one experiment, named ``exp_name``, written under ``log_dir``.

    Subclasses implement ``_create_experiment`` (called once by the constructor; its
    result is ``self.experiment``), :meth:`log_scalar`, :meth:`log_video`,
    :meth:`log_hparams`, :meth:`log_histogram` and ``__repr__``. :meth:`log_metrics`,
    :meth:`flush`, :meth:`close`, :meth:`state_dict` and :meth:`load_state_dict` have
    defaults.

    Args:
        exp_name: the experiment's name.
        log_dir: where the experiment writes (its meaning is the backend's).

    Examples:
        >>> class PrintLogger(Logger):
        ...     def _create_experiment(self):
        ...         return None
        ...     def log_scalar(self, name, value, step=None):
        ...         print(name, value, step)
        ...     def log_video(self, name, video, step=None, **kwargs):
        ...         pass
        ...     def log_hparams(self, cfg):
        ...         pass
        ...     def log_histogram(self, name, data, **kwargs):
        ...         pass
        ...     def __repr__(self):
        ...         return "PrintLogger()"
        >>> _ = PrintLogger("demo", "logs").log_metrics({"loss": torch.tensor(0.5), "lr": 1e-3}, step=3)
        loss 0.5 3
        lr 0.001 3
    """

    def __init__(self, exp_name: str, log_dir: str) -> None:
        self.exp_name = exp_name
        self.log_dir = log_dir
        self._closed = False
        self.experiment = self._create_experiment()

    @abc.abstractmethod
    def _create_experiment(self) -> Any:
        """Opens the backend's experiment (called once, by the constructor)."""

    @abc.abstractmethod
    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        """Records ``value`` under ``name`` at ``step`` (the backend's own counter when ``None``)."""

    @abc.abstractmethod
    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        """Records a video: a uint8 tensor ``[T, C, H, W]`` (or ``[N, T, C, H, W]``, several side by side)."""

    @abc.abstractmethod
    def log_hparams(self, cfg: Mapping[str, Any]) -> None:
        """Records the run's hyperparameters (a mapping, possibly nested)."""

    @abc.abstractmethod
    def log_histogram(self, name: str, data: Sequence | torch.Tensor, **kwargs: Any) -> None:
        """Records the distribution of ``data`` under ``name`` (``step=`` in ``kwargs``)."""

    @abc.abstractmethod
    def __repr__(self) -> str: ...

    def log_metrics(
        self,
        metrics: Mapping[str, Any] | TensorDictBase,
        step: int | None = None,
        *,
        keys_sep: str = "/",
    ) -> dict[str, Any]:
        """Records several scalars at one step; nested TensorDict keys are joined with ``keys_sep``.

        Tensors are moved to the host in one transfer per device, not one per metric.

        Returns:
            The metrics as Python numbers, by name.

        Raises:
            TypeError: naming a metric that is not a number or a one-element tensor.
        """
        if isinstance(metrics, TensorDictBase):
            flat = metrics.flatten_keys(keys_sep)
            items = [(str(k), flat.get(k)) for k in flat.keys(True, True)]
        else:
            items = list(metrics.items())
        tensors = [(i, v) for i, (_, v) in enumerate(items) if isinstance(v, torch.Tensor) and v.numel() == 1]
        if len(tensors) > 1:
            by_device: dict[torch.device, list[int]] = {}
            for i, v in tensors:
                by_device.setdefault(v.device, []).append(i)
            for indices in by_device.values():
                host = torch.stack([items[i][1].reshape(()).double() for i in indices]).cpu().tolist()
                for i, value in zip(indices, host):
                    original = items[i][1]
                    if original.dtype == torch.bool:
                        value = bool(value)
                    elif not original.dtype.is_floating_point and not original.dtype.is_complex:
                        value = int(value)
                    items[i] = (items[i][0], value)
        out: dict[str, Any] = {}
        for name, value in items:
            number = _scalar(name, value)  # NaN stays NaN: hiding it would hide a diverged run
            self.log_scalar(name, number, step=step)
            out[name] = number
        return out

    def flush(self) -> None:
        """Makes everything logged so far durable (files written, buffers pushed)."""
        flush = getattr(self.experiment, "flush", None)
        if callable(flush):
            flush()

    def close(self) -> None:
        """Flushes and closes the experiment; further calls are no-ops."""
        if self._closed:
            return
        self.flush()
        for name in ("finish", "close"):
            closer = getattr(self.experiment, name, None)
            if callable(closer):
                closer()
                break
        self._closed = True

    def shutdown(self) -> None:
        """Same as :meth:`close` (TorchRL's newer name)."""
        self.close()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue this logger's run (name, folder, counters)."""
        self.flush()
        return {"exp_name": self.exp_name, "log_dir": self.log_dir, "local": self._checkpoint_state()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores the counters saved by :meth:`state_dict` (the experiment itself stays open)."""
        self._load_checkpoint_state(state_dict.get("local", {}))

    def _checkpoint_state(self) -> dict[str, Any]:
        return {}

    def _load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        del state
