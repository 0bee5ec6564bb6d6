"""Helpers shared by the benchmark scripts: timing and result rows."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def best_rate(fn: Callable[[], int], repeats: int = 5, min_time: float = 0.0) -> float:
    """The best items/s over ``repeats`` calls of ``fn`` (which returns the items it processed)."""
    best = 0.0
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        items = fn()
        elapsed = time.perf_counter() - start
        best = max(best, items / elapsed)
    return best


def best_time(fn: Callable[[], object], repeats: int = 5, number: int = 1) -> float:
    """The best seconds per call of ``fn`` over ``repeats`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def interleaved(fns: dict[str, Callable[[], float]], rounds: int = 5) -> dict[str, float]:
    """Run each measurement in turn ``rounds`` times and keep each one's best (max) figure.

    Interleaving makes a noisy machine hurt every contender alike, so ratios stay fair.
    """
    best = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = max(best[name], fn())
    return best


def median_cpu_us(fns: dict[str, Callable[[], object]], calls: int, rounds: int = 7) -> dict[str, float]:
    """Median over ``rounds`` of each function's mean thread CPU time per call, in microseconds.

    The candidates alternate within each round, so that cache pressure and neighbours on a
    shared machine hit them all alike; each is first called a few times to warm up.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(max(calls // 10, 3)):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.thread_time()
            for _ in range(calls):
                fn()
            times[name].append((time.thread_time() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def row(
    figure: str,
    tdrl: float,
    reference: float,
    unit: str,
    bar: str,
    higher_is_better: bool = True,
    torchrl: float | None = None,
    sb3: float | None = None,
    note: str = "",
) -> dict:
    """One result row; ``ratio`` is tdrl relative to the reference, oriented so > 1 means tdrl is better."""
    ratio = tdrl / reference if higher_is_better else reference / tdrl
    return {
        "figure": figure,
        "tdrl": tdrl,
        "reference": reference,
        "unit": unit,
        "ratio": ratio,
        "bar": bar,
        "torchrl": torchrl,
        "sb3": sb3,
        "note": note,
    }


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        extra = "".join(f"  {peer}={r[peer]:.4g}" for peer in ("torchrl", "sb3") if r.get(peer) is not None)
        print(
            f"{r['figure']:<55} tdrl={r['tdrl']:.4g} ref={r['reference']:.4g} {r['unit']:<10} "
            f"ratio={r['ratio']:.2f} (bar {r['bar']}){extra}"
        )
