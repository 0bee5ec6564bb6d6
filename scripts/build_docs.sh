#!/usr/bin/env bash
# Build the documentation site into docs/_build/html, with every warning an error.
#
#   PY=.venv/bin/python bash scripts/build_docs.sh [more sphinx-build options]
#
# PY is a Python with tdrl and its docs extra installed (torch first, so that pip does not
# pull a CUDA build): pip install torch==2.13.0 && pip install -e ".[docs]".
# The build regenerates the API pages from the __all__ lists and executes the tutorial
# notebooks on TDRL_TUTORIAL_FRAMES frames each (2000 unless set), so it is always a full
# build (-E): an incremental one would keep notebook outputs computed with older code.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=docs/_build/html
export MUJOCO_GL=${MUJOCO_GL:-egl}  # tutorial 3 runs dm_control, which renders offscreen
"$PY" -m sphinx -W --keep-going -E -b html docs "$OUT" "$@"
echo "Documentation built: $(pwd)/$OUT/index.html"
