#!/usr/bin/env bash
# Build tdrl's sdist and wheel and check that each installs and works in a clean venv.
#
#   bash scripts/check_package.sh [PYTHON]
#
# PYTHON (default .venv/bin/python) must have `build` installed (the `test` extra has it).
# The clean venvs are created with the same interpreter's base Python, get the CPU wheel of
# torch first, then the artifact; the checks run from a temporary folder, so `import tdrl`
# cannot pick up the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILDER=${1:-.venv/bin/python}
BASE=$("$BUILDER" -c 'import sys; print(sys._base_executable)')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BUILDER" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
if grep -i "deprecat" "$WORK/build.log"; then
  echo "the build printed a deprecation warning (above): fix pyproject.toml" >&2
  exit 1
fi
wheel=$(ls "$WORK"/dist/tdrl-*.whl)
sdist=$(ls "$WORK"/dist/tdrl-*.tar.gz)
echo "built $(basename "$sdist") and $(basename "$wheel")"

# what the wheel must carry, and must not
listing=$("$BUILDER" -m zipfile -l "$wheel")
for needed in tdrl/py.typed tdrl/_compat.py tdrl/examples/ppo.py "licenses/LICENSE"; do
  grep -q "$needed" <<<"$listing" || { echo "the wheel lacks $needed" >&2; exit 1; }
done
if grep -qE "^tests/|benchmarks/|tutorials/" <<<"$listing"; then
  echo "the wheel carries files outside tdrl/" >&2
  exit 1
fi

"$BASE" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q torch==2.13.0

smoke() {  # what a user does first, from outside the source tree
  (
    cd "$WORK"
    "$VPY" - <<'EOF'
import importlib.resources
from pathlib import Path

import tdrl
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import check_env_specs

location = Path(tdrl.__file__).resolve()
assert "site-packages" in location.parts, f"tdrl was imported from {location}, not from the installed package"
assert importlib.resources.files("tdrl").joinpath("py.typed").is_file(), "py.typed is missing"
import tdrl.collectors, tdrl.data, tdrl.envs, tdrl.modules, tdrl.objectives, tdrl.specs, tdrl.testing  # noqa: E401,F401

env = GymEnv("CartPole-v1")
check_env_specs(env)
rollout = env.rollout(5)
assert rollout.batch_size[0] >= 1
print(f"tdrl {tdrl.__version__} imports from {location.parent} and steps CartPole-v1")
EOF
    "$WORK/venv/bin/tdrl-ppo" --help >/dev/null
    echo "the tdrl-ppo console script answers --help"
  )
}

echo "-- the wheel"
"$VPY" -m pip install -q "$wheel"
smoke
"$VPY" -m pip uninstall -q -y tdrl
echo "-- the sdist"
"$VPY" -m pip install -q "$sdist"
smoke
