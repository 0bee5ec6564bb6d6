"""GAE on [1, 1000] and [64, 1000]: tdrl's kernel against a Python loop over time.

Bar (issue 6 / DESIGN): >= 10x the hand-written loop, and faster than TorchRL's
vectorized GAE (``vec_generalized_advantage_estimate``), in the same run. Data are
``[B, T, 1]`` with ~1% terminated and ~1% truncated steps; figures are M elements/s
per CPU second of the (single) torch thread (see :func:`call_times`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch

from benchmarks._common import print_rows, row

T = 1000
GAMMA, LMBDA = 0.99, 0.95


def _data(batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    shape = (batch, T, 1)
    value = torch.randn(shape, generator=g)
    next_value = torch.randn(shape, generator=g)
    reward = torch.randn(shape, generator=g)
    terminated = torch.rand(shape, generator=g) < 0.01
    truncated = (torch.rand(shape, generator=g) < 0.01) & ~terminated
    return value, next_value, reward, terminated | truncated, terminated


def python_loop_gae(gamma, lmbda, value, next_value, reward, done, terminated):
    """The reference: the recursion written as a loop over time on [B] slices."""
    not_done = (~done).to(value.dtype)
    not_terminated = (~terminated).to(value.dtype)
    delta = reward + gamma * not_terminated * next_value - value
    advantage = torch.empty_like(delta)
    last = torch.zeros_like(delta[:, 0])
    for t in range(delta.shape[1] - 1, -1, -1):
        last = delta[:, t] + gamma * lmbda * not_done[:, t] * last
        advantage[:, t] = last
    return advantage, advantage + value


def call_times(
    calls: dict[str, Callable[[], object]],
    rounds: int = 10,
    per_round: int = 10,
    quantile: float = 0.5,
    min_sample: float = 0.005,
) -> dict[str, float]:
    """CPU seconds per call of each callable, robust to a shared, loaded machine.

    Timing uses the calling thread's CPU clock (``time.thread_time``): the benchmarks
    run torch with one thread, so all the work is this thread's, and time spent
    preempted by other processes does not count. Each sample times enough back-to-back
    calls to last about ``min_sample``; samples are interleaved round by round, and the
    ``quantile`` (default: the median) of each contender's samples is kept.
    """
    clock = time.thread_time
    numbers = {}
    for name, call in calls.items():
        start = clock()
        call()
        numbers[name] = max(1, int(min_sample / max(clock() - start, 1e-6)))
    times: dict[str, list[float]] = {k: [] for k in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:  # no contender always goes first
            call, number = calls[name], numbers[name]
            for _ in range(per_round):
                start = clock()
                for _ in range(number):
                    call()
                times[name].append((clock() - start) / number)
    return {k: sorted(v)[int(len(v) * quantile)] for k, v in times.items()}


def run() -> list[dict]:
    torch.set_num_threads(1)
    from tdrl.objectives.value.functional import generalized_advantage_estimate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchrl.objectives.value.functional import vec_generalized_advantage_estimate
    except Exception:
        vec_generalized_advantage_estimate = None

    rows = []
    for batch in (1, 64):
        args = _data(batch)
        # Same numbers from both (up to float reordering).
        ours, ref = generalized_advantage_estimate(GAMMA, LMBDA, *args), python_loop_gae(GAMMA, LMBDA, *args)
        if not torch.allclose(ours[0], ref[0], atol=1e-4):
            raise RuntimeError("tdrl's GAE disagrees with the reference loop")
        calls = {
            "tdrl": lambda args=args: generalized_advantage_estimate(GAMMA, LMBDA, *args),
            "loop": lambda args=args: python_loop_gae(GAMMA, LMBDA, *args),
        }
        if vec_generalized_advantage_estimate is not None:
            calls["torchrl"] = lambda args=args: vec_generalized_advantage_estimate(GAMMA, LMBDA, *args)
        for call in calls.values():  # warm-up
            call()
        seconds = call_times(calls, rounds=8, per_round=5)
        best = {k: batch * T / v / 1e6 for k, v in seconds.items()}
        rows.append(
            row(
                f"GAE [{batch}, {T}] (vs Python loop over time)",
                best["tdrl"],
                best["loop"],
                "M elem/s",
                ">= 10x the loop, > TorchRL vec",
                torchrl=best.get("torchrl"),
                note="" if "torchrl" not in best else f"tdrl / torchrl = {best['tdrl'] / best['torchrl']:.1f}x",
            )
        )
    return rows


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print(r["figure"], "->", r["note"])
