"""Where one PPO minibatch update spends its time: tdrl's ClipPPOLoss against the plain-torch step.

The setup is ``bench_ppo_step``'s (the seed tutorial's networks, batch 64). Three parts are
timed for each program, interleaved, as thread CPU microseconds per minibatch (medians):

- ``forward``: the loss call alone (tdrl: ``loss(data)``, with its diagnostics and its
  finiteness check; plain: the hand-written loss);
- ``fwd+bwd``: the loss and ``backward()`` (gradients dropped after each call);
- ``step``: the whole update, ``bench_ppo_step``'s figure (plus clipping and Adam).

``tdrl-general`` is tdrl's loss with its tensor-only step switched off
(``tdrl.objectives._ppo_fast``): the general path, with its TensorDict plumbing.

On a machine shared with other jobs these timings move by several percent from run to run.
``--callgrind`` counts instructions instead (each program in its own process under
``valgrind --tool=callgrind``, only the timed steps counted): deterministic, blind to cache
effects and slow (minutes), it is the figure to compare commits with on a busy machine.

Run: ``python -m benchmarks.profile_ppo_step [--rounds 30] [--profile] [--callgrind]``.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable

import torch

from benchmarks import bench_ppo_step as ppo
from benchmarks.bench_gae import call_times

Programs = dict[str, dict[str, Callable[[], object]]]


PROGRAMS = ("plain", "tdrl", "tdrl-general")


def _general(part: Callable[[], object]) -> Callable[[], object]:
    """``part`` run with tdrl's PPO tensor-only step switched off."""
    from tdrl.objectives import _ppo_fast

    def run() -> object:
        _ppo_fast.ENABLED["on"] = False
        try:
            return part()
        finally:
            _ppo_fast.ENABLED["on"] = True

    return run


def _programs() -> Programs:
    """``{"plain": parts, "tdrl": parts, "tdrl-general": parts}``, each part a closure over its own
    copy of the networks."""
    actor_net, critic_net = ppo._nets()
    data = ppo._data(actor_net)
    programs: Programs = {}
    for name, build in (("plain", ppo._plain_parts), ("tdrl", ppo._tdrl_parts)):
        programs[name] = build(actor_net, critic_net, data)
    general = ppo._tdrl_parts(actor_net, critic_net, data)
    programs["tdrl-general"] = {part: _general(fn) for part, fn in general.items()}
    return programs


def measure(rounds: int = 30) -> dict[str, dict[str, float]]:
    """Median thread CPU microseconds per call of each part of each program."""
    programs = _programs()
    calls = {f"{prog}/{part}": fn for prog, parts in programs.items() for part, fn in parts.items()}
    for fn in calls.values():  # warm-up (and Adam's state)
        for _ in range(5):
            fn()
    seconds = call_times(calls, rounds=rounds, per_round=5)
    out: dict[str, dict[str, float]] = {}
    for key, value in seconds.items():
        prog, part = key.split("/")
        out.setdefault(part, {})[prog] = 1e6 * value
    return out


def profile(lines: int = 30) -> str:
    """A cProfile of tdrl's forward (tottime), to see its Python layers next to the ops."""
    forward = _programs()["tdrl"]["forward"]
    for _ in range(20):
        forward()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(500):
        forward()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(lines)
    return text.getvalue()


# ------------------------------------------------------------------------------ instruction counts
def _count_steps(program: str, steps: int) -> None:
    """Runs ``steps`` updates inside a ctypes callback: callgrind's ``--toggle-collect=ffi_call``
    then counts those and nothing else (not the imports, not the warm-up)."""
    step = _programs()[program]["step"]
    for _ in range(3):
        step()

    def timed() -> None:
        for _ in range(steps):
            step()

    ctypes.CFUNCTYPE(None)(timed)()


def callgrind(steps: int = 5) -> dict[str, float]:
    """Instructions per update of each program, each counted in its own valgrind process."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind on the PATH (apt-get install valgrind)")
    counts: dict[str, float] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for program in PROGRAMS:
            cmd = [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=ffi_call",
                f"--callgrind-out-file={os.path.join(tmp, program)}.out",
                sys.executable,
                "-m",
                "benchmarks.profile_ppo_step",
                "--count",
                program,
                str(steps),
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600, check=False)
            found = re.search(r"Collected\s*:\s*([0-9]+)", result.stderr)
            if result.returncode != 0 or found is None:
                raise SystemExit(f"callgrind run of {program} failed:\n{result.stderr[-2000:]}")
            counts[program] = int(found.group(1)) / steps
    return counts


def main() -> None:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of tdrl's forward")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead")
    parser.add_argument("--count", nargs=2, metavar=("PROGRAM", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.count:
        _count_steps(args.count[0], int(args.count[1]))
        return
    if args.callgrind:
        counts = callgrind()
        print("instructions per update: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in counts.items()))
        for program in PROGRAMS[1:]:
            print(f"{program} / plain = {counts[program] / counts['plain']:.3f}x (instructions)")
        return
    figures = measure(args.rounds)
    print(
        f"{'part':8} {'tdrl us':>9} {'plain us':>9} {'extra us':>9} {'ratio':>6} {'general us':>11} {'ratio':>6}"
        "  (thread CPU per minibatch)"
    )
    for part, times in figures.items():
        t, p, g = times["tdrl"], times["plain"], times["tdrl-general"]
        print(f"{part:8} {t:9.1f} {p:9.1f} {t - p:9.1f} {t / p:6.3f} {g:11.1f} {g / p:6.3f}")
    if args.profile:
        print(profile())


if __name__ == "__main__":
    main()
