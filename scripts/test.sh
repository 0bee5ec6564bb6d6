#!/usr/bin/env bash
# The whole check: what CI runs (.ci/run calls this and nothing else) and the README's second
# command. On a fresh clone with Python 3.11 it installs everything it needs itself:
#
#   .venv        the newest tensordict in the supported range (what `pip install tdrl` gives):
#                ruff, mypy, the whole test suite, the docs build, the sdist and the wheel
#   .venv-td014  tensordict 0.14.3 with TorchRL 0.14.1 and Stable-Baselines3 (the low end of
#                the range): the whole test suite, differential tests included
#   (temporary)  a clean venv per built artifact: install the wheel, then the sdist; import
#                tdrl and run the console script from outside the source tree
#
# Every venv gets the CPU wheel of torch before anything that depends on it (an unpinned
# torch pulls several GB of CUDA packages). The two suites run side by side, one torch thread
# each (see side_by_side). Arguments are passed to both pytest runs, e.g.
# `bash scripts/test.sh -x`. Every stage runs even when an earlier one fails; the summary
# at the end lists the failures and the exit code is non-zero if there was any.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
export MUJOCO_GL=${MUJOCO_GL:-egl}
export PIP_DISABLE_PIP_VERSION_CHECK=1
HIGH=.venv
LOW=.venv-td014
failed=()
start_all=$SECONDS

stage() {  # stage NAME COMMAND...: run one stage, time it, remember a failure
  local name=$1 start=$SECONDS rc
  shift
  printf '\n==== %s\n' "$name"
  "$@"
  rc=$?
  report "$name" "$rc" $((SECONDS - start))
}

report() {  # report NAME EXIT_CODE SECONDS: the stage's last line; a failure is remembered
  if [ "$2" -eq 0 ]; then
    printf '==== %s: ok (%ds)\n' "$1" "$3"
  else
    printf '==== %s: FAILED with exit code %d (%ds)\n' "$1" "$2" "$3"
    failed+=("$1")
  fi
}

make_venv() {  # make_venv DIR EXTRAS [PIP ARGS...]: create DIR once, upgrade pip, torch first, then tdrl[EXTRAS]
  local dir=$1 extras=$2
  shift 2
  { [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"; } &&
    "$dir/bin/python" -m pip install -q --upgrade pip &&
    "$dir/bin/python" -m pip install -q torch==2.13.0 &&
    "$dir/bin/python" -m pip install -q -e ".[$extras]" "$@" &&
    "$dir/bin/python" - <<'EOF'
import importlib.metadata as md
names = ["torch", "tensordict", "gymnasium", "mujoco", "numpy", "torchrl", "stable-baselines3"]
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
print("versions:", ", ".join(found))
EOF
}

run_pytest() {  # run_pytest DIR ARGS...: exit code 5 (no test collected) is a failure, not a pass
  local dir=$1 rc
  shift
  "$dir/bin/python" -m pytest -q -p no:cacheprovider "$@"
  rc=$?
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: a broken suite, not a pass" >&2; fi
  return "$rc"
}

run_pytest_with_peers() {  # the differential tests must run here: a missing peer fails instead of skipping
  TDRL_REQUIRE_PEERS=1 run_pytest "$LOW" "$@"
}

side_by_side() {  # side_by_side NAME_A FUNCTION_A NAME_B FUNCTION_B: two stages at once, one core each
  # The suites are mostly one process stepping small tensors: one after the other they leave a
  # core idle, and torch's second thread per op costs more than it gives at these sizes. Side
  # by side, one thread each, they share the two cores. A's output is printed as it runs; B's
  # goes to a file, printed whole once B has ended.
  local name_a=$1 fn_a=$2 name_b=$3 fn_b=$4 start=$SECONDS log pid_b rc_a rc_b
  log=$(mktemp)
  OMP_NUM_THREADS=1 "$fn_b" > "$log" 2>&1 &
  pid_b=$!
  printf '\n==== %s (side by side with "%s", whose output follows when it ends)\n' "$name_a" "$name_b"
  OMP_NUM_THREADS=1 "$fn_a"
  rc_a=$?
  report "$name_a" "$rc_a" $((SECONDS - start))
  wait "$pid_b"
  rc_b=$?
  printf '\n==== %s (side by side with "%s")\n' "$name_b" "$name_a"
  cat "$log"
  rm -f "$log"
  report "$name_b" "$rc_b" $((SECONDS - start))
}

tests_high() { run_pytest "$HIGH" "${PYTEST_ARGS[@]}"; }
tests_low() { run_pytest_with_peers "${PYTEST_ARGS[@]}"; }
PYTEST_ARGS=("$@")

stage "install: newest tensordict ($HIGH)" make_venv "$HIGH" "test,dm-control,plot,docs,lint,tensorboard,video,wandb,mlflow,vmas,pettingzoo,ray"
stage "lint: ruff check" "$HIGH/bin/ruff" check tdrl tests benchmarks tutorials docs
stage "lint: ruff format --check" "$HIGH/bin/ruff" format --check tdrl tests benchmarks tutorials docs
stage "types: mypy (pyproject.toml [tool.mypy])" "$HIGH/bin/mypy"
stage "install: tensordict 0.14 with TorchRL ($LOW)" make_venv "$LOW" "test,dm-control,plot,compare,video,vmas,pettingzoo,ray,vision" torchvision==0.28.0
side_by_side "tests: newest tensordict" tests_high "tests: tensordict 0.14 with TorchRL and SB3" tests_low
stage "docs: sphinx, warnings as errors" env PY="$HIGH/bin/python" bash scripts/build_docs.sh
stage "package: sdist and wheel in clean venvs" bash scripts/check_package.sh "$HIGH/bin/python"

printf '\n==== all stages: %ds\n' $((SECONDS - start_all))
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all stages passed"
