"""TensorBoard logging through ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard`` extra)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tdrl.record.loggers._video import check_video, to_frames
from tdrl.record.loggers.common import Logger, _scalar
from tdrl.record.loggers.csv import _free_folder, _safe_name

__all__ = ["TensorboardLogger"]

_MISSING = (
    "TensorboardLogger needs the tensorboard package, which is not installed ({error}). Install the "
    "tensorboard extra: pip install 'tdrl[tensorboard]'."
)


def _flat_hparams(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings joined with ``/``; values TensorBoard cannot show become strings."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_hparams(value, name + "/"))
        elif isinstance(value, (bool, int, float, str)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class TensorboardLogger(Logger):
    """Logs to TensorBoard event files in ``log_dir/exp_name``.

    A new logger never writes into another run's folder: when ``log_dir/exp_name`` is taken,
    the run goes to the first free ``exp_name_1``, ``exp_name_2``, ... with a warning (as
    :class:`~tdrl.record.loggers.CSVLogger`); :meth:`~tdrl.record.loggers.Logger.load_state_dict` moves back to a saved
    run's folder. ``log_dir`` becomes the run's folder after construction (TorchRL's rule).

    Videos are written as animated GIF image summaries (what TensorBoard plays, and what
    ``SummaryWriter.add_video`` writes), encoded with imageio (the ``video`` extra) so
    moviepy is not needed.

    Args:
        exp_name: the experiment's name (its folder under ``log_dir``).
        log_dir: the parent folder.

    Raises:
        ImportError: when tensorboard is not installed (naming the extra).

    Examples:
        >>> import pytest, tempfile
        >>> _ = pytest.importorskip("tensorboard")
        >>> logger = TensorboardLogger("demo", log_dir=tempfile.mkdtemp())
        >>> logger.log_scalar("reward", 1.5, step=100)
        >>> logger.close()
    """

    def __init__(self, exp_name: str, log_dir: str = "tb_logs") -> None:
        super().__init__(exp_name=exp_name, log_dir=str(log_dir))
        self.log_dir = self.experiment.log_dir

    def _create_experiment(self) -> Any:
        return self._open(os.path.join(self.log_dir, self._free_name()))

    def _free_name(self) -> str:
        free = _free_folder(self.log_dir, _safe_name(self.exp_name))
        if free != self.exp_name:
            warnings.warn(
                f"TensorboardLogger: {os.path.join(self.log_dir, self.exp_name)!r} holds another run; this run "
                f"writes to {os.path.join(self.log_dir, free)!r}. To continue the earlier run, load its state "
                "with load_state_dict.",
                UserWarning,
                stacklevel=4,
            )
            self.exp_name = free
        return free

    @staticmethod
    def _open(folder: str) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError(_MISSING.format(error=error)) from error
        return SummaryWriter(log_dir=folder)

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        """Adds ``value`` under ``name`` at ``step``.

        Raises:
            TypeError: when ``value`` is not a number or a one-element tensor.
        """
        self.experiment.add_scalar(name, _scalar(name, value), global_step=step)

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        """Adds a uint8 ``[T, C, H, W]`` (or ``[N, T, C, H, W]``, side by side) video as an animated GIF.

        ``fps`` (default 4, as ``add_video``) and ``walltime`` may be passed in ``kwargs``.

        Raises:
            TypeError: for a non-tensor or a dtype other than uint8.
            ValueError: for another layout (the message says the expected one).
        """
        frames = to_frames(check_video(video, name, "TensorboardLogger.log_video"))
        fps = float(kwargs.pop("fps", 4))
        walltime = kwargs.pop("walltime", None)
        if kwargs:
            raise TypeError(f"TensorboardLogger.log_video: unknown arguments {sorted(kwargs)}; it takes fps, walltime.")
        try:
            import imageio
        except ImportError as error:
            raise ImportError(
                f"TensorboardLogger.log_video encodes GIFs with imageio, which is not installed ({error}). Install "
                "the video extra: pip install 'tdrl[video]'."
            ) from error
        from tensorboard.compat.proto.summary_pb2 import Summary  # type: ignore[import-untyped]

        buffer = io.BytesIO()
        imageio.mimwrite(buffer, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        image = Summary.Image(
            height=frames.shape[1], width=frames.shape[2], colorspace=3, encoded_image_string=buffer.getvalue()
        )
        summary = Summary(value=[Summary.Value(tag=name, image=image)])
        self.experiment.file_writer.add_summary(summary, step, walltime)

    def log_hparams(self, cfg: Mapping[str, Any]) -> None:
        """Adds the hyperparameters (nested mappings joined with ``/``) to the HParams tab."""
        if not hasattr(cfg, "items"):
            raise TypeError(
                f"TensorboardLogger.log_hparams takes a mapping of names to values, got {type(cfg).__name__}."
            )
        self.experiment.add_hparams(_flat_hparams(cfg), metric_dict={})

    def log_histogram(self, name: str, data: Sequence | torch.Tensor, **kwargs: Any) -> None:
        """Adds the histogram of ``data``; ``kwargs``: ``step``, ``bins`` (``"tensorflow"``), ``walltime``."""
        step = kwargs.pop("step", None)
        bins = kwargs.pop("bins", "tensorflow")
        walltime = kwargs.pop("walltime", None)
        if kwargs:
            raise TypeError(
                f"TensorboardLogger.log_histogram: unknown arguments {sorted(kwargs)}; it takes step, bins, walltime."
            )
        values = data if isinstance(data, torch.Tensor) else torch.as_tensor(data)
        self.experiment.add_histogram(name, values.detach().cpu(), global_step=step, bins=bins, walltime=walltime)

    def _checkpoint_state(self) -> dict[str, Any]:
        return {"folder": self.experiment.log_dir}

    def _load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        folder = state.get("folder")
        if folder is None or os.path.abspath(folder) == os.path.abspath(self.experiment.log_dir):
            return
        if not os.path.isdir(folder):
            raise ValueError(
                f"TensorboardLogger.load_state_dict: the saved run's folder {folder!r} does not exist; restore it "
                "or start a new run without loading the state."
            )
        self.experiment.close()
        self.experiment = self._open(folder)
        self.log_dir = folder
        self.exp_name = os.path.basename(os.path.normpath(folder))

    def __repr__(self) -> str:
        return f"TensorboardLogger(experiment={self.experiment.log_dir!r})"
