"""Recording switched off costs nothing: a rollout through a switched-off renderer and its recorder.

Bar (issue 18): ``TransformedEnv(env, Compose(PixelRenderTransform(), VideoRecorder(...)))``
with the renderer switched off rolls out at the speed of the same env without them, in
the same run: steps/s ratio >= 0.97 (the noise of this measurement on a shared 2-core CPU).
Both sides step the same gymnasium instance (made with ``render_mode="rgb_array"``) and
replay the same seeded actions; interleaved rounds, best of each, process CPU time.

Two roads: the policy-free rollout (a recorder fed only by a switched-off renderer lets the
chain take the vectorized road, as if both were absent) and a rollout with a policy (every
step goes through ``TransformedEnv._step``: the renderer returns at once, the recorder finds
no frame), each against the bare env on the same road. Envs: CartPole-v1 (needs pygame for
the spec probe, which renders once) and HalfCheetah-v5 (MuJoCo, rendered headless through
``MUJOCO_GL=egl``, set here when unset).
"""

from __future__ import annotations

import os
import time
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported: the spec probe renders once

import torch

from benchmarks._common import interleaved, print_rows, row

ENVS = {"CartPole-v1": {}, "HalfCheetah-v5": {"width": 64, "height": 48}}
STEPS = 8000
ROUNDS = 7


def _envs(name: str):
    """The bare env; the same gymnasium instance through an empty chain, and through a switched-off recording."""
    from tdrl.envs import Compose, GymEnv, TransformedEnv
    from tdrl.record import PixelRenderTransform, VideoRecorder

    base = GymEnv(name, render_mode="rgb_array", **ENVS[name])
    renderer = PixelRenderTransform()
    env = TransformedEnv(base, Compose(renderer, VideoRecorder(None, tag="off")))
    renderer.switch("off")
    return base, TransformedEnv(base, Compose()), env


def _rate(env, policy=None, steps: int = STEPS):
    def run() -> float:
        torch.manual_seed(0)  # same actions, hence the same episodes, for both envs
        env.set_seed(0)
        start = time.process_time()
        ro = env.rollout(steps, policy, break_when_any_done=False)
        return ro.numel() / (time.process_time() - start)

    return run


def _policy(env):
    action = env.action_spec.zero()

    def policy(td):
        return td.set("action", action)

    return policy


def measure(name: str, steps: int = STEPS, rounds: int = ROUNDS) -> list[dict]:
    """Rows for one env: both roads, switched-off recording against the bare env."""
    bare, chain, off = _envs(name)
    try:
        fast = interleaved({"bare": _rate(bare, steps=steps), "off": _rate(off, steps=steps)}, rounds=rounds)
        policy = _policy(bare)
        stepped = interleaved(
            {
                "bare": _rate(bare, policy, steps // 2),
                "chain": _rate(chain, policy, steps // 2),
                "off": _rate(off, policy, steps // 2),
            },
            rounds=rounds,
        )
    finally:
        off.close()
    recorder = off.transform[1]
    if recorder.obs:
        raise RuntimeError(f"bench_video: the switched-off recorder kept {len(recorder.obs)} frames")
    return [
        row(
            f"rollout(N), renderer+recorder switched off vs bare env ({name}), steps/s",
            fast["off"],
            fast["bare"],
            "steps/s",
            ">= 0.97",
            note="policy-free: both take the vectorized road",
        ),
        row(
            f"rollout(N, policy), renderer+recorder switched off vs an empty chain ({name}), steps/s",
            stepped["off"],
            stepped["chain"],
            "steps/s",
            ">= 0.97",
            note="per-step road: two hooks per step that return at once, against TransformedEnv(env, Compose())",
        ),
        row(
            f"rollout(N, policy), renderer+recorder switched off vs bare env ({name}), steps/s",
            stepped["off"],
            stepped["bare"],
            "steps/s",
            "info",
            note="per-step road: includes TransformedEnv's own per-step cost",
        ),
    ]


def run(steps: int = STEPS, rounds: int = ROUNDS) -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows: list[dict] = []
    for name in ENVS:
        try:
            rows += measure(name, steps, rounds)
        except Exception as err:  # a missing renderer (pygame) or OpenGL backend: say so, measure the rest
            if "pygame" not in str(err) and "MUJOCO_GL" not in str(err):
                raise
            print(f"bench_video: {name} skipped: {str(err).splitlines()[0]}")
    return rows


if __name__ == "__main__":
    print_rows(run())
