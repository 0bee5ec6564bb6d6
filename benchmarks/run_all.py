"""Run every benchmark and write ``benchmarks/RESULTS.md``.

Each ``benchmarks/bench_*.py`` exposes ``run() -> list[dict]``; every row compares tdrl
with a reference measured in the same run (a hand-written loop, or a peer library), so
the ratios hold on a noisy machine even when the absolute figures move.

Usage::

    python -m benchmarks.run_all                 # everything (the end-to-end runs take ~10 min,
                                                 # ppo_cartpole's 100k-frame training ~3 min, the
                                                 # learning runs of dqn_cartpole and sac_td3_pendulum
                                                 # ~15 min each on a quiet 2-core machine)
    python -m benchmarks.run_all --skip e2e ppo_cartpole dqn_cartpole sac_td3_pendulum   # leave out the long ones
    python -m benchmarks.run_all --only env gae  # just these
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
RAW = HERE / "results.json"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "tensordict", "gymnasium", "mujoco", "numpy", "torchrl", "stable_baselines3", "tdrl"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:
            out[name] = "absent"
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def discover() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def write_markdown(rows: list[dict], failures: dict, elapsed: float, extra: str = "") -> None:
    lines = [
        "# tdrl benchmark results",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- machine: {_machine()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()),
        f"- wall time of this run: {elapsed:.0f} s",
        "",
        "Every ratio compares tdrl with a reference measured in the same run; it is oriented so that",
        "> 1 means tdrl is better (faster, or cheaper). `bar` is the figure the project promised.",
        "",
        "| benchmark | figure | tdrl | reference | unit | ratio | bar | TorchRL | SB3 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['bench']} | {r['figure']} | {_fmt(r['tdrl'])} | {_fmt(r['reference'])} | {r['unit']} | "
        f"**{r['ratio']:.2f}** | {r['bar']} | {_fmt(r.get('torchrl'))} | {_fmt(r.get('sb3'))} |"
        for r in rows
    )
    notes = [f"- {r['bench']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if failures:
        lines += ["", "Benchmarks that failed in this run:", ""]
        lines += [f"- {name}: `{err.splitlines()[-1] if err else 'error'}`" for name, err in failures.items()]
    if extra:
        lines += ["", extra]
    RESULTS.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="benchmark names (e.g. env gae replay)")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmark names to leave out")
    args = parser.parse_args(argv)
    names = [n for n in (args.only or discover()) if n not in args.skip]
    rows, failures = [], {}
    start = time.perf_counter()
    for name in names:
        print(f"[run_all] {name} ...", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
            got = module.run()
        except Exception:
            failures[name] = traceback.format_exc()
            print(failures[name], file=sys.stderr)
            continue
        for r in got:
            r["bench"] = name
            rows.append(r)
            print(f"    {r['figure']}: ratio {r['ratio']:.2f} (bar {r['bar']})", flush=True)
    elapsed = time.perf_counter() - start
    extra_path = HERE / "RESULTS_extra.md"
    write_markdown(rows, failures, elapsed, extra_path.read_text() if extra_path.exists() else "")
    RAW.write_text(json.dumps({"rows": rows, "failures": list(failures)}, indent=2, default=str))
    print(f"[run_all] wrote {RESULTS.relative_to(HERE.parent)} ({len(rows)} figures, {len(failures)} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
