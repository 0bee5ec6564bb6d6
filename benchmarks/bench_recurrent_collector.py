"""A collector with an LSTM policy against the same collection written by hand (and TorchRL 0.14.1's).

Setting: ``CartPole-v1`` through ``GymEnv`` with ``InitTracker`` and the LSTM's
``TensorDictPrimer``; the policy is ``LSTMModule`` (4 -> ``HIDDEN``) feeding a
``HIDDEN -> HIDDEN -> 2`` tanh MLP Q-head and ``QValueModule`` (argmax, one-hot action),
collected by ``SyncDataCollector`` in batches of ``FRAMES`` frames.

The reference is that loop written by hand in plain torch and gymnasium with the same
weights: ``nn.LSTM`` called one step at a time with its ``(h, c)`` carried, reset to zeros
when an episode starts, the same Q-head and argmax, and the entries the collector stores
(observation, ``is_init``, ``h``/``c`` in and out, one-hot action, action values, the
chosen value, reward, done / terminated / truncated, next observation) written into
preallocated tensors. Each contender runs one batch per round, in turn (interleaved); the
ratio is the median of the rounds' ratios, the rates shown are the median rounds.

An info row compares with the same hand loop stepping an ``nn.LSTMCell`` that holds the
LSTM's weights (the fastest way to write one step of a one-layer LSTM by hand; tdrl's step
mode calls the same fused cell), and, where TorchRL 0.14.1 is installed, one with its
``SyncDataCollector`` and ``LSTMModule`` on the same env, transforms and weights.

Clock: as ``bench_collector``, CPU time of the (single-threaded) loop, ``time.process_time``,
so that other jobs on a shared machine do not decide the figure; ``CLOCK = time.perf_counter``
gives wall-clock figures on a quiet box.

Bar (issue 19): the collector within 1.1x the hand loop, i.e. ratio >= 0.91.

Run: ``python -m benchmarks.bench_recurrent_collector``.
"""

from __future__ import annotations

import time
import warnings
from statistics import median
from typing import Any

import torch
from torch import nn

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

CLOCK = time.process_time
ENV = "CartPole-v1"
FRAMES = 1000
HIDDEN = 64
ROUNDS = 21
SEED = 0


def make_weights(seed: int = 0) -> tuple[nn.LSTM, nn.Sequential]:
    """The LSTM and the Q-head every contender shares (copied into each library's modules)."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(4, HIDDEN, batch_first=True)
    head = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 2))
    return lstm, head


def make_collector(lib: str, lstm: nn.LSTM, head: nn.Module, frames: int = FRAMES, seed: int = SEED) -> Any:
    """``SyncDataCollector`` of ``lib`` ("tdrl" or "torchrl") over the primed CartPole with the LSTM policy."""
    from tensordict.nn import TensorDictModule, TensorDictSequential

    if lib == "tdrl":
        from tdrl.collectors import SyncDataCollector
        from tdrl.envs import Compose, InitTracker, TransformedEnv
        from tdrl.envs.libs.gym import GymEnv
        from tdrl.modules import LSTMModule, QValueModule
    else:
        import torchrl.collectors as trl_collectors
        from torchrl.envs import Compose, InitTracker, TransformedEnv
        from torchrl.envs.libs.gym import GymEnv
        from torchrl.modules import LSTMModule, QValueModule

        SyncDataCollector = getattr(trl_collectors, "SyncDataCollector", None) or trl_collectors.Collector
    module = LSTMModule(lstm=lstm, in_key="observation", out_key="features")
    env = TransformedEnv(GymEnv(ENV), Compose(InitTracker(), module.make_tensordict_primer()))
    env.set_seed(seed)
    policy = TensorDictSequential(
        module,
        TensorDictModule(head, in_keys=["features"], out_keys=["action_value"]),
        QValueModule(spec=env.action_spec),
    )
    return SyncDataCollector(env, policy, frames_per_batch=frames, total_frames=-1)


def collector_rate(collector: Any) -> Any:
    """A callable timing one batch of ``collector`` (frames/s), after a warm-up batch."""
    batches = iter(collector)
    next(batches)

    def run() -> float:
        start = CLOCK()
        batch = next(batches)
        return batch.numel() / (CLOCK() - start)

    return run


class HandLoop:
    """The collection written by hand: gymnasium, the LSTM stepped with its state carried, preallocated storage.

    ``cell=False`` steps the ``nn.LSTM`` itself on ``[1, 1, 4]`` inputs (the loop the issue
    describes); ``cell=True`` steps an ``nn.LSTMCell`` holding the same weights, the fastest
    way to write one step of a one-layer LSTM by hand.
    """

    def __init__(self, lstm: nn.LSTM, head: nn.Module, seed: int = SEED, cell: bool = False) -> None:
        import gymnasium as gym

        self.lstm, self.head = lstm, head
        self.cell: nn.LSTMCell | None = None
        self.state_shape: tuple[int, ...] = (1, 1, HIDDEN)
        if cell:
            self.cell = nn.LSTMCell(4, HIDDEN)
            self.cell.load_state_dict({name[:-3]: value for name, value in lstm.state_dict().items()})
            self.state_shape = (1, HIDDEN)
        self.env = gym.make(ENV)
        obs, _ = self.env.reset(seed=seed)
        self.obs = torch.from_numpy(obs)
        self.is_init = True
        self.h = torch.zeros(self.state_shape)
        self.c = torch.zeros(self.state_shape)

    def collect(self, frames: int = FRAMES) -> dict[str, torch.Tensor]:
        """One batch of ``frames`` steps, as a dict of stacked entries (keys as the collector's)."""
        lstm, cell, head, env, shape = self.lstm, self.cell, self.head, self.env, self.state_shape
        buf = {
            "observation": torch.empty(frames, 4),
            "is_init": torch.empty(frames, 1, dtype=torch.bool),
            "recurrent_state_h": torch.empty(frames, 1, HIDDEN),
            "recurrent_state_c": torch.empty(frames, 1, HIDDEN),
            "action": torch.empty(frames, 2, dtype=torch.int64),
            "action_value": torch.empty(frames, 2),
            "chosen_action_value": torch.empty(frames, 1),
            "next_recurrent_state_h": torch.empty(frames, 1, HIDDEN),
            "next_recurrent_state_c": torch.empty(frames, 1, HIDDEN),
            "next_observation": torch.empty(frames, 4),
            "reward": torch.empty(frames, 1),
            "done": torch.empty(frames, 1, dtype=torch.bool),
            "terminated": torch.empty(frames, 1, dtype=torch.bool),
            "truncated": torch.empty(frames, 1, dtype=torch.bool),
        }
        obs_b, init_b, h_b, c_b = buf["observation"], buf["is_init"], buf["recurrent_state_h"], buf["recurrent_state_c"]
        act_b, q_b, cq_b = buf["action"], buf["action_value"], buf["chosen_action_value"]
        nh_b, nc_b, nobs_b = buf["next_recurrent_state_h"], buf["next_recurrent_state_c"], buf["next_observation"]
        rew_b, done_b, term_b, trunc_b = buf["reward"], buf["done"], buf["terminated"], buf["truncated"]
        obs, is_init, h, c = self.obs, self.is_init, self.h, self.c
        with torch.no_grad():
            for t in range(frames):
                if is_init:
                    h, c = torch.zeros(shape), torch.zeros(shape)
                if cell is not None:
                    h_next, c_next = cell(obs.view(1, 4), (h, c))
                    y = h_next[0]
                else:
                    out, (h_next, c_next) = lstm(obs.view(1, 1, 4), (h, c))
                    y = out[0, 0]
                q = head(y)
                index = int(q.argmax())
                next_obs, reward, terminated, truncated, _ = env.step(index)
                next_obs = torch.from_numpy(next_obs)
                obs_b[t] = obs
                init_b[t] = is_init
                h_b[t] = h.view(1, HIDDEN)
                c_b[t] = c.view(1, HIDDEN)
                act_b[t] = 0
                act_b[t, index] = 1
                q_b[t] = q
                cq_b[t] = q[index]
                nh_b[t] = h_next.view(1, HIDDEN)
                nc_b[t] = c_next.view(1, HIDDEN)
                nobs_b[t] = next_obs
                rew_b[t] = reward
                done_b[t] = terminated or truncated
                term_b[t] = terminated
                trunc_b[t] = truncated
                if terminated or truncated:
                    obs = torch.from_numpy(env.reset()[0])
                    is_init = True
                else:
                    obs, h, c, is_init = next_obs, h_next, c_next, False
        self.obs, self.is_init, self.h, self.c = obs, is_init, h, c
        return buf

    def rate(self) -> Any:
        """A callable timing one batch (frames/s)."""
        self.collect()

        def run() -> float:
            start = CLOCK()
            self.collect()
            return FRAMES / (CLOCK() - start)

        return run


def run(rounds: int | None = None) -> list[dict]:
    rounds = ROUNDS if rounds is None else rounds
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    lstm, head = make_weights()
    tdrl_collector = make_collector("tdrl", lstm, head)
    fns = {
        "tdrl": collector_rate(tdrl_collector),
        "hand": HandLoop(lstm, head).rate(),
        "hand_cell": HandLoop(lstm, head, cell=True).rate(),
    }
    trl = None
    try:
        trl_collector = make_collector("torchrl", lstm, head)
        trl = collector_rate(trl_collector)
    except ImportError:
        trl_collector = None
    rates: dict[str, list[float]] = {k: [] for k in (*fns, "torchrl")}
    for r in range(rounds):
        for name, fn in fns.items():
            rates[name].append(fn())
        if trl is not None and r % 3 == 0:  # TorchRL is slower: every third round is enough
            rates["torchrl"].append(trl())
    tdrl_collector.shutdown()
    if trl_collector is not None:
        trl_collector.shutdown()
    med = {k: median(v) for k, v in rates.items() if v}
    torchrl = med.get("torchrl")

    def paired(a: str, b: str) -> float:
        return median([x / y for x, y in zip(rates[a], rates[b])])

    main = row(
        f"SyncDataCollector, {ENV} + InitTracker + primer, LSTM({HIDDEN}) + MLP Q-head policy, frames/s",
        med["tdrl"],
        med["hand"],
        "frames/s",
        ">= 0.91",
        torchrl=torchrl,
        note="reference: the same collection by hand (gymnasium, nn.LSTM stepped, state reset at episode "
        "starts, same entries stored in preallocated tensors)",
    )
    main["ratio"] = paired("tdrl", "hand")
    cell = row(
        "Recurrent SyncDataCollector vs the hand loop stepping an nn.LSTMCell with the same weights",
        med["tdrl"],
        med["hand_cell"],
        "frames/s",
        "info",
        note="the fastest hand-written step of a one-layer LSTM (tdrl's step mode calls the same fused cell)",
    )
    cell["ratio"] = paired("tdrl", "hand_cell")
    rows = [main, cell]
    if torchrl is not None:
        rows.append(
            row(
                "Recurrent SyncDataCollector vs TorchRL 0.14.1's (same env, transforms, LSTM policy)",
                med["tdrl"],
                torchrl,
                "frames/s",
                "info",
                torchrl=torchrl,
                note=f"TorchRL reaches {torchrl / med['hand']:.2f}x the hand-written loop in this run",
            )
        )
    return rows


if __name__ == "__main__":
    print_rows(run())
