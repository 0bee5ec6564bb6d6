"""Every tutorial notebook runs top to bottom on a fresh kernel, on a small frame budget."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9]*.ipynb"))
# optional dependencies a notebook cannot run without (the others need only the test extras)
NEEDS = {"07_multi_agent_ppo": ("vmas",)}


def _builder():
    spec = importlib.util.spec_from_file_location("tutorial_build", TUTORIALS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 4, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_source(path):
    build = _builder()
    source = TUTORIALS / "_sources" / (path.stem + ".py")
    assert source.exists(), f"{path.name} has no source {source}"
    import nbformat

    built = build.build(source)
    on_disk = nbformat.read(path, as_version=4)
    assert [c.source for c in on_disk.cells] == [c.source for c in built.cells], (
        f"{path.name} is out of date: run `python tutorials/build.py`"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for module in NEEDS.get(path.stem, ()):
        pytest.importorskip(module)
    monkeypatch.setenv("TDRL_TUTORIAL_FRAMES", os.environ.get("TDRL_TUTORIAL_FRAMES", "2000"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TDRL_TUTORIAL_DIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.slow
def test_multi_agent_notebook_goes_on_where_vmas_cannot_render(tmp_path, monkeypatch):
    """Tutorial 7 without a working renderer (here pyglet cannot be imported): it trains,
    evaluates and says that it skipped the film, with no error and no film."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("vmas")
    blocked = tmp_path / "blocked" / "pyglet"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('pyglet is blocked by this test')\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(blocked.parent), os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.setenv("TDRL_TUTORIAL_FRAMES", "100")  # one copy of the scenario, one batch per algorithm
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TDRL_TUTORIAL_DIR", str(tmp_path))
    nb = nbformat.read(TUTORIALS / "07_multi_agent_ppo.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert text.count("rendering skipped (RuntimeError: VmasEnv.render failed: ImportError") == 2, text[-2000:]
    for name in ("MAPPO", "IPPO"):
        assert f"{name}: deterministic episode reward per agent" in text
    assert not [o for o in outputs if "image/gif" in str(o.get("data", {}).get("text/html", ""))]
