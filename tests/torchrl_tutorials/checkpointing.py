"""TorchRL's "Unified checkpointing in TorchRL" tutorial (checkpointing), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``: a standalone ``Checkpoint`` of a policy, optimizer, progress dict, RNG state and
config saved as a directory, a partial load of the policy alone, a single-file archive
(which tdrl refuses, as docs/compatibility.md says), a trainer-style checkpoint object,
and a custom ``CheckpointAdapter``. The tutorial has no frame budget: ``scale`` is not
used. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from tdrl.checkpoint import Checkpoint, CheckpointAdapter, CheckpointOptions, GlobalRNGState


def known_gap(err: Exception, text: str) -> None:
    """Re-raise ``err`` unless it is the documented difference between tdrl and TorchRL."""
    if text not in str(err):
        raise err


class Cursor:
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset


class CursorAdapter(CheckpointAdapter):
    adapter_id = "tutorial.cursor"

    def save(self, component, path, *, args, kwargs):
        del args, kwargs
        path.mkdir(parents=True, exist_ok=True)
        (path / "cursor.json").write_text(json.dumps(component.offset))

    def load(self, component, path, *, map_location, tensor_load_kwargs, args, kwargs):
        del map_location, tensor_load_kwargs, args, kwargs
        component.offset = json.loads((path / "cursor.json").read_text())


def main():
    temporary_directory = tempfile.TemporaryDirectory()
    root = Path(temporary_directory.name)
    policy = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
    progress = {"frames": 128}
    checkpoint = Checkpoint(
        policy=policy,
        optimizer=optimizer,
        trainer_state=progress,
        rng=GlobalRNGState(),
        config={"learning_rate": 3e-4},
    )
    directory_path = checkpoint.save(root / "step-128")

    restored_policy = torch.nn.Linear(4, 2)
    load_result = Checkpoint(policy=restored_policy).load(directory_path, components={"policy"}, map_location="cpu")
    assert load_result.loaded == {"policy"}
    assert load_result.unrequested == {"config", "optimizer", "rng", "trainer_state"}
    assert torch.equal(restored_policy.weight, policy.weight)

    try:
        archive_path = checkpoint.save(root / "step-128.torchrl", format="archive")
    except ValueError as err:
        # tdrl writes no single-file archives (docs/compatibility.md): check that it says so
        known_gap(err, "use format='directory'")
    else:
        archive_manifest = Checkpoint.manifest(archive_path)
        assert archive_manifest["container"] == "archive"

    trainer_checkpoint = Checkpoint(format="directory", rng=GlobalRNGState())
    print(trainer_checkpoint)

    cursor_path = root / "cursor-checkpoint"
    Checkpoint().register("cursor", Cursor(7), adapter=CursorAdapter(), options=CheckpointOptions()).save(cursor_path)
    restored_cursor = Cursor()
    Checkpoint().register("cursor", restored_cursor, adapter=CursorAdapter()).load(cursor_path)
    assert restored_cursor.offset == 7
    temporary_directory.cleanup()


if __name__ == "__main__":
    main()
