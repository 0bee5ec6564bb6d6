"""A logger that keeps everything in memory: for tests, and for looking at what a component logs."""

from __future__ import annotations

from typing import Any

import torch

from tdrl.record.loggers.common import Logger

__all__ = ["MemoryLogger"]


class MemoryLogger(Logger):
    """Keeps every call in lists instead of writing anything.

    Attributes:
        scalars: ``(name, value, step)`` per :meth:`log_scalar` (and per entry of ``log_metrics``).
        videos: ``(name, video, step, kwargs)`` per :meth:`log_video`.
        hparams: the configs given to :meth:`log_hparams`.
        histograms: ``(name, data, kwargs)`` per :meth:`log_histogram`.

    Args:
        exp_name: the experiment's name. Default: ``"memory"``.
        log_dir: unused (nothing is written). Default: ``""``.

    Examples:
        >>> import torch
        >>> from tdrl.testing import MemoryLogger
        >>> logger = MemoryLogger()
        >>> _ = logger.log_metrics({"loss": torch.tensor(0.5)}, step=3)
        >>> logger.scalars
        [('loss', 0.5, 3)]
    """

    def __init__(self, exp_name: str = "memory", log_dir: str = "") -> None:
        super().__init__(exp_name, log_dir)

    def _create_experiment(self) -> None:
        self.scalars: list[tuple[str, Any, int | None]] = []
        self.videos: list[tuple[str, torch.Tensor, int | None, dict]] = []
        self.hparams: list[Any] = []
        self.histograms: list[tuple[str, Any, dict]] = []

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        self.scalars.append((name, value, step))

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        self.videos.append((name, video, step, kwargs))

    def log_hparams(self, cfg: Any) -> None:
        self.hparams.append(cfg)

    def log_histogram(self, name: str, data: Any, **kwargs: Any) -> None:
        self.histograms.append((name, data, kwargs))

    def __repr__(self) -> str:
        return f"MemoryLogger(exp_name={self.exp_name!r}, {len(self.scalars)} scalars, {len(self.videos)} videos)"
