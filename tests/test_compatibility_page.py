"""The compatibility page's table of TorchRL names is what the installed tdrl provides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchrl")

ROOT = Path(__file__).resolve().parent.parent


def test_the_torchrl_names_table_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "torchrl_names.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_name_tdrl_exports_is_provided_and_a_missing_one_is_listed():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import torchrl_names
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert torchrl_names.provided("torchrl.checkpoint", ["Checkpoint", "NoSuchName"]) == (
        ["Checkpoint"],
        ["NoSuchName"],
    )
    assert torchrl_names.provided("torchrl.no_such_module", ["X"]) == ([], ["X"])
