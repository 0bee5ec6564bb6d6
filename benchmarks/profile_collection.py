"""cProfile of tdrl's collection paths (the seed collector, the DQN collector) and a DQN update.

Prints the top functions by own time for each path, so a change to the hot loop can be
checked against its profile before and after. Not a timing benchmark: cProfile's own
overhead inflates Python-heavy code; use ``bench_collector`` and ``bench_offpolicy_e2e``
for ratios.

Run: ``python -m benchmarks.profile_collection [--what seed dqn update] [--top 25]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import warnings

import torch
from torch import nn


def seed_collector(batches: int = 5):
    from benchmarks.bench_collector import _net, _tdrl

    run, _, _collector = _tdrl(_net(11, 1))
    return lambda: [run() for _ in range(batches)]


def dqn_collector(batches: int = 20):
    from tensordict.nn import TensorDictSequential

    from tdrl.collectors import SyncDataCollector
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.modules import MLP, EGreedyModule, QValueActor

    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    net = MLP(in_features=4, out_features=2, num_cells=[256, 256], activation_class=nn.ReLU)
    actor = QValueActor(net, in_keys=["observation"], spec=env.action_spec)
    explore = EGreedyModule(env.action_spec, eps_init=0.5, eps_end=0.5, annealing_num_steps=1)
    collector = SyncDataCollector(env, TensorDictSequential(actor, explore), frames_per_batch=256, total_frames=-1)
    it = iter(collector)
    next(it)
    return lambda: [next(it) for _ in range(batches)]


def dqn_update(updates: int = 300):
    from tdrl.collectors import SyncDataCollector
    from tdrl.data.replay_buffers import LazyTensorStorage, ReplayBuffer
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.modules import MLP, QValueActor
    from tdrl.objectives import DQNLoss

    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    net = MLP(in_features=4, out_features=2, num_cells=[256, 256], activation_class=nn.ReLU)
    actor = QValueActor(net, in_keys=["observation"], spec=env.action_spec)
    buffer = ReplayBuffer(storage=LazyTensorStorage(10_000), batch_size=64)
    buffer.extend(next(iter(SyncDataCollector(env, None, frames_per_batch=2000, total_frames=2000))).reshape(-1))
    loss = DQNLoss(actor, action_space=env.action_spec, delay_value=True)
    loss.make_value_estimator(gamma=0.99)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)

    def run():
        for _ in range(updates):
            value = loss(buffer.sample())["loss"]
            optim.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
            optim.step()

    return run


WHAT = {"seed": seed_collector, "dqn": dqn_collector, "update": dqn_update}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--what", nargs="+", default=list(WHAT), choices=list(WHAT))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in args.what:
        fn = WHAT[name]()
        fn()  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        print(f"=== {name} ===")
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
