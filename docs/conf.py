"""Sphinx configuration of tdrl's documentation site.

Build with warnings as errors (``scripts/build_docs.sh`` runs this, with ``-E`` so that
the notebooks are always executed again)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Two folders under ``docs/`` are generated at every build and are git-ignored:
``docs/api/`` (the API pages, from the ``__all__`` lists: ``_ext/tdrl_apigen.py``) and
``docs/tutorials/`` (copies of the notebooks in ``tutorials/``, see ``_copy_tutorials``).
The notebooks' own files go to ``docs/_build/tutorial_files/``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# Document the tree this conf.py belongs to, even when the venv has tdrl installed
# (editable) from another checkout; the notebook kernels (subprocesses) get the same path.
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# The notebooks run at build time on a small frame budget (the test suite's), unless the
# caller asks for another one. The files they write go under the build folder, emptied at
# each build (tutorial 4 refuses to overwrite the buffer it saved the time before).
TUTORIAL_FILES = DOCS / "_build" / "tutorial_files"
os.environ.setdefault("TDRL_TUTORIAL_FRAMES", "2000")
os.environ.setdefault("TDRL_TUTORIAL_DIR", str(TUTORIAL_FILES))
# dm_control (tutorial 3) renders offscreen; without a display it needs EGL.
os.environ.setdefault("MUJOCO_GL", "egl")

import tdrl  # noqa: E402  (after sys.path is set)

project = "tdrl"
author = "the tdrl authors"
copyright = "the tdrl authors"
release = version = tdrl.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",  # Markdown pages (MyST) and notebooks; registers .md and .ipynb
    "tdrl_apigen",  # writes docs/api/ from the __all__ lists at builder-inited
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext", "_generated"]
html_theme = "furo"
html_title = f"tdrl {release}"

# --- API pages -----------------------------------------------------------------------------
autosummary_generate = False  # tdrl_apigen writes the pages; autosummary only draws tables
autodoc_member_order = "bysource"
autodoc_typehints = "description"  # signatures stay short; types go next to each argument
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True  # show `device=None`, not the repr of a default object
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not as attribute entries that duplicate members
napoleon_use_rtype = False
napoleon_use_keyword = False  # a "Keyword Args:" entry may name several arguments ("actor, critic: ...")
napoleon_preprocess_types = True  # "int, optional" is a type and a remark, not one type name

# Every cross-reference must resolve: a broken one is usually a docstring that napoleon
# misread (grouped arguments, a property summary taken for a type). The exceptions are
# targets this offline build cannot link (no intersphinx: no network), i.e. not our content:
# other libraries' names as the type hints spell them.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(torch|tensordict|ray|numpy|np|nn|collections\.abc|contextlib|typing|abc|enum|numbers|os|pathlib|tempfile|types)(\..*)?",
    ),
    # short names that other libraries' docstrings use unqualified (tensordict's NormalParamExtractor
    # writes `Number`, which tdrl re-exports from tdrl.modules); without intersphinx they cannot resolve
    (r"py:class", r"(Tensor|TensorDict|TensorDictBase|Module|Sequence|Callable|Iterator|Any|Number)"),
]

# --- notebooks (myst-nb) -------------------------------------------------------------------
nb_execution_mode = "force"  # run every notebook at every build: the outputs shown are today's
nb_execution_raise_on_error = True  # an error in a cell fails the build
nb_execution_show_tb = True  # and the log shows its traceback
nb_execution_timeout = 900  # seconds per cell; the longest (tutorial 1 training) takes about a minute
nb_merge_streams = True  # one block per cell for stdout, not one per print
# stderr holds tqdm's progress bar (its carriage-return frames render as "0%|") and other
# libraries' notices that quote this machine's paths (tqdm's "IProgress not found", MuJoCo's
# deprecations); the results are on stdout and in the figures. Errors still fail the build.
nb_output_stderr = "remove"
myst_enable_extensions = ["colon_fence", "dollarmath"]


def _copy_tutorials(app) -> None:
    """Copy ``tutorials/[0-9]*.ipynb`` into ``docs/tutorials/`` (git-ignored).

    Sphinx reads documents only under its source folder, and the notebooks belong in
    ``tutorials/`` beside their sources and the test that runs them. A copy (not a symlink)
    works on every platform; an unchanged notebook is not rewritten, so Sphinx's incremental
    build sees it as unchanged. A notebook removed from ``tutorials/`` is removed here too.
    """
    src, dst = ROOT / "tutorials", DOCS / "tutorials"
    dst.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted(src.glob("[0-9]*.ipynb"))}
    for stale in {p.name for p in dst.glob("*.ipynb")} - set(wanted):
        (dst / stale).unlink()
    for name, path in wanted.items():
        target = dst / name
        if not target.exists() or target.read_bytes() != path.read_bytes():
            shutil.copyfile(path, target)


def _empty_tutorial_files(app) -> None:
    """Start each build with an empty folder for the notebooks' files, when it is ours."""
    if Path(os.environ["TDRL_TUTORIAL_DIR"]) == TUTORIAL_FILES:
        shutil.rmtree(TUTORIAL_FILES, ignore_errors=True)
        TUTORIAL_FILES.mkdir(parents=True)


def setup(app) -> None:
    app.connect("builder-inited", _copy_tutorials)
    app.connect("builder-inited", _empty_tutorial_files)
