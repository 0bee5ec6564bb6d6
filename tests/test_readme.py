"""The README's Python blocks run as written, without a warning; its commands match the scripts."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_a_first_look():
    assert PYTHON_BLOCKS


@pytest.mark.parametrize("code", PYTHON_BLOCKS, ids=lambda code: code.splitlines()[0][:40])
def test_a_readme_block_runs_without_a_warning(code):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DeprecationWarning in the first look is a bug
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


def test_the_readme_and_ci_run_the_same_test_command():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    commands = [line for line in ci if not line.startswith(("set ", "cd "))]
    assert commands == ["bash scripts/test.sh"]
    assert "bash scripts/test.sh" in README


def test_every_setup_path_installs_torch_first_and_upgrades_pip():
    for text in (README, (ROOT / "scripts" / "test.sh").read_text(), (ROOT / "CONTRIBUTING.md").read_text()):
        torch_at = text.index("torch==2.13.0")
        assert text.index("--upgrade pip") < torch_at
        assert torch_at < text.index('-e ".[')
