"""GAE on [1, 1000] and [64, 1000]: tdrl's kernel against a Python loop over time.

Bar (issue 6 / DESIGN): >= 10x the hand-written loop, and faster than TorchRL's
vectorized GAE (``vec_generalized_advantage_estimate``), in the same run. Data are
``[B, T, 1]`` with ~1% terminated and ~1% truncated steps; figures are M elements/s.
"""

from __future__ import annotations

import time
import warnings

import torch

from benchmarks._common import interleaved, print_rows, row

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


def _rate(fn, args, batch: int, number: int):
    def run() -> float:
        start = time.perf_counter()
        for _ in range(number):
            fn(GAMMA, LMBDA, *args)
        return batch * T * number / (time.perf_counter() - start) / 1e6

    return run


def run() -> list[dict]:
    torch.set_num_threads(1)
    from tdrl.objectives.value.functional import generalized_advantage_estimate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchrl.objectives.value.functional import vec_generalized_advantage_estimate
    except Exception:  # noqa: BLE001 - the compare extra is optional
        vec_generalized_advantage_estimate = None

    rows = []
    for batch in (1, 64):
        args = _data(batch)
        # Same numbers from both (up to float reordering).
        ours, ref = generalized_advantage_estimate(GAMMA, LMBDA, *args), python_loop_gae(GAMMA, LMBDA, *args)
        if not torch.allclose(ours[0], ref[0], atol=1e-4):
            raise RuntimeError("tdrl's GAE disagrees with the reference loop")
        fns = {
            "tdrl": _rate(generalized_advantage_estimate, args, batch, 50),
            "loop": _rate(python_loop_gae, args, batch, 3),
        }
        if vec_generalized_advantage_estimate is not None:
            fns["torchrl"] = _rate(vec_generalized_advantage_estimate, args, batch, 5)
        for fn in fns.values():
            fn()
        best = interleaved(fns, rounds=5)
        rows.append(
            row(f"GAE [{batch}, {T}] (vs Python loop over time)", best["tdrl"], best["loop"], "M elem/s",
                ">= 10x the loop, > TorchRL vec", torchrl=best.get("torchrl"),
                note="" if "torchrl" not in best else f"tdrl / torchrl = {best['tdrl'] / best['torchrl']:.1f}x")
        )
    return rows


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print(r["figure"], "->", r["note"])
