"""TorchRL's RL tutorials run on tdrl with only the imports swapped (on a cut frame budget).

Each script in ``tests/torchrl_tutorials/`` is our own program that makes one TorchRL
tutorial's imports and calls in the tutorial's order, with ``torchrl`` replaced by
``tdrl``; ``TUTORIAL_SCALE`` cuts its frame budget. Each runs in a fresh interpreter in
a scratch directory, as a user would run it, so a hang or a crash cannot leak into the
test process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "torchrl_tutorials"
# optional packages a tutorial cannot run without
NEEDS: dict[str, tuple[str, ...]] = {
    "multiagent_ppo": ("vmas",),
    "torchrl_envs": ("dm_control",),
    "multi_task": ("dm_control",),
    "multiagent_competitive_ddpg": ("vmas",),
    "coding_ddpg": ("mujoco",),
}
# tutorials that take more than a few seconds even on their cut budget
SLOW = {
    "dqn_with_rnn",
    "coding_dqn",
    "export",
    "multi_task",
    "torchrl_demo",
    "multiagent_competitive_ddpg",
    "coding_ddpg",
}
TIMEOUT_S = 300


def _scripts() -> list:
    params = []
    for path in sorted(SCRIPTS.glob("*.py")):
        marks = [pytest.mark.slow] if path.stem in SLOW else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_every_tutorial_script_runs_nothing_on_import():
    for path in SCRIPTS.glob("*.py"):
        text = path.read_text()
        assert 'if __name__ == "__main__":' in text, f"{path.name} must run its program only as a script"
        imports = [line.split() for line in text.splitlines() if line.lstrip().startswith(("import ", "from "))]
        assert not [w for w in imports if w[1].split(".")[0] == "torchrl"], f"{path.name} must import tdrl, not torchrl"


@pytest.mark.parametrize("path", _scripts())
def test_torchrl_tutorial_runs_on_tdrl(path, tmp_path):
    for module in NEEDS.get(path.stem, ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{path.stem} needs {module}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TUTORIAL_SCALE": os.environ.get("TDRL_TUTORIAL_SCALE", "0.02"),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    try:
        done = subprocess.run(
            [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{path.name} did not finish within {TIMEOUT_S} s; its output so far:\n{err.stdout}\n{err.stderr}")
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
