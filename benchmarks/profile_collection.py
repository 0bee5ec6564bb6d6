"""cProfile of tdrl's collection paths (the seed collector, the DQN collector) and a DQN update.

Prints the top functions by own time for each path, so a change to the hot loop can be
checked against its profile before and after. Not a timing benchmark: cProfile's own
overhead inflates Python-heavy code; use ``bench_collector`` and ``bench_offpolicy_e2e``
for ratios.

``--what breakdown-dqn`` does the same for the DQN collector (CartPole-v1, ``QValueActor`` +
``EGreedyModule`` at the epsilon of ``profile_dqn_split``) against that script's hand loop.

``--what breakdown-e2e`` splits the seed tutorial's own collection (``profile_e2e``'s collector,
the tutorial's ProbabilisticActor in the loop) against ``bench_e2e.hand_tutorial``'s loop, in
interleaved batches.

``--what breakdown`` prints instead the seed collector's time per step split by part (the
policy, gymnasium's step, the gym wrapper's conversion, the transforms, the recording, the
next root and resets, the rest of the loop) next to the same split of the hand-written loop
of ``bench_collector``. Each part is timed with ``time.process_time`` around its call, so
the parts carry the timers' own cost (about a microsecond each); compare splits from one run.

Run: ``python -m benchmarks.profile_collection [--what seed dqn update breakdown breakdown-dqn breakdown-e2e]
[--top 25]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import warnings
from collections import defaultdict

import torch
from torch import nn


def seed_collector(batches: int = 5):
    from benchmarks.bench_collector import _net, _tdrl

    run, _, _collector = _tdrl(_net(11, 1))
    return lambda: [run() for _ in range(batches)]


_LAST: dict = {}


def dqn_collector(batches: int = 20, eps: float = 0.5):
    from tensordict.nn import TensorDictSequential

    from tdrl.collectors import SyncDataCollector
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.modules import MLP, EGreedyModule, QValueActor

    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    net = MLP(in_features=4, out_features=2, num_cells=[256, 256], activation_class=nn.ReLU)
    actor = QValueActor(net, in_keys=["observation"], spec=env.action_spec)
    explore = EGreedyModule(env.action_spec, eps_init=eps, eps_end=eps, annealing_num_steps=1)
    collector = SyncDataCollector(env, TensorDictSequential(actor, explore), frames_per_batch=256, total_frames=-1)
    _LAST["dqn"] = collector
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


def _timed(acc: dict, label: str, fn):
    clock = time.process_time

    def timed(*args, **kwargs):
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[label] += clock() - start

    return timed


def breakdown(batches: int = 5) -> None:
    """Microseconds per step of the seed collector and of the hand loop, split by part."""
    from benchmarks.bench_collector import FRAMES, _net, _tdrl
    from tdrl.envs import _stepping

    net = _net(11, 1)
    run, (loc, scale), collector = _tdrl(net)
    run()  # builds the collector's loop
    loop, env = collector._loop, collector.env
    base, chain = env._chain
    acc: dict = defaultdict(float)
    loop.policy = _timed(acc, "policy", loop.policy)
    loop._next_root = _timed(acc, "next root + resets", loop._next_root)
    env.reset = _timed(acc, "env.reset (incl. gymnasium)", env.reset)
    base._env.reset = _timed(acc, "gymnasium reset", base._env.reset)
    base._env.step = _timed(acc, "gymnasium step", base._env.step)
    base._step = _timed(acc, "gym wrapper _step (incl. gymnasium)", base._step)
    chain._step = _timed(acc, "transforms _step", chain._step)
    recorder = _stepping.StepRecorder
    record, record_and_carry = recorder.record, recorder.record_and_carry
    recorder.record = _timed(acc, "record root", record)  # type: ignore[method-assign]
    recorder.record_and_carry = _timed(acc, "record next", record_and_carry)  # type: ignore[method-assign]
    try:
        run()
        acc.clear()
        start = time.process_time()
        for _ in range(batches):
            run()
        total = time.process_time() - start
    finally:
        recorder.record, recorder.record_and_carry = record, record_and_carry  # type: ignore[method-assign]
    steps = batches * FRAMES
    print(f"=== seed collector: {total / steps * 1e6:.1f} us/step ===")
    inner = {"gymnasium step", "gymnasium reset", "env.reset (incl. gymnasium)"}
    for label, value in acc.items():
        print(f"  {label:38s} {value / steps * 1e6:7.1f}")
    rest = total - sum(v for k, v in acc.items() if k not in inner)
    print(f"  {'rest (loop, stacking, gc)':38s} {rest / steps * 1e6:7.1f}")
    hand_parts: dict = defaultdict(float)
    _hand_parts(net, loc, scale, steps // 5, hand_parts)  # warm-up
    hand_parts.clear()
    total = _hand_parts(net, loc, scale, steps, hand_parts)
    print(f"=== hand loop: {total / steps * 1e6:.1f} us/step ===")
    for label, value in hand_parts.items():
        print(f"  {label:38s} {value / steps * 1e6:7.1f}")


def _hand_parts(net: nn.Module, loc: torch.Tensor, scale: torch.Tensor, steps: int, parts: dict) -> float:
    """``bench_collector``'s hand-written loop with a timer around each part; returns the total CPU time."""
    import gymnasium as gym
    from torch import distributions as D

    from benchmarks.bench_collector import ENV

    env = gym.make(ENV)
    obs = env.reset(seed=0)[0]
    buffers = [torch.empty(steps, 11), torch.empty(steps, 1), torch.empty(steps, 1)]
    done_buf, logp_buf = torch.empty(steps, 1, dtype=torch.bool), torch.empty(steps)
    clock = time.process_time
    start = clock()
    with torch.no_grad():
        for t in range(steps):
            t0 = clock()
            x = torch.addcmul(loc, torch.from_numpy(obs), scale).float()
            t1 = clock()
            mu, sigma = net(x)
            dist = D.Normal(mu, sigma, validate_args=False)
            u = dist.sample()
            a = torch.tanh(u)
            logp = (dist.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)
            action = -1.0 + (a + 1) * 2.0 / 2
            t2 = clock()
            obs, reward, terminated, truncated, _ = env.step(action.numpy())
            t3 = clock()
            buffers[0][t], buffers[1][t], buffers[2][t] = x, action, reward
            done_buf[t], logp_buf[t] = terminated or truncated, logp
            t4 = clock()
            if terminated or truncated:
                obs, _ = env.reset()
            t5 = clock()
            for label, value in (("normalize", t1 - t0), ("policy", t2 - t1), ("gymnasium step", t3 - t2)):
                parts[label] += value
            parts["store"] += t4 - t3
            parts["reset"] += t5 - t4
    return clock() - start


def breakdown_dqn(batches: int = 20, eps: float = 0.04) -> None:
    """Microseconds per step of the DQN collector (CartPole-v1, 2x256 QValueActor + EGreedy) and of its hand loop."""
    from tdrl.envs import _stepping

    run = dqn_collector(batches, eps)
    run()  # warm-up (the loop is built by dqn_collector's first batch)
    collector = _LAST["dqn"]
    loop, env = collector._loop, collector.env
    acc: dict = defaultdict(float)
    loop.policy = _timed(acc, "policy (QValueActor + EGreedy)", loop.policy)
    loop._next_root = _timed(acc, "next root + resets", loop._next_root)
    loop._stack = _timed(acc, "stack the batch", loop._stack)
    env.reset = _timed(acc, "env.reset (incl. gymnasium)", env.reset)
    env._env.step = _timed(acc, "gymnasium step", env._env.step)
    env._step = _timed(acc, "gym wrapper _step (incl. gymnasium)", env._step)
    recorder = _stepping.StepRecorder
    record, record_and_carry = recorder.record, recorder.record_and_carry
    recorder.record = _timed(acc, "record root", record)  # type: ignore[method-assign]
    recorder.record_and_carry = _timed(acc, "record next", record_and_carry)  # type: ignore[method-assign]
    try:
        acc.clear()
        start = time.process_time()
        run()
        total = time.process_time() - start
    finally:
        recorder.record, recorder.record_and_carry = record, record_and_carry  # type: ignore[method-assign]
    steps = batches * 256
    print(f"=== DQN collector: {total / steps * 1e6:.1f} us/step ===")
    for label, value in acc.items():
        print(f"  {label:38s} {value / steps * 1e6:7.1f}")
    inner = {"gymnasium step", "env.reset (incl. gymnasium)"}  # counted in the wrapper's step and the next root
    rest = total - sum(v for k, v in acc.items() if k not in inner)
    print(f"  {'rest (loop, batch bookkeeping)':38s} {rest / steps * 1e6:7.1f}")
    hand_parts: dict = defaultdict(float)
    _hand_dqn_parts(steps // 5, eps, hand_parts)  # warm-up
    hand_parts.clear()
    total = _hand_dqn_parts(steps, eps, hand_parts)
    print(f"=== hand DQN loop: {total / steps * 1e6:.1f} us/step ===")
    for label, value in hand_parts.items():
        print(f"  {label:38s} {value / steps * 1e6:7.1f}")


def _hand_dqn_parts(steps: int, eps: float, parts: dict) -> float:
    """``profile_dqn_split``'s hand collection loop with a timer around each part; returns the total CPU time."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    obs = torch.as_tensor(env.reset(seed=0)[0], dtype=torch.float32)
    qnet = nn.Sequential(nn.Linear(4, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    b_obs, b_next = torch.zeros(steps, 4), torch.zeros(steps, 4)
    b_act, b_rew, b_term = torch.zeros(steps, dtype=torch.long), torch.zeros(steps), torch.zeros(steps)
    gen = torch.Generator().manual_seed(0)
    clock = time.process_time
    start = clock()
    with torch.no_grad():
        for t in range(steps):
            t0 = clock()
            if torch.rand((), generator=gen).item() < eps:
                action = int(torch.randint(2, (), generator=gen))
            else:
                action = int(qnet(obs).argmax())
            t1 = clock()
            next_np, reward, terminated, truncated, _ = env.step(action)
            t2 = clock()
            nxt = torch.as_tensor(next_np, dtype=torch.float32)
            b_obs[t], b_next[t], b_act[t] = obs, nxt, action
            b_rew[t], b_term[t] = float(reward), float(terminated)
            t3 = clock()
            if terminated or truncated:
                nxt = torch.as_tensor(env.reset()[0], dtype=torch.float32)
            obs = nxt
            parts["policy"] += t1 - t0
            parts["gymnasium step"] += t2 - t1
            parts["store"] += t3 - t2
            parts["reset"] += clock() - t3
    return clock() - start


def breakdown_e2e(batches: int = 3) -> None:
    """The seed tutorial's collection (``profile_e2e``'s collector: the seed's env, transforms and
    ProbabilisticActor) split by part, next to the same split of ``bench_e2e.hand_tutorial``'s loop."""
    from benchmarks import profile_e2e as e2e
    from tdrl.envs import _stepping

    s = e2e._tdrl_setup()
    h = e2e._hand_setup(s["batch"])
    e2e._hand_norm(s, h)
    collector = s["collector"]
    loop, env = collector._loop, collector.env
    base, chain = env._chain
    acc: dict = defaultdict(float)
    loop.policy = _timed(acc, "policy", loop.policy)
    loop._next_root = _timed(acc, "next root + resets", loop._next_root)
    env.reset = _timed(acc, "env.reset (incl. gymnasium)", env.reset)
    base._env.reset = _timed(acc, "gymnasium reset", base._env.reset)
    base._env.step = _timed(acc, "gymnasium step", base._env.step)
    base._step = _timed(acc, "gym wrapper _step (incl. gymnasium)", base._step)
    chain._step = _timed(acc, "transforms _step", chain._step)
    recorder = _stepping.StepRecorder
    record, record_and_carry = recorder.record, recorder.record_and_carry
    recorder.record = _timed(acc, "record root", record)  # type: ignore[method-assign]
    recorder.record_and_carry = _timed(acc, "record next", record_and_carry)  # type: ignore[method-assign]
    hand_parts: dict = defaultdict(float)
    tdrl_total = hand_total = 0.0
    try:
        e2e.tdrl_collect(s)  # warm-up
        _hand_e2e_parts(h, hand_parts)
        acc.clear()
        hand_parts.clear()
        for _ in range(batches):  # interleaved
            start = time.process_time()
            e2e.tdrl_collect(s)
            tdrl_total += time.process_time() - start
            hand_total += _hand_e2e_parts(h, hand_parts)
    finally:
        recorder.record, recorder.record_and_carry = record, record_and_carry  # type: ignore[method-assign]
    steps = batches * 1000
    print(f"=== seed tutorial's collection: {tdrl_total / steps * 1e6:.1f} us/step ===")
    for label, value in acc.items():
        print(f"  {label:38s} {value / steps * 1e6:7.1f}")
    inner = {"gymnasium step", "gymnasium reset", "env.reset (incl. gymnasium)"}
    rest = tdrl_total - sum(v for k, v in acc.items() if k not in inner)
    print(f"  {'rest (loop, stacking, traj ids)':38s} {rest / steps * 1e6:7.1f}")
    print(f"=== hand_tutorial's collection: {hand_total / steps * 1e6:.1f} us/step ===")
    for label, value in hand_parts.items():
        print(f"  {label:38s} {value / steps * 1e6:7.1f}")


def _hand_e2e_parts(h: dict, parts: dict) -> float:
    """``profile_e2e.hand_collect`` with a timer around each part; returns the total CPU time."""
    import numpy as np

    from benchmarks import profile_e2e as e2e

    env, n = h["env"], len(h["rew"])
    obs_buf, next_buf, act_buf, logp_buf = h["obs"], h["next"], h["act"], h["logp"]
    rew, term, done = h["rew"], h["term"], h["done"]
    lim = 1.0 - torch.finfo(torch.float32).resolution

    def normalize(o: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(o) - h["mean"]) * h["inv_std"]).float()

    clock = time.process_time
    start = clock()
    x = normalize(env.reset()[0])
    with torch.no_grad():
        for t in range(n):
            t0 = clock()
            loc, scale = e2e._hand_head(h, x)
            a = (loc + scale * torch.randn_like(loc)).tanh().clamp(-lim, lim)
            logp = e2e._log_prob(a.atanh(), loc, scale)
            t1 = clock()
            obs, reward, terminated, truncated, _ = env.step(a.numpy())
            t2 = clock()
            next_x = normalize(obs)
            t3 = clock()
            obs_buf[t], act_buf[t], logp_buf[t], next_buf[t] = x, a, logp, next_x
            rew[t], term[t], done[t] = reward, terminated, terminated or truncated
            t4 = clock()
            if terminated or truncated:
                obs, _ = env.reset()
            x = normalize(obs)
            t5 = clock()
            parts["policy (incl. log-prob)"] += t1 - t0
            parts["gymnasium step"] += t2 - t1
            parts["normalize next"] += t3 - t2
            parts["store"] += t4 - t3
            parts["reset + normalize root"] += t5 - t4
    return clock() - start


WHAT = {"seed": seed_collector, "dqn": dqn_collector, "update": dqn_update}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--what", nargs="+", default=list(WHAT), choices=[*WHAT, "breakdown", "breakdown-dqn", "breakdown-e2e"]
    )
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in args.what:
        if name == "breakdown":
            breakdown()
            continue
        if name == "breakdown-dqn":
            breakdown_dqn()
            continue
        if name == "breakdown-e2e":
            breakdown_e2e()
            continue
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
