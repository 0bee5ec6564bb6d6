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

The writing of the outputs (``_job_outputs.py``) and the :class:`Recording` a logger gets
(``_job_recording.py``) live beside this module; a job reaches them through it.

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
import difflib
import importlib.util
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import field, fields
from pathlib import Path
from typing import Any, NoReturn

import torch

from tdrl._safe_io import write_file_atomic as write_file_atomic  # every output of a job goes through it
from tdrl.envs.libs._render import render_error
from tdrl.envs.libs.gym import GymEnv
from tdrl.examples._job_outputs import (
    Panel,
    csv_bytes,
    episode_returns,
    plot_panels,
    write_bytes,
    write_checkpoint,
    write_json,
    write_png,
    write_run,
)
from tdrl.examples._job_recording import _VIDEO_MAX_SIDE as _VIDEO_MAX_SIDE
from tdrl.examples._job_recording import _VIDEO_SKIP as _VIDEO_SKIP
from tdrl.examples._job_recording import Recording, render_fps
from tdrl.examples._job_recording import _downsample as _downsample
from tdrl.record import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorboardLogger,
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


# --- outputs (the files themselves are written by _job_outputs) ---------------------------------
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
