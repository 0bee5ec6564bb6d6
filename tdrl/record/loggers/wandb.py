"""Weights & Biases logging (the ``wandb`` extra)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tdrl.record.loggers._video import check_video, write_mp4
from tdrl.record.loggers.common import Logger, _scalar

__all__ = ["WandbLogger"]

_MISSING = (
    "WandbLogger needs wandb, which is not installed ({error}). Install the wandb extra: pip install 'tdrl[wandb]'."
)
_STEP_KEY = "trainer/step"


class WandbLogger(Logger):
    """Logs to a Weights & Biases run named ``exp_name``.

    Scalars logged with a ``step`` are plotted against it (``trainer/step``, declared with
    ``define_metric``), so metrics logged at different rates do not fight over W&B's own step
    counter. ``offline=True`` writes the run under ``save_dir`` only (``mode="offline"``; sync it
    later with ``wandb sync``); the logger changes no environment variable.

    Args:
        exp_name: the run's name.
        offline: keep the run on disk only.
        save_dir: where W&B writes its files (``log_dir=`` is accepted as the same).
        id: the run id; pass a saved one to resume that run (``resume="allow"``).
        project: the W&B project.
        video_fps: frames per second of logged videos (keyword only).
        **kwargs: passed to ``wandb.init``.

    Raises:
        ImportError: when wandb is not installed (naming the extra).
        ValueError: when both ``save_dir`` and ``log_dir`` are given.

    Examples:
        >>> import pytest, tempfile
        >>> _ = pytest.importorskip("wandb")
        >>> logger = WandbLogger("demo", offline=True, save_dir=tempfile.mkdtemp(), project="tdrl")
        >>> logger.log_scalar("reward", 1.5, step=100)
        >>> logger.close()
    """

    def __init__(
        self,
        exp_name: str,
        offline: bool = False,
        save_dir: str | None = None,
        id: str | None = None,
        project: str | None = None,
        *,
        video_fps: int = 32,
        **kwargs: Any,
    ) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError as error:
            raise ImportError(_MISSING.format(error=error)) from error
        log_dir = kwargs.pop("log_dir", None)
        if save_dir is not None and log_dir is not None:
            raise ValueError("WandbLogger: save_dir and log_dir name the same folder; pass one of them.")
        save_dir = save_dir if save_dir is not None else log_dir
        if save_dir is not None:
            save_dir = os.path.expanduser(os.fspath(save_dir))
            os.makedirs(save_dir, exist_ok=True)
        self.offline = offline
        self.save_dir = save_dir
        self.id = id
        self.project = project
        self.video_fps = video_fps
        self._defined: set[str] = set()
        self._video_counter = 0
        self._init_kwargs: dict[str, Any] = {
            "name": exp_name,
            "dir": save_dir,
            "id": id,
            "project": project,
            "resume": "allow",
        }
        if offline:
            self._init_kwargs["mode"] = "offline"
        self._init_kwargs.update(kwargs)
        super().__init__(exp_name=exp_name, log_dir=save_dir or "")

    def _create_experiment(self) -> Any:
        import wandb

        run = wandb.init(**self._init_kwargs)
        self.id = run.id
        return run

    def _define(self, name: str) -> None:
        if name not in self._defined:
            if not self._defined:
                self.experiment.define_metric(_STEP_KEY)
            self.experiment.define_metric(name, step_metric=_STEP_KEY)
            self._defined.add(name)

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        """Logs ``value`` under ``name``, against ``trainer/step`` when ``step`` is given.

        Raises:
            TypeError: when ``value`` is not a number or a one-element tensor.
        """
        number = _scalar(name, value)
        if step is None:
            self.experiment.log({name: number})
        else:
            self._define(name)
            self.experiment.log({name: number, _STEP_KEY: step})

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        """Logs ``video`` (uint8 ``[T, C, H, W]`` or ``[N, T, C, H, W]``) as an mp4 ``wandb.Video``.

        The mp4 is written by tdrl (the ``video`` extra), so moviepy is not needed; ``fps`` in
        ``kwargs`` overrides ``video_fps``.
        """
        import wandb

        video = check_video(video, name, "WandbLogger.log_video")
        fps = kwargs.pop("fps", self.video_fps)
        folder = os.path.join(self.save_dir or tempfile.gettempdir(), "tdrl_videos")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{self.id}_{name.replace('/', '_')}_{self._video_counter}.mp4")
        self._video_counter += 1
        write_mp4(path, video, fps=fps)
        payload: dict[str, Any] = {name: wandb.Video(path, format="mp4")}
        if step is not None:
            self._define(name)
            payload[_STEP_KEY] = step
        self.experiment.log(payload)

    def log_hparams(self, cfg: Mapping[str, Any]) -> None:
        """Adds the hyperparameters to the run's config."""
        if not hasattr(cfg, "items"):
            raise TypeError(f"WandbLogger.log_hparams takes a mapping of names to values, got {type(cfg).__name__}.")
        self.experiment.config.update(dict(cfg), allow_val_change=True)

    def log_histogram(self, name: str, data: Sequence | torch.Tensor, **kwargs: Any) -> None:
        """Logs a ``wandb.Histogram`` of ``data``; ``step`` and ``bins`` (default 64) in ``kwargs``."""
        import wandb

        values: Any = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data
        payload: dict[str, Any] = {name: wandb.Histogram(values, num_bins=int(kwargs.get("bins") or 64))}
        step = kwargs.get("step")
        if step is not None:
            self._define(name)
            payload[_STEP_KEY] = step
        self.experiment.log(payload)

    def flush(self) -> None:
        """W&B writes in the background: nothing to flush."""

    def _checkpoint_state(self) -> dict[str, Any]:
        return {"id": self.id, "video_counter": self._video_counter}

    def _load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        saved = state.get("id")
        if saved and saved != self.id:
            raise ValueError(
                f"WandbLogger.load_state_dict: this logger writes run {self.id!r}, the state is run {saved!r}. "
                f"Build the logger for the saved run: WandbLogger(..., id={saved!r})."
            )
        self._video_counter = int(state.get("video_counter", self._video_counter))

    def __repr__(self) -> str:
        return f"WandbLogger(exp_name={self.exp_name!r}, id={self.id!r})"
