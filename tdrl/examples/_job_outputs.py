"""A job's outputs: its CSV log, learning-curve figure, JSON summary and checkpoint, each written crash-safe.

Not public API; re-exported by :mod:`tdrl.examples._job`. Every file goes through
:func:`tdrl._safe_io.write_file_atomic` (a temporary file, synced, then renamed over the name).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tdrl._safe_io import write_file_atomic

__all__ = [
    "csv_bytes",
    "episode_returns",
    "Panel",
    "plot_panels",
    "write_png",
    "write_bytes",
    "write_json",
    "write_checkpoint",
    "write_run",
]


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
