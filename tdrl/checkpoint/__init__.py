"""Training-state checkpoints with TorchRL's names: one call saves or restores a whole run.

:class:`Checkpoint` gathers named components (modules, optimizers, LR schedulers, a
collector, a replay buffer, :class:`GlobalRNGState`, JSON values) and writes them as one
folder, crash-safe (a save that fails or is killed leaves the previous checkpoint whole)
and without pickle (JSON plus raw tensor bytes, every file checksummed). A load checks
everything before it restores anything. :class:`CheckpointRotation` keeps the last few
checkpoints of a run (and the best one).

Examples:
    >>> import tempfile, torch
    >>> from tdrl.checkpoint import Checkpoint, GlobalRNGState
    >>> net = torch.nn.Linear(3, 1)
    >>> progress = {"frames": 4096}
    >>> ckpt = Checkpoint(net=net, progress=progress, rng=GlobalRNGState())
    >>> path = ckpt.save(tempfile.mkdtemp() + "/latest")
    >>> sorted(Checkpoint.manifest(path)["components"])
    ['net', 'progress', 'rng']
"""

from __future__ import annotations

from tdrl.checkpoint.adapters import (
    CheckpointAdapter,
    CheckpointError,
    CheckpointLoadResult,
    CheckpointOptions,
    DumpLoadCheckpointAdapter,
    JSONCheckpointAdapter,
    StateDictCheckpointAdapter,
    StateDictFormat,
)
from tdrl.checkpoint.checkpoint import Checkpoint, CheckpointFormat, CheckpointStrictness
from tdrl.checkpoint.rng import GlobalRNGState
from tdrl.checkpoint.rotation import CheckpointBest, CheckpointMetricMode, CheckpointRotation

__all__ = [
    "Checkpoint",
    "CheckpointAdapter",
    "CheckpointBest",
    "CheckpointError",
    "CheckpointFormat",
    "CheckpointLoadResult",
    "CheckpointMetricMode",
    "CheckpointOptions",
    "CheckpointRotation",
    "CheckpointStrictness",
    "DumpLoadCheckpointAdapter",
    "GlobalRNGState",
    "JSONCheckpointAdapter",
    "StateDictCheckpointAdapter",
    "StateDictFormat",
]
