"""Keeping the last few checkpoints of a run, and the best one, in one folder."""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from tdrl.checkpoint.adapters import CheckpointError, CheckpointLoadResult, CheckpointOptions
from tdrl.checkpoint.checkpoint import Checkpoint, CheckpointStrictness

__all__ = ["CheckpointRotation", "CheckpointBest", "CheckpointMetricMode"]

CheckpointMetricMode = Literal["min", "max"]
"""Whether a smaller (``"min"``) or larger (``"max"``) metric is better."""
CheckpointBest = tuple[str, CheckpointMetricMode]
"""``(metadata key, mode)``: which saved metric picks the best checkpoint."""


class _Entry(NamedTuple):
    step: int
    path: Path
    metric: float | None


class CheckpointRotation:
    """Saves checkpoints as ``<directory>/<prefix>-<step>`` and deletes all but the newest few.

    Args:
        directory: the folder holding the checkpoints (created at the first save).
        keep_last: how many of the newest checkpoints to keep (>= 1).
        keep_best: ``(metadata key, "min" | "max")``: also keep the checkpoint whose saved
            metric is best; every save must then give that metric.
        prefix: the checkpoints' name prefix.

    Raises:
        ValueError: for ``keep_last < 1``, a prefix with a path separator, or a bad ``keep_best``.

    Examples:
        >>> import tempfile, torch
        >>> from tdrl.checkpoint import Checkpoint, CheckpointRotation
        >>> rotation = CheckpointRotation(tempfile.mkdtemp(), keep_last=2, keep_best=("return", "max"))
        >>> ckpt = Checkpoint(net=torch.nn.Linear(2, 1))
        >>> for step, ret in [(1, 5.0), (2, 9.0), (3, 4.0), (4, 6.0)]:
        ...     _ = rotation.save(ckpt, step=step, metadata={"return": ret})
        >>> [p.name for p in rotation.checkpoints()], rotation.best().name
        (['checkpoint-000000000002', 'checkpoint-000000000003', 'checkpoint-000000000004'], 'checkpoint-000000000002')
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int,
        keep_best: CheckpointBest | None = None,
        prefix: str = "checkpoint",
    ) -> None:
        if type(keep_last) is not int or keep_last < 1:
            raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
        if not isinstance(prefix, str) or prefix in ("", ".", "..") or "/" in prefix or "\\" in prefix:
            raise ValueError(f"prefix must be a plain name, got {prefix!r}")
        if keep_best is not None and (
            not isinstance(keep_best, tuple)
            or len(keep_best) != 2
            or not isinstance(keep_best[0], str)
            or keep_best[1] not in ("min", "max")
        ):
            raise ValueError(f"keep_best must be (metadata key, 'min' or 'max'), got {keep_best!r}")
        self.directory = Path(os.path.abspath(os.path.expanduser(directory)))
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.prefix = prefix

    def save(
        self,
        checkpoint: Checkpoint,
        *,
        step: int,
        metadata: Mapping[str, Any] | None = None,
        components: Collection[str] | None = None,
        component_options: Mapping[str, CheckpointOptions] | None = None,
    ) -> Path:
        """Saves ``checkpoint`` as the one of ``step``, then deletes those no longer kept.

        Raises:
            KeyError: with ``keep_best``, when ``metadata`` lacks its metric.
            ValueError: for a negative step or a metric that is not a finite number.
        """
        if type(step) is not int or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        metadata = dict(metadata or {})
        if self.keep_best is not None:
            key = self.keep_best[0]
            if key not in metadata:
                raise KeyError(f"metadata lacks {key!r}, the metric keep_best ranks checkpoints by; pass it to save()")
            if _metric(metadata[key]) is None:
                raise ValueError(f"metadata[{key!r}] must be a finite number, got {metadata[key]!r}")
        path = checkpoint.save(
            self.directory / f"{self.prefix}-{step:012d}",
            components=components,
            component_options=component_options,
            metadata=metadata,
        )
        self.prune()
        return path

    def _entries(self) -> list[_Entry]:
        if not self.directory.is_dir():
            return []
        entries = []
        head = f"{self.prefix}-"
        for path in self.directory.iterdir():
            digits = path.name[len(head) :]
            if not path.name.startswith(head) or not digits.isdigit():
                continue
            try:
                manifest = Checkpoint.manifest(path)
            except (CheckpointError, OSError):
                continue
            metric = None
            if self.keep_best is not None:
                metric = _metric(manifest.get("metadata", {}).get(self.keep_best[0]))
            entries.append(_Entry(int(digits), path, metric))
        return sorted(entries)

    def _best(self, entries: list[_Entry]) -> _Entry | None:
        ranked = [e for e in entries if e.metric is not None]
        if self.keep_best is None or not ranked:
            return None
        if self.keep_best[1] == "max":
            return max(ranked, key=lambda e: (e.metric, e.step))
        return min(ranked, key=lambda e: (e.metric, -e.step))

    def checkpoints(self) -> tuple[Path, ...]:
        """The readable checkpoints, oldest step first."""
        return tuple(e.path for e in self._entries())

    def latest(self) -> Path | None:
        """The checkpoint of the highest step, or ``None``."""
        entries = self._entries()
        return entries[-1].path if entries else None

    def best(self) -> Path | None:
        """The checkpoint with the best metric (``keep_best``), or ``None``."""
        best = self._best(self._entries())
        return None if best is None else best.path

    def prune(self) -> tuple[Path, ...]:
        """Deletes the checkpoints not kept; returns their paths."""
        entries = self._entries()
        kept = {e.path for e in entries[-self.keep_last :]}
        best = self._best(entries)
        if best is not None:
            kept.add(best.path)
        removed = []
        for entry in entries:
            if entry.path not in kept:
                grave = entry.path.with_name(f".{entry.path.name}.deleted-{uuid.uuid4().hex}")
                os.replace(entry.path, grave)  # gone for readers at once, however the delete ends
                shutil.rmtree(grave, ignore_errors=True)
                removed.append(entry.path)
        return tuple(removed)

    def load_latest(
        self,
        checkpoint: Checkpoint,
        *,
        components: Collection[str] | None = None,
        component_options: Mapping[str, CheckpointOptions] | None = None,
        map_location: Any = None,
        tensor_load_kwargs: Mapping[str, Any] | None = None,
        strict: CheckpointStrictness | None = None,
    ) -> CheckpointLoadResult:
        """Restores ``checkpoint`` from the newest checkpoint (see :meth:`Checkpoint.load`).

        Raises:
            FileNotFoundError: when there is none yet.
        """
        latest = self.latest()
        if latest is None:
            raise FileNotFoundError(f"no checkpoint named {self.prefix}-<step> in {self.directory} yet")
        return checkpoint.load(
            latest,
            components=components,
            component_options=component_options,
            map_location=map_location,
            tensor_load_kwargs=tensor_load_kwargs,
            strict=strict,
        )


def _metric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
