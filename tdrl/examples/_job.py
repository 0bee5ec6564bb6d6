"""What the main jobs (``python -m tdrl.examples.ppo``, ``... .dqn``) share: checks, outputs, command line.

Not public API. Each job keeps its own configuration dataclass, modules and training
loop; this module holds the rest, so that every job has the same experience:

- user errors (:class:`ConfigError`) found before anything runs, printed as one line on
  stderr with exit code 2 (:func:`fail`, :func:`run`);
- one command-line option per configuration field, its help and default from the field
  (:func:`option`, :func:`build_parser`);
- a new folder per run (:func:`new_run_dir`) holding a CSV log, a learning-curve PNG, a
  JSON summary and a checkpoint, each written crash-safe (a temporary file, synced, then
  renamed over the name).

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
import csv
import difflib
import io
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import torch

from tdrl._safe_io import write_file_atomic
from tdrl.envs.libs.gym import GymEnv

__all__ = [
    "ConfigError",
    "option",
    "Checks",
    "check_device",
    "check_env_id",
    "make_base_env",
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


def option(default: Any, help: str) -> Any:
    """A dataclass field whose ``help`` becomes its command-line help."""
    return field(default=default, metadata={"help": help})


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
        """The fields every job has: ``seed``, ``threads``, ``gamma``, ``out_dir``, ``device``, ``env``;
        and ``frames`` at least one batch of ``frames_per_batch``.

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


def make_base_env(name: str, device: torch.device) -> GymEnv:
    """``GymEnv(name)``; a missing optional dependency (box2d, ...) becomes a :class:`ConfigError`."""
    import gymnasium

    try:
        return GymEnv(name, device=device)
    except gymnasium.error.DependencyNotInstalled as err:
        message = " ".join(str(err).split())
        raise ConfigError(f"--env {name}: {message}") from None


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
        parser.add_argument(
            flag, type=typ, default=f.default, metavar=metavar, help=f"{help_text} (default: {f.default})"
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
    """Print where a run wrote its plot, CSV, summary and checkpoint."""
    print(f"outputs in {result['out_dir']}:")
    for key in ("plot", "csv", "summary", "checkpoint"):
        print(f"  {key + ':':<12}{result[key]}")
