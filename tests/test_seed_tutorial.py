"""The seed PPO tutorial (shared/seeds/004_*.txt) runs on tdrl with only its imports changed.

The tutorial is a rendered web page: its code lines are picked out of the prose, every
``torchrl`` import becomes ``tdrl``, the frame budget is cut to keep CI fast, and the
program runs in a fresh interpreter. It must finish without importing torchrl.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SEEDS = [
    Path(__file__).resolve().parents[1] / "shared" / "seeds",
    Path(__file__).resolve().parents[2] / "shared" / "seeds",
]
CODE_LINE = re.compile(
    r"""^(\s+\S|import |from |for |with |if |else:|elif |def |class |print\(|del |return|#"""
    r"""|[A-Za-z_][\w.]*(\[[^\]]*\])?\s*(=|\+=)|[A-Za-z_][\w.\[\]]*\(|\)|\]|\})"""
)
PROSE_LINE = re.compile(r"^[A-Z][a-z]+ [a-z]|^\s+(\d+\. |•)")


def _seed_file() -> Path | None:
    for folder in SEEDS:
        found = sorted(folder.glob("004_*.txt")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def extract_code(text: str) -> str:
    """The tutorial's program: its code lines from ``import warnings`` to ``plt.show()``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "import warnings")
    end = next(i for i, line in enumerate(lines) if line.strip() == "plt.show()")
    code = [
        line
        for line in lines[start : end + 1]
        if line.strip() and CODE_LINE.match(line) and not PROSE_LINE.match(line) and "\\" not in line
    ]
    return "\n".join(code)


@pytest.mark.slow
def test_seed_tutorial_runs_with_tdrl_imports(tmp_path):
    seed = _seed_file()
    if seed is None:
        pytest.skip("shared/seeds/004_*.txt is not beside this checkout")
    program = extract_code(seed.read_text())
    compile(program, str(seed), "exec")
    assert program.count("from torchrl") >= 9
    program = program.replace("from torchrl", "from tdrl")
    frames = os.environ.get("TDRL_SEED_FRAMES", "2000")
    program, n = re.subn(r"^total_frames = .*$", f"total_frames = {frames}", program, flags=re.M)
    assert n == 1
    program += '\nimport sys\nassert "torchrl" not in sys.modules, "the tutorial imported torchrl"\nprint("SEED-OK")\n'
    script = tmp_path / "seed_tutorial.py"
    script.write_text(program)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SEED-OK" in proc.stdout
    assert "normalization constant shape: torch.Size([11])" in proc.stdout
