"""DQN on CartPole-v1, split: collection per frame and one update, tdrl against plain torch.

The two halves of ``bench_offpolicy_e2e --algo dqn`` measured apart, in interleaved rounds
(CPU time of the one torch thread, medians): a ``SyncDataCollector`` batch of 256 frames
through ``QValueActor`` + ``EGreedyModule`` against the hand program's collection loop (same
epsilon, fixed), and a ``DQNLoss`` + Adam step (batch 64, gradients clipped through
``loss.parameters()``) against the hand program's update. A diagnostic for where the end-to-end
gap sits, not a bar.

With ``--parts``, one update is also split into its steps (sample, loss, zero_grad,
backward, clip_grad_norm_ with the parameter list, Adam step), tdrl's and the hand program's
interleaved update by update (perf-counter medians: each step's own cost, cache effects of
the step before included).

Run: ``python -m benchmarks.profile_dqn_split [--eps 0.04] [--rounds 15] [--parts]``.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from statistics import median

import torch
from torch import nn

CLOCK = time.process_time
FPB, CELLS, BATCH, UPDATES = 256, 256, 64, 32


def _tdrl_parts(eps: float):
    from tensordict.nn import TensorDictSequential

    from tdrl.collectors import SyncDataCollector
    from tdrl.data.replay_buffers import LazyTensorStorage, ReplayBuffer
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.modules import MLP, EGreedyModule, QValueActor
    from tdrl.objectives import DQNLoss, HardUpdate

    env = GymEnv("CartPole-v1")
    env.set_seed(0)
    net = MLP(in_features=4, out_features=2, num_cells=[CELLS] * 2, activation_class=nn.ReLU)
    actor = QValueActor(net, in_keys=["observation"], spec=env.action_spec)
    explore = EGreedyModule(env.action_spec, eps_init=eps, eps_end=eps, annealing_num_steps=1)
    collector = SyncDataCollector(env, TensorDictSequential(actor, explore), frames_per_batch=FPB, total_frames=-1)
    batches = iter(collector)
    buffer = ReplayBuffer(storage=LazyTensorStorage(100_000), batch_size=BATCH)
    buffer.extend(next(batches).reshape(-1))
    loss = DQNLoss(actor, action_space=env.action_spec, delay_value=True)
    loss.make_value_estimator(gamma=0.99)
    HardUpdate(loss, value_network_update_interval=1).step()
    optim = torch.optim.Adam(loss.parameters(), lr=2.3e-3)

    def collect() -> float:
        start = CLOCK()
        buffer.extend(next(batches).reshape(-1))
        return (CLOCK() - start) / FPB

    def update() -> float:
        start = CLOCK()
        for _ in range(UPDATES):
            value = loss(buffer.sample())["loss"]
            optim.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
            optim.step()
        return (CLOCK() - start) / UPDATES

    def update_parts() -> list[float]:
        t0 = time.perf_counter()
        batch = buffer.sample()
        t1 = time.perf_counter()
        value = loss(batch)["loss"]
        t2 = time.perf_counter()
        optim.zero_grad()
        t3 = time.perf_counter()
        value.backward()
        t4 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
        t5 = time.perf_counter()
        optim.step()
        t6 = time.perf_counter()
        return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5]

    return collect, update, update_parts


def _hand_parts(eps: float):
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    state = {"obs": torch.as_tensor(env.reset(seed=0)[0], dtype=torch.float32)}
    qnet = nn.Sequential(nn.Linear(4, CELLS), nn.ReLU(), nn.Linear(CELLS, CELLS), nn.ReLU(), nn.Linear(CELLS, 2))
    target = copy.deepcopy(qnet).requires_grad_(False)
    optim = torch.optim.Adam(qnet.parameters(), lr=2.3e-3)
    size = 100_000
    b_obs, b_next = torch.zeros(size, 4), torch.zeros(size, 4)
    b_act = torch.zeros(size, dtype=torch.long)
    b_rew, b_term = torch.zeros(size), torch.zeros(size)
    pos = {"cursor": 0, "stored": 0}
    gen = torch.Generator().manual_seed(0)

    def collect() -> float:
        obs, cursor, stored = state["obs"], pos["cursor"], pos["stored"]
        start = CLOCK()
        for _ in range(FPB):
            with torch.no_grad():
                if torch.rand((), generator=gen).item() < eps:
                    action = int(torch.randint(2, (), generator=gen))
                else:
                    action = int(qnet(obs).argmax())
            next_np, reward, terminated, truncated, _ = env.step(action)
            nxt = torch.as_tensor(next_np, dtype=torch.float32)
            b_obs[cursor], b_next[cursor], b_act[cursor] = obs, nxt, action
            b_rew[cursor], b_term[cursor] = float(reward), float(terminated)
            cursor, stored = (cursor + 1) % size, min(stored + 1, size)
            if terminated or truncated:
                obs_np, _ = env.reset()
                nxt = torch.as_tensor(obs_np, dtype=torch.float32)
            obs = nxt
        elapsed = CLOCK() - start
        state["obs"], pos["cursor"], pos["stored"] = obs, cursor, stored
        return elapsed / FPB

    collect()

    def update() -> float:
        stored = pos["stored"]
        start = CLOCK()
        for _ in range(UPDATES):
            idx = torch.randint(stored, (BATCH,))
            with torch.no_grad():
                best = target(b_next[idx]).max(-1).values
                y = b_rew[idx] + 0.99 * (1.0 - b_term[idx]) * best
            q = qnet(b_obs[idx]).gather(-1, b_act[idx, None]).squeeze(-1)
            value = (q - y).pow(2).mean()
            optim.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(qnet.parameters(), 10.0)
            optim.step()
        return (CLOCK() - start) / UPDATES

    def update_parts() -> list[float]:
        stored = pos["stored"]
        t0 = time.perf_counter()
        idx = torch.randint(stored, (BATCH,))
        obs, nxt, act, rew, term = b_obs[idx], b_next[idx], b_act[idx, None], b_rew[idx], b_term[idx]
        t1 = time.perf_counter()
        with torch.no_grad():
            best = target(nxt).max(-1).values
            y = rew + 0.99 * (1.0 - term) * best
        q = qnet(obs).gather(-1, act).squeeze(-1)
        value = (q - y).pow(2).mean()
        t2 = time.perf_counter()
        optim.zero_grad()
        t3 = time.perf_counter()
        value.backward()
        t4 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(qnet.parameters(), 10.0)
        t5 = time.perf_counter()
        optim.step()
        t6 = time.perf_counter()
        return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5]

    return collect, update, update_parts


PARTS = ("sample", "loss", "zero_grad", "backward", "clip", "adam step")


def _print_parts(tdrl_parts, hand_parts, updates: int) -> None:
    """Per-step medians (us) of ``updates`` updates, tdrl's and the hand program's interleaved."""
    got: dict[str, list[list[float]]] = {"tdrl": [], "hand": []}
    for _ in range(updates):
        got["tdrl"].append(tdrl_parts())
        got["hand"].append(hand_parts())
    skip = updates // 10  # warm-up
    total = {"tdrl": 0.0, "hand": 0.0}
    print(f"{'step':10s} {'tdrl us':>9s} {'hand us':>9s} {'tdrl-hand':>10s}")
    for i, part in enumerate(PARTS):
        t = median(r[i] for r in got["tdrl"][skip:]) * 1e6
        h = median(r[i] for r in got["hand"][skip:]) * 1e6
        total["tdrl"] += t
        total["hand"] += h
        print(f"{part:10s} {t:9.1f} {h:9.1f} {t - h:10.1f}")
    print(f"{'sum':10s} {total['tdrl']:9.1f} {total['hand']:9.1f} {total['tdrl'] - total['hand']:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--eps", type=float, default=0.04)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--parts", action="store_true", help="also split one update into its steps")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fns = {}
    fns["tdrl_collect"], fns["tdrl_update"], tdrl_steps = _tdrl_parts(args.eps)
    fns["hand_collect"], fns["hand_update"], hand_steps = _hand_parts(args.eps)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.rounds):
        for name, fn in fns.items():
            times[name].append(fn())
    for part, unit, scale in (("collect", "us/frame", 1e6), ("update", "ms/update", 1e3)):
        t, h = times[f"tdrl_{part}"], times[f"hand_{part}"]
        ratio = median([b / a for a, b in zip(t, h)])
        print(
            f"{part:8s} tdrl {median(t) * scale:8.2f} {unit}  hand {median(h) * scale:8.2f} {unit}  "
            f"speed ratio tdrl/hand {ratio:.3f}"
        )
    if args.parts:
        _print_parts(tdrl_steps, hand_steps, updates=100 * args.rounds)


if __name__ == "__main__":
    main()
