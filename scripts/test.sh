#!/usr/bin/env bash
# Install tdrl with every extra the test suite exercises into ./.venv and run the whole suite.
# The CPU wheel of torch is installed first so that no dependency pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test,compare,dm_control,plot]"
export MUJOCO_GL=${MUJOCO_GL:-egl}
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; fi
exit "$rc"
