"""Shared fixtures: every test starts from the same torch RNG state and restores it after."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import warnings

import pytest
import torch

# Importing torchrl (installed for the differential tests) switches the process-wide start
# method to "spawn" unless one is already fixed, after which every worker process a later
# test starts pays seconds of re-imports. Fixing the platform default here keeps it.
multiprocessing.get_start_method(allow_none=False)


def pytest_configure(config: pytest.Config) -> None:
    """With ``TDRL_REQUIRE_PEERS=1`` (set by scripts/test.sh on its TorchRL venv), missing peers fail the run.

    The differential tests skip when TorchRL or Stable-Baselines3 is absent; in the run meant
    to execute them, a skip would hide that nothing was compared.
    """
    if os.environ.get("TDRL_REQUIRE_PEERS") != "1":
        return
    missing = []
    for name in ("torchrl", "stable_baselines3"):
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        raise pytest.UsageError(
            f"TDRL_REQUIRE_PEERS=1 but {', '.join(missing)} cannot be imported: "
            'install the peers with pip install -e ".[compare]"'
        )


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*out of date.*")
        yield
    torch.set_rng_state(state)


class CheckpointKit:
    """Helpers for tests of replay-buffer state: deep snapshots, and re-sealing an edited checkpoint."""

    @staticmethod
    def snapshot(buffer) -> dict:
        """A deep copy of everything a buffer holds (storage content, sampler, writer, generator)."""
        import copy

        state = buffer.state_dict()

        def own(obj):
            if isinstance(obj, torch.Tensor):
                return obj.clone()
            if hasattr(obj, "clone") and hasattr(obj, "batch_size"):
                return obj.clone()
            if isinstance(obj, dict):
                return {k: own(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [own(v) for v in obj]
            return copy.deepcopy(obj)

        return own(state)

    @staticmethod
    def differences(a, b, where: str = "") -> list[str]:
        """Where two snapshots differ (``[]``: identical, NaN equal to NaN, dtypes and shapes included)."""
        from tensordict import TensorDictBase

        if isinstance(a, TensorDictBase) and isinstance(b, TensorDictBase):
            if a.batch_size != b.batch_size:
                return [f"{where}: batch size {a.batch_size} != {b.batch_size}"]
            return CheckpointKit.differences(a.to_dict(), b.to_dict(), where)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            if a.dtype != b.dtype or a.shape != b.shape:
                return [f"{where}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"]
            same = torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all()))
            return [] if same else [f"{where}: tensors differ"]
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
            return [d for k in a for d in CheckpointKit.differences(a[k], b[k], f"{where}.{k}")]
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                return [f"{where}: length {len(a)} != {len(b)}"]
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in CheckpointKit.differences(x, y, f"{where}[{i}]")]
        if type(a) is not type(b) or a != b:
            return [f"{where}: {a!r} != {b!r}"]
        return []

    @staticmethod
    def reseal(json_path) -> None:
        """Recomputes the checksums of an edited checkpoint, as a writer with a bug would have saved it."""
        import json
        import zlib
        from pathlib import Path

        json_path = Path(json_path)
        document = json.loads(json_path.read_text())
        for name, record in document.get("files", {}).items():
            path = json_path.parent / name
            if isinstance(record, dict) and path.is_file():
                data = path.read_bytes()
                record["bytes"], record["crc32"] = len(data), zlib.crc32(data)
        body = {k: v for k, v in document.items() if k != "checksum"}
        document["checksum"] = {"crc32": zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())}
        json_path.write_text(json.dumps(document))


@pytest.fixture(scope="session")
def checkpoint_kit() -> type[CheckpointKit]:
    return CheckpointKit
