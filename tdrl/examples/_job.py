"""What the main jobs (``python -m tdrl.examples.ppo``, ``... .dqn``) share: checks, outputs, command line.

Not public API. Each job keeps its own configuration dataclass, modules and training
loop; this module holds the rest, so that every job has the same experience:

- user errors (:class:`ConfigError`) found before anything runs, printed as one line on
  stderr with exit code 2 (:func:`fail`, :func:`run`);
- one command-line option per configuration field, its help and default from the field
  (:func:`option`, :func:`build_parser`);
- a new folder per run (:func:`new_run_dir`) holding a CSV log, a learning-curve PNG, a
  JSON summary and a checkpoint, each written crash-safe (a temporary file, synced, then
  renamed over the name);
- a logger of :mod:`tdrl.record` for the figures, the eval returns, the hyperparameters and
  the evaluation videos (``--logger``, ``--video``: :func:`check_recording`,
  :func:`open_recording`, :class:`Recording`).

Examples:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     frames: int = option(1000, "frames to collect")
    >>> build_parser("job", "A job.", Config).parse_args(["--frames", "5"]).frames
    5
    >>> csv_bytes(["frames", "loss"], [[1, "0.5"]]).decode().splitlines()
    ['frames,loss', '1,0.5']
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import importlib.util
import io
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import torch

from tdrl._safe_io import write_file_atomic
from tdrl.envs import TransformedEnv
from tdrl.envs.libs._render import render_error
from tdrl.envs.libs.gym import GymEnv
from tdrl.record import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    PixelRenderTransform,
    TensorboardLogger,
    VideoRecorder,
    WandbLogger,
)

__all__ = [
    "ConfigError",
    "option",
    "Checks",
    "check_device",
    "check_env_id",
    "make_base_env",
    "LOGGERS",
    "check_recording",
    "default_mujoco_gl",
    "make_eval_base_env",
    "Recording",
    "open_recording",
    "render_fps",
    "new_run_dir",
    "csv_bytes",
    "episode_returns",
    "Panel",
    "plot_panels",
    "write_png",
    "write_bytes",
    "write_json",
    "write_checkpoint",
    "write_run",
    "print_done",
    "fail",
    "build_parser",
    "run",
    "print_outputs",
]


class ConfigError(ValueError):
    """A user error in the configuration (printed as one line by the command, exit code 2)."""


def option(default: Any, help: str, choices: Sequence[str] | None = None) -> Any:
    """A dataclass field whose ``help`` becomes its command-line help (and ``choices`` its allowed values)."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, metadata=metadata)


# --- checks ------------------------------------------------------------------------------------
class Checks:
    """The checks every job's ``validate`` makes of its configuration dataclass.

    Each raises :class:`ConfigError` naming the option (``--frames-per-batch`` for the field
    ``frames_per_batch``), the value given and what it must be.

    Examples:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Config:
        ...     frames: int = 0
        >>> Checks(Config()).positive_ints("frames")
        Traceback (most recent call last):
        ...
        tdrl.examples._job.ConfigError: --frames must be a positive integer, got 0
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def need(self, ok: bool, name: str, rule: str) -> None:
        """Raises unless ``ok``: ``--NAME must be RULE, got VALUE``."""
        if not ok:
            raise ConfigError(f"--{name.replace('_', '-')} must be {rule}, got {getattr(self.cfg, name)!r}")

    def positive_ints(self, *names: str) -> None:
        """Each field is an ``int`` > 0."""
        for name in names:
            value = getattr(self.cfg, name)
            self.need(isinstance(value, int) and value > 0, name, "a positive integer")

    def positive_numbers(self, *names: str) -> None:
        """Each field is a finite number > 0."""
        for name in names:
            value = getattr(self.cfg, name)
            self.need(math.isfinite(value) and value > 0, name, "a positive number")

    def common(self, example_env: str) -> None:
        """The fields every job has: ``seed``, ``threads``, ``gamma``, ``out_dir``, ``device``, ``env``,
        ``logger`` and ``video`` (see :func:`check_recording`); and ``frames`` at least one batch of
        ``frames_per_batch``.

        Args:
            example_env: what to suggest for an unknown ``--env``, e.g. ``"--env CartPole-v1"``.
        """
        cfg = self.cfg
        self.positive_ints("frames", "frames_per_batch", "threads")
        self.need(isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**32, "seed", "an integer from 0 to 2**32 - 1")
        if cfg.frames < cfg.frames_per_batch:
            raise ConfigError(
                f"--frames ({cfg.frames}) must be at least one batch (--frames-per-batch {cfg.frames_per_batch}); "
                f"raise --frames or lower --frames-per-batch"
            )
        self.need(0 < cfg.gamma <= 1, "gamma", "in (0, 1]")
        self.need(bool(cfg.out_dir), "out_dir", "a folder path")
        check_device(cfg.device)
        check_env_id(cfg.env, example_env)
        check_recording(cfg.logger, cfg.video)


def check_device(name: str) -> None:
    """Raises :class:`ConfigError` unless ``name`` is a torch device this machine has."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: CUDA is not available on this machine (torch.cuda.is_available() is False); "
                "use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {name}: MPS is not available on this machine; use --device cpu")
        return
    raise ConfigError(f"--device {name}: device type {device.type!r} is not supported; use cpu, cuda, cuda:N or mps")


def check_env_id(env_id: str, example: str) -> None:
    """Raises :class:`ConfigError` (with close matches) unless gymnasium knows ``env_id``.

    Args:
        env_id: the id given.
        example: what to suggest when nothing is close, e.g. ``"--env CartPole-v1"``.
    """
    import gymnasium

    if env_id in gymnasium.envs.registry:
        return
    close = difflib.get_close_matches(env_id, list(gymnasium.envs.registry), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"e.g. {example}"
    raise ConfigError(f"--env {env_id!r} is not a registered gymnasium id; {hint}")


def make_base_env(name: str, device: torch.device, **kwargs: Any) -> GymEnv:
    """``GymEnv(name, **kwargs)``; a missing optional dependency (box2d, ...) becomes a :class:`ConfigError`,
    and so does a MuJoCo that cannot load its OpenGL backend (a ``MUJOCO_GL`` without a working backend
    fails as mujoco is imported, whether or not the env renders)."""
    import gymnasium

    try:
        return GymEnv(name, device=device, **kwargs)
    except gymnasium.error.DependencyNotInstalled as err:
        message = " ".join(str(err).split())
        raise ConfigError(f"--env {name}: {message}") from None
    except Exception as err:
        clear = render_error(err, "GymEnv")
        if clear is err:
            raise
        raise ConfigError(f"--env {name}: {' '.join(str(clear).split())}") from None


# --- logging and video ---------------------------------------------------------------------------
LOGGERS = ("csv", "tensorboard", "wandb", "mlflow", "none")
LOGGER_HELP = (
    "also log the figures, eval returns, hyperparameters and videos in <run>/logs with this tdrl.record logger "
    "(wandb offline unless configured)"
)
VIDEO_HELP = (
    "every this many batches (and after the last), record an evaluation episode as a video through --logger "
    "(0: no video; needs the video extra)"
)
#: what each logger needs installed: (module to import, extra to install)
_LOGGER_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
_VIDEO_PACKAGES = ("imageio", "imageio_ffmpeg")
_VIDEO_MAX_SIDE = 320  # frames are subsampled to at most this many pixels a side (memory of a long episode)
_VIDEO_SKIP = 2  # one frame kept out of two (TorchRL's VideoRecorder default for a single env)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_recording(logger: str, video: int) -> None:
    """Raises :class:`ConfigError` unless ``--logger`` and ``--video`` can be honoured on this machine.

    Checks the values, then that the chosen logger's package (and, for a video, imageio with
    imageio-ffmpeg) is installed, so a missing extra is reported before anything runs.

    Examples:
        >>> check_recording("csv", 0)
        >>> check_recording("none", 5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tdrl.examples._job.ConfigError: --video 5 records through the logger, and --logger is none; ...
    """
    if logger not in LOGGERS:
        raise ConfigError(f"--logger must be one of {', '.join(LOGGERS)}, got {logger!r}")
    if isinstance(video, bool) or not isinstance(video, int) or video < 0:
        raise ConfigError(f"--video must be an integer >= 0 (batches between two videos; 0: none), got {video!r}")
    if video and logger == "none":
        raise ConfigError(
            f"--video {video} records through the logger, and --logger is none; pass --logger csv "
            "(or tensorboard, wandb, mlflow), or --video 0"
        )
    if logger in _LOGGER_PACKAGES:
        module, extra = _LOGGER_PACKAGES[logger]
        if not _installed(module):
            raise ConfigError(
                f"--logger {logger} needs the {module} package, which is not installed; "
                f"pip install 'tdrl[{extra}]' (or use --logger csv)"
            )
    if video:
        missing = [m.replace("_", "-") for m in _VIDEO_PACKAGES if not _installed(m)]
        if missing:
            raise ConfigError(
                f"--video needs {' and '.join(missing)}, not installed; pip install 'tdrl[video]' (or --video 0)"
            )


def default_mujoco_gl() -> None:
    """Sets ``MUJOCO_GL=egl`` when it is unset on a Linux machine without a display.

    MuJoCo reads the variable once, when it is first imported; without a display its default
    (GLFW) cannot render. A value the user set, and a machine with a display (``DISPLAY`` or
    ``WAYLAND_DISPLAY``, or not Linux), are left alone.
    """
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("MUJOCO_GL", "egl")


def make_eval_base_env(name: str, device: torch.device, video: int) -> GymEnv:
    """The evaluation env's ``GymEnv``; with ``video`` made with ``render_mode="rgb_array"`` and rendered once.

    Raises:
        ConfigError: when the env cannot render (no OpenGL backend for MuJoCo: the message names
            ``MUJOCO_GL``; no pygame for the classic-control tasks), so a run that asked for
            video stops before training.
    """
    if not video:
        return make_base_env(name, device)
    import gymnasium

    env = None
    try:
        env = make_base_env(name, device, render_mode="rgb_array")
        env.reset()
        env.render()
    except gymnasium.error.DependencyNotInstalled as err:
        if env is not None:
            env.close()
        raise ConfigError(f"--video: {name} cannot render: {' '.join(str(err).split())}") from None
    except RuntimeError as err:
        if env is not None:
            env.close()
        if "MUJOCO_GL" not in str(err):
            raise
        raise ConfigError(f"--video: {' '.join(str(err).split())}") from None
    return env


def _downsample(frame: Any) -> Any:
    """Every k-th row and column of an ``[H, W, C]`` frame, k the smallest that brings both sides to
    at most ``_VIDEO_MAX_SIDE`` pixels (an episode of full-size frames can take gigabytes)."""
    step = max(1, math.ceil(max(frame.shape[0], frame.shape[1]) / _VIDEO_MAX_SIDE))
    return frame[::step, ::step] if step > 1 else frame


class Recording:
    """What a job sends to a :mod:`tdrl.record` logger: hyperparameters, per-batch figures, eval returns, videos.

    Built by :func:`open_recording`. Figures are logged at ``step`` = frames collected so far,
    under the names of the job's ``log.csv`` columns; a figure the batch does not have (NaN:
    no update yet, no episode ended) is not logged, as ``log.csv`` leaves its cell empty.
    With ``video_every``, :meth:`attach` adds a :class:`~tdrl.record.PixelRenderTransform`
    (switched off) and a :class:`~tdrl.record.VideoRecorder` to the evaluation env, and
    :meth:`filming` switches rendering on for one evaluation episode, then logs it as the
    video ``eval_video`` at that step.

    Args:
        logger: the logger, or ``None`` (``--logger none``: every method does nothing).
        video_every: record a video every this many batches and after the last (0: never).
        log_dir: the folder the logger writes in (``None`` when it writes elsewhere, or nowhere).
    """

    def __init__(self, logger: Logger | None, video_every: int = 0, log_dir: Path | None = None) -> None:
        self.logger = logger
        self.log_dir = log_dir if logger is not None else None
        self.video_every = video_every if logger is not None else 0
        self.renderer: PixelRenderTransform | None = None
        self.recorder: VideoRecorder | None = None

    def attach(self, eval_env: TransformedEnv, seed: int, fps: int) -> None:
        """Add the (switched-off) renderer and the recorder at the end of ``eval_env``'s transforms.

        Adding the renderer resets the env once (to find the frame's shape), so the env is
        seeded again with ``seed``: its evaluation episodes stay those of a run without video.
        """
        if not self.video_every:
            return
        self.renderer = PixelRenderTransform(preproc=_downsample)
        self.recorder = VideoRecorder(self.logger, tag="eval_video", skip=_VIDEO_SKIP, fps=max(1, fps))
        eval_env.append_transform(self.renderer)
        eval_env.append_transform(self.recorder)
        self.renderer.switch("off")
        eval_env.set_seed(seed)

    def video_due(self, batch: int, last: bool) -> bool:
        """Whether the evaluation after batch number ``batch`` (from 0) is filmed."""
        return bool(self.video_every) and (batch % self.video_every == 0 or last)

    @contextlib.contextmanager
    def filming(self, on: bool, step: int) -> Iterator[None]:
        """Render the evaluation episode run inside the block and log it as a video at ``step`` (when ``on``)."""
        if not on or self.renderer is None or self.recorder is None:
            yield
            return
        self.renderer.switch("on")
        try:
            yield
        except BaseException:
            self.recorder.obs.clear()
            raise
        finally:
            self.renderer.switch("off")
        self.recorder.dump(step=step)

    def log_hparams(self, config: dict[str, Any]) -> None:
        """Log the run's configuration."""
        if self.logger is not None:
            self.logger.log_hparams(config)

    def log(self, step: int, figures: dict[str, float]) -> None:
        """Log the figures that are numbers (not NaN) at ``step``."""
        if self.logger is not None:
            self.logger.log_metrics({k: v for k, v in figures.items() if v == v}, step=step)

    def close(self) -> None:
        """Flush and close the logger."""
        if self.logger is not None:
            self.logger.close()


def open_recording(kind: str, run_dir: Path, job: str, video_every: int) -> Recording:
    """The :class:`Recording` of a run: its logger writes inside ``run_dir`` (under ``run_dir/logs``).

    - ``csv``: :class:`~tdrl.record.CSVLogger` in ``run_dir/logs`` (``scalars/<name>.csv``,
      ``texts/hparams0.txt``, ``videos/eval_video_<frames>.mp4``);
    - ``tensorboard``: event files in ``run_dir/logs`` (videos as animated GIFs);
    - ``wandb``: a run named after the folder, its files in ``run_dir/logs``; offline unless
      ``WANDB_MODE`` or ``WANDB_API_KEY`` is set; project ``WANDB_PROJECT`` or ``tdrl``;
    - ``mlflow``: the experiment ``tdrl-<job>``, a run named after the folder, at
      ``MLFLOW_TRACKING_URI`` when set, else a file store ``run_dir/logs/mlruns`` (for which
      ``MLFLOW_ALLOW_FILE_STORE=true`` is set in the environment when unset: MLflow 3.10 and later
      refuse a file store without it);
    - ``none``: nothing.
    """
    if kind == "none":
        return Recording(None)
    folder = run_dir / "logs"
    logger: Logger
    if kind == "csv":
        logger = CSVLogger("logs", log_dir=str(run_dir), video_format="mp4")
    elif kind == "tensorboard":
        logger = TensorboardLogger("logs", log_dir=str(run_dir))
    elif kind == "wandb":
        configured = bool(os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"))
        logger = WandbLogger(
            run_dir.name,
            offline=not configured,
            save_dir=str(folder),
            project=None if os.environ.get("WANDB_PROJECT") else "tdrl",
        )
    elif kind == "mlflow":
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (folder / "mlruns").resolve().as_uri()
        logger = MLFlowLogger(f"tdrl-{job}", uri, run_name=run_dir.name)
        if not uri.startswith("file:"):
            return Recording(logger, video_every)
    else:
        raise ConfigError(f"--logger must be one of {', '.join(LOGGERS)}, got {kind!r}")
    return Recording(logger, video_every, log_dir=folder)


def render_fps(env: GymEnv) -> int:
    """Frames per second of the recorded video: the env's ``render_fps`` over the frames skipped (30 if unknown)."""
    fps = env.env.metadata.get("render_fps") or 30 * _VIDEO_SKIP
    return max(1, round(fps / _VIDEO_SKIP))


# --- outputs -------------------------------------------------------------------------------------
def new_run_dir(parent: Path, env_id: str) -> Path:
    """A new folder ``parent/<env>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when taken).

    Each candidate is created with ``mkdir(exist_ok=False)``, so two runs started in the
    same second never share a folder.

    Raises:
        ConfigError: when ``parent`` cannot be created (a file of that name, no permission).
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--out-dir {str(parent)!r} is a file, not a folder; pass a folder path") from None
    except OSError as err:
        raise ConfigError(
            f"--out-dir {str(parent)!r} cannot be created ({err.strerror}); pass another folder"
        ) from None
    stem = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', env_id)}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        return path
    raise ConfigError(f"--out-dir {str(parent)!r}: 9,999 runs named {stem} already exist")


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """A CSV file's bytes: ``header`` then ``rows`` (values written as given)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def episode_returns(reward: torch.Tensor, done: torch.Tensor, running: float) -> tuple[list[float], float]:
    """The returns of the episodes that end in a batch of consecutive steps, and the running return carried over.

    Examples:
        >>> episode_returns(torch.ones(5), torch.tensor([False, True, False, False, True]), 2.0)
        ([4.0, 3.0], 0.0)
    """
    returns = []
    for r, d in zip(reward.reshape(-1).tolist(), done.reshape(-1).tolist()):
        running += r
        if d:
            returns.append(running)
            running = 0.0
    return returns, running


@dataclass
class Panel:
    """One subplot of a learning curve: ``y`` against frames ``x``."""

    x: Sequence[float]
    y: Sequence[float]
    title: str
    ylabel: str
    markers: bool = False  # a marker per point while they stay apart (at most 40)


def plot_panels(panels: Sequence[Panel], title: str) -> Any:
    """A matplotlib ``Figure`` with one subplot per panel, every axis labelled, x ticks written 20k, 1M, ..."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.8))
    for ax, panel in zip(axes, panels):
        if panel.x:
            few = panel.markers and len(panel.x) <= 40
            ax.plot(panel.x, panel.y, marker="o" if few else None, markersize=4)
        ax.set(title=panel.title, xlabel="frames", ylabel=panel.ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, min_n_ticks=3))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_png(fig: Any, path: Path) -> None:
    """Write a matplotlib figure to ``path`` as a PNG (crash-safe) and close it."""
    import matplotlib.pyplot as plt

    write_file_atomic(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (crash-safe)."""
    write_file_atomic(path, lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (crash-safe)."""
    write_file_atomic(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


def write_checkpoint(path: Path, checkpoint: dict) -> None:
    """``torch.save`` a dict of tensors, numbers and strings (crash-safe; loads with ``weights_only=True``)."""
    write_file_atomic(path, lambda f: torch.save(checkpoint, f))


def write_run(out_dir: Path, csv: bytes, checkpoint: dict, figure: Any, summary: dict) -> dict[str, Path]:
    """Write a run's four outputs into ``out_dir`` (each crash-safe); their paths as ``{"plot", "csv",
    "summary", "checkpoint"}``, the keys of a job's result."""
    paths = {
        "csv": out_dir / "log.csv",
        "checkpoint": out_dir / "checkpoint.pt",
        "plot": out_dir / "learning_curve.png",
        "summary": out_dir / "summary.json",
    }
    write_bytes(paths["csv"], csv)
    write_checkpoint(paths["checkpoint"], checkpoint)
    write_png(figure, paths["plot"])
    write_json(paths["summary"], summary)
    return paths


# --- command line --------------------------------------------------------------------------------
def fail(prog: str, message: str) -> NoReturn:
    """Print a user error as one line on stderr and exit with code 2."""
    sys.stderr.write(f"{prog}: error: {' '.join(message.split())} (see --help)\n")
    raise SystemExit(2)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``PROG: error: MESSAGE (see --help)`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, message)


_METAVARS = {"env": "ID", "device": "DEVICE", "out_dir": "DIR"}


def build_parser(prog: str, description: str, config_cls: type) -> argparse.ArgumentParser:
    """One option per field of the dataclass ``config_cls``, its help and default from the field.

    ``--frames-per-batch`` for ``frames_per_batch``; a field whose default is ``True`` is a
    ``--no-NAME`` switch, one whose default is ``False`` a ``--NAME`` switch.
    """
    parser = _Parser(prog=prog, description=description)
    for f in fields(config_cls):
        help_text = f.metadata["help"].replace("%", "%%")
        flag = "--" + f.name.replace("_", "-")
        if f.default is True:  # a switch that is on unless --no-NAME
            parser.add_argument(
                f"--no-{f.name.replace('_', '-')}",
                dest=f.name,
                action="store_false",
                help=f"do not {help_text} (default: {f.name} on)",
            )
            continue
        if f.default is False:  # a switch that is off unless --NAME
            parser.add_argument(flag, dest=f.name, action="store_true", help=f"{help_text} (default: off)")
            continue
        typ = type(f.default)
        metavar = _METAVARS.get(f.name, {int: "N", float: "X"}.get(typ))
        choices = f.metadata.get("choices")
        parser.add_argument(
            flag,
            type=typ,
            default=f.default,
            choices=choices,
            metavar="{" + ",".join(choices) + "}" if choices else metavar,
            help=f"{help_text} (default: {f.default})",
        )
    return parser


def run(prog: str, cfg: Any, validate: Callable[[Any], None], train: Callable[[Any], dict]) -> dict:
    """Check ``cfg``, then train; a :class:`ConfigError` from either ends the process via :func:`fail`.

    A failure during training is a genuine crash and keeps its traceback.
    """
    try:
        validate(cfg)
    except ConfigError as err:
        fail(prog, str(err))
    warnings.filterwarnings("ignore", message=".*out of date.*")
    try:
        return train(cfg)
    except ConfigError as err:  # raised before training starts (env, action space, out-dir)
        fail(prog, str(err))


def print_done(result: dict) -> None:
    """Print a finished run's frames, time and eval returns, then where its outputs went."""
    logs = result["logs"]
    print(
        f"\ndone: {logs['frames'][-1]} frames in {result['wall_s']:.0f} s; "
        f"eval return {logs['eval_return'][0]:.1f} -> {logs['eval_return'][-1]:.1f} "
        f"(best {max(logs['eval_return']):.1f})"
    )
    print_outputs(result)


def print_outputs(result: dict) -> None:
    """Print where a run wrote its plot, CSV, summary, checkpoint and logger's files."""
    print(f"outputs in {result['out_dir']}:")
    for key in ("plot", "csv", "summary", "checkpoint", "log_dir"):
        if result.get(key) is not None:
            print(f"  {key + ':':<12}{result[key]}")
