"""A logger with no dependency: CSV files for scalars, text files for hyperparameters, video files.

Layout of one run (TorchRL's), under ``log_dir/exp_name``::

    scalars/<name>.csv        # header "step,value", then one line per call
    histograms/<name>_<step>.csv   # header "left,right,count" (tdrl's addition)
    videos/<name>_<step>.pt | .memmap | .mp4
    texts/hparams0.txt        # "key: value" lines
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import torch

from tdrl.record.loggers._video import check_video, write_mp4
from tdrl.record.loggers.common import Logger, _scalar

__all__ = ["CSVExperiment", "CSVLogger", "read_csv_scalars"]

_VIDEO_FORMATS = ("pt", "memmap", "mp4")
_SCALAR_HEADER = "step,value\n"
_BAD_NAME = (
    "CSVLogger: the name {name!r} would write outside the run's folder; use a relative name "
    "without '..' (a '/' makes a sub-folder)."
)


def _safe_name(name: str) -> str:
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise ValueError(_BAD_NAME.format(name=name))
    return name


def _free_folder(log_dir: str, exp_name: str) -> str:
    """``exp_name``, or the first ``exp_name_<k>`` with no non-empty folder under ``log_dir``."""
    candidate, k = exp_name, 0
    while os.path.isdir(os.path.join(log_dir, candidate)) and os.listdir(os.path.join(log_dir, candidate)):
        k += 1
        candidate = f"{exp_name}_{k}"
    return candidate


def read_csv_scalars(folder: str) -> dict[str, list[tuple[int, float]]]:
    """Reads every scalar a :class:`CSVLogger` wrote in the run folder ``folder``.

    Returns:
        ``{name: [(step, value), ...]}`` in the order logged; a name with a ``/`` keeps it.

    Examples:
        >>> import tempfile
        >>> logger = CSVLogger("run", log_dir=tempfile.mkdtemp())
        >>> logger.log_scalar("loss", 0.5, step=0)
        >>> logger.log_scalar("loss", 0.25, step=10)
        >>> read_csv_scalars(logger.experiment.log_dir)
        {'loss': [(0, 0.5), (10, 0.25)]}
    """
    root = os.path.join(folder, "scalars")
    out: dict[str, list[tuple[int, float]]] = {}
    for directory, _, files in sorted(os.walk(root)):
        for file in sorted(files):
            if not file.endswith(".csv"):
                continue
            path = os.path.join(directory, file)
            name = os.path.relpath(path, root)[: -len(".csv")].replace(os.sep, "/")
            with open(path) as handle:
                lines = handle.read().splitlines()[1:]
            rows = [line.split(",") for line in lines if line]
            out[name] = [(int(step), float(value)) for step, value in rows]
    return out


class CSVExperiment:
    """The files of one CSV run (``logger.experiment``): one open, line-flushed file per scalar.

    Args:
        log_dir: the run's folder (created).
        video_format: ``"pt"``, ``"memmap"`` or ``"mp4"``.
        video_fps: frames per second of mp4 files.
    """

    def __init__(self, log_dir: str, *, video_format: str = "pt", video_fps: int = 30) -> None:
        if video_format not in _VIDEO_FORMATS:
            raise ValueError(
                f"CSVLogger: video_format={video_format!r} is not one of {_VIDEO_FORMATS}. Use 'mp4' for "
                "playable files (needs the video extra), 'pt' to keep the tensor."
            )
        self.log_dir = log_dir
        self.video_format = video_format
        self.video_fps = video_fps
        self.scalar_counter: dict[str, int] = {}
        self.videos_counter: dict[str, int] = {}
        self.text_counter: dict[str, int] = {}
        self.histogram_counter: dict[str, int] = {}
        self.files: dict[str, TextIO] = {}
        for sub in ("scalars", "videos", "texts"):
            os.makedirs(os.path.join(log_dir, sub), exist_ok=True)

    def _path(self, sub: str, name: str, suffix: str) -> str:
        path = os.path.join(self.log_dir, sub, _safe_name(name) + suffix)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def add_scalar(self, name: str, value: float, global_step: int | None = None) -> None:
        """Appends ``step,value`` to ``scalars/<name>.csv`` and flushes it to the OS."""
        count = self.scalar_counter.get(name, 0)
        handle = self.files.get(name)
        if handle is None:
            path = self._path("scalars", name, ".csv")
            fresh = not os.path.exists(path) or os.path.getsize(path) == 0
            handle = self.files[name] = open(path, "a")  # noqa: SIM115 (kept open: one file per scalar)
            if fresh:
                handle.write(_SCALAR_HEADER)
        step = count if global_step is None else int(global_step)
        handle.write(f"{step},{float(value)!r}\n")
        handle.flush()
        self.scalar_counter[name] = count + 1

    def add_video(self, tag: str, vid_tensor: torch.Tensor, global_step: int | None = None, **kwargs: Any) -> str:
        """Writes a checked ``[N, T, C, H, W]`` video to ``videos/<tag>_<step>.<format>``; returns the path."""
        if global_step is None:  # the counter moves only for calls without a step (TorchRL's rule)
            global_step = self.videos_counter.get(tag, 0)
            self.videos_counter[tag] = global_step + 1
        path = self._path("videos", f"{tag}_{global_step}", f".{self.video_format}")
        if self.video_format == "mp4":
            kwargs.setdefault("fps", self.video_fps)
            write_mp4(path, vid_tensor, **kwargs)
        elif self.video_format == "pt":
            torch.save(vid_tensor.detach().cpu(), path)
        else:
            from tensordict import MemoryMappedTensor

            MemoryMappedTensor.from_tensor(vid_tensor.detach().cpu(), filename=path)
        return path

    def add_text(self, tag: str, text: str, global_step: int | None = None) -> None:
        """Writes ``text`` to ``texts/<tag><step>.txt``."""
        if global_step is None:  # the counter moves only for calls without a step (TorchRL's rule)
            global_step = self.text_counter.get(tag, 0)
            self.text_counter[tag] = global_step + 1
        with open(self._path("texts", f"{tag}{global_step}", ".txt"), "w") as handle:
            handle.write(text)

    def add_histogram(self, tag: str, values: torch.Tensor, global_step: int | None = None, bins: int = 64) -> None:
        """Writes ``left,right,count`` rows of ``values``' histogram to ``histograms/<tag>_<step>.csv``."""
        if global_step is None:  # the counter moves only for calls without a step (TorchRL's rule)
            global_step = self.histogram_counter.get(tag, 0)
            self.histogram_counter[tag] = global_step + 1
        counts, edges = torch.histogram(values.detach().cpu().double().flatten(), bins=bins)
        lines = [f"{float(edges[i])!r},{float(edges[i + 1])!r},{int(counts[i])}" for i in range(len(counts))]
        with open(self._path("histograms", f"{tag}_{global_step}", ".csv"), "w") as handle:
            handle.write("left,right,count\n" + "\n".join(lines) + "\n")

    def flush(self) -> None:
        """Flushes every open scalar file."""
        for handle in self.files.values():
            handle.flush()

    def close(self) -> None:
        """Closes every open scalar file."""
        for handle in self.files.values():
            handle.close()
        self.files.clear()

    def __repr__(self) -> str:
        return f"CSVExperiment(log_dir={self.log_dir})"


class CSVLogger(Logger):
    """Logs to CSV files in ``log_dir/exp_name``; needs nothing beyond torch (mp4 needs the video extra).

    Each scalar gets ``scalars/<name>.csv`` with a ``step,value`` header, so
    ``pandas.read_csv(path)`` gives named columns (TorchRL writes no header; tdrl's difference);
    :meth:`read_scalars` reads them all back. A line is flushed to the OS as it is written: a
    crashed process loses nothing it logged.

    A new logger never writes into another run's folder: when ``log_dir/exp_name`` exists and
    is not empty, the run goes to the first free ``exp_name_1``, ``exp_name_2``, ... with a
    warning naming it (``logger.exp_name`` and ``logger.experiment.log_dir`` say where).
    Resuming a run is :meth:`~tdrl.record.loggers.Logger.load_state_dict` with the state of the run to continue: the
    logger moves back to that run's folder and drops the lines logged after that state was
    saved, so a resumed trainer does not write them twice.

    Args:
        exp_name: the experiment's name (its folder under ``log_dir``).
        log_dir: the parent folder; ``"csv_logs"`` when ``None``.
        video_format: ``"pt"`` (``torch.save`` of the tensor), ``"memmap"``
            (:class:`tensordict.MemoryMappedTensor`) or ``"mp4"`` (H.264, the ``video`` extra).
        video_fps: frames per second of mp4 files.

    Raises:
        ValueError: for an unknown ``video_format``.

    Examples:
        >>> import tempfile
        >>> logger = CSVLogger("demo", log_dir=tempfile.mkdtemp())
        >>> logger.log_scalar("reward", 1.5, step=100)
        >>> logger.log_hparams({"lr": 3e-4, "gamma": 0.99})
        >>> logger.read_scalars()
        {'reward': [(100, 1.5)]}
        >>> sorted(os.listdir(logger.experiment.log_dir))
        ['scalars', 'texts', 'videos']
    """

    experiment: CSVExperiment

    def __init__(
        self,
        exp_name: str,
        log_dir: str | None = None,
        video_format: str = "pt",
        video_fps: int = 30,
    ) -> None:
        if video_format not in _VIDEO_FORMATS:
            raise ValueError(
                f"CSVLogger: video_format={video_format!r} is not one of {_VIDEO_FORMATS}. Use 'mp4' for "
                "playable files (needs the video extra), 'pt' to keep the tensor."
            )
        self.video_format = video_format
        self.video_fps = video_fps
        super().__init__(exp_name=exp_name, log_dir="csv_logs" if log_dir is None else str(log_dir))

    def _create_experiment(self) -> CSVExperiment:
        free = _free_folder(self.log_dir, _safe_name(self.exp_name))
        if free != self.exp_name:
            warnings.warn(
                f"CSVLogger: {os.path.join(self.log_dir, self.exp_name)!r} holds another run; this run writes to "
                f"{os.path.join(self.log_dir, free)!r}. To continue the earlier run, load its state with "
                "load_state_dict.",
                UserWarning,
                stacklevel=3,
            )
            self.exp_name = free
        return CSVExperiment(
            os.path.join(self.log_dir, self.exp_name), video_format=self.video_format, video_fps=self.video_fps
        )

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        """Appends ``value`` at ``step`` (the count of earlier values of ``name`` when ``None``).

        Raises:
            TypeError: when ``value`` is not a number or a one-element tensor.
            ValueError: when ``name`` would leave the run's folder.
        """
        self.experiment.add_scalar(name, _scalar(name, value), global_step=step)

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        """Writes ``video`` (uint8 ``[T, C, H, W]``, or ``[N, T, C, H, W]`` side by side in mp4).

        ``kwargs`` go to the mp4 writer (``fps``, ``codec``, ``quality``, ...).

        Raises:
            TypeError: for a non-tensor or a dtype other than uint8.
            ValueError: for another layout (the message says the expected one).
        """
        video = check_video(video, name, "CSVLogger.log_video")
        self.experiment.add_video(name, video, global_step=step, **kwargs)

    def log_hparams(self, cfg: Mapping[str, Any]) -> None:
        """Writes ``key: value`` lines, sorted by key, to ``texts/hparams<k>.txt``."""
        if not hasattr(cfg, "items"):
            raise TypeError(f"CSVLogger.log_hparams takes a mapping of names to values, got {type(cfg).__name__}.")
        text = "\n".join(f"{key}: {value}" for key, value in sorted(cfg.items(), key=lambda kv: str(kv[0])))
        self.experiment.add_text("hparams", text)

    def log_histogram(self, name: str, data: Sequence | torch.Tensor, **kwargs: Any) -> None:
        """Writes the histogram of ``data`` (``bins=64``, ``step=`` in ``kwargs``) to ``histograms/``.

        TorchRL's CSV logger raises here; tdrl writes ``left,right,count`` rows.
        """
        values = data if isinstance(data, torch.Tensor) else torch.as_tensor(data)
        self.experiment.add_histogram(name, values, global_step=kwargs.get("step"), bins=int(kwargs.get("bins", 64)))

    def read_scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar of this run: ``{name: [(step, value), ...]}`` (see :func:`read_csv_scalars`)."""
        self.experiment.flush()
        return read_csv_scalars(self.experiment.log_dir)

    def print_log_dir(self) -> None:
        """Prints the files of this run, one path a line."""
        for directory, _, files in sorted(os.walk(self.experiment.log_dir)):
            for file in sorted(files):
                print(os.path.relpath(os.path.join(directory, file), self.experiment.log_dir))

    def close(self) -> None:
        """Closes the run's files; further calls are no-ops."""
        super().close()
        self.experiment.close()

    def _checkpoint_state(self) -> dict[str, Any]:
        experiment = self.experiment
        experiment.flush()
        sizes = {name: handle.tell() for name, handle in experiment.files.items()}
        return {
            "folder": experiment.log_dir,
            "scalar_counter": dict(experiment.scalar_counter),
            "scalar_bytes": sizes,
            "videos_counter": dict(experiment.videos_counter),
            "text_counter": dict(experiment.text_counter),
            "histogram_counter": dict(experiment.histogram_counter),
        }

    def _load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        folder = state.get("folder")
        experiment = self.experiment
        if folder is not None and os.path.abspath(folder) != os.path.abspath(experiment.log_dir):
            if not os.path.isdir(folder):
                raise ValueError(
                    f"CSVLogger.load_state_dict: the saved run's folder {folder!r} does not exist; restore it or "
                    "start a new run without loading the state."
                )
            experiment.close()
            _remove_if_unused(experiment.log_dir)
            experiment = self.experiment = CSVExperiment(
                folder, video_format=self.video_format, video_fps=self.video_fps
            )
            self.log_dir, self.exp_name = os.path.split(os.path.normpath(folder))
        experiment.close()
        sizes = dict(state.get("scalar_bytes", {}))
        scalars = os.path.join(experiment.log_dir, "scalars")
        for name in read_csv_scalars(experiment.log_dir):
            path = os.path.join(scalars, name + ".csv")
            if name in sizes:
                if os.path.getsize(path) > sizes[name]:
                    with open(path, "r+") as handle:
                        handle.truncate(sizes[name])
            else:
                os.remove(path)  # logged after the state was saved: the resumed run logs it again
        experiment.scalar_counter = dict(state.get("scalar_counter", {}))
        experiment.videos_counter = dict(state.get("videos_counter", {}))
        experiment.text_counter = dict(state.get("text_counter", {}))
        experiment.histogram_counter = dict(state.get("histogram_counter", {}))

    def __repr__(self) -> str:
        return f"CSVLogger(exp_name={self.exp_name}, experiment={self.experiment!r})"


def _remove_if_unused(folder: str) -> None:
    """Removes a run folder this logger created and never wrote a file into."""
    for _, _, files in os.walk(folder):
        if files:
            return
    for directory, _, _ in sorted(os.walk(folder), reverse=True):
        os.rmdir(directory)
