"""TorchRL's "Recurrent training on sequence batches" tutorial (recurrent_sequence_training), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``: a collector that adds the ``InitTracker`` and the LSTM's primer to the env
(``auto_register_policy_transforms=True``), slices sampled with ``SliceSampler``, the LSTM
run over whole sequences under ``set_recurrent_mode(True)`` (the sampler marks each
slice's first step ``is_init``, so hidden states restart at every slice start and at
resets inside a slice), and a few supervised updates. The collector runs
``512 * scale`` frames (at least one batch of 64). Run by tests/test_torchrl_tutorials.py;
nothing runs on import.
"""

import itertools

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential as Seq
from torch import nn

from tdrl.collectors import Collector
from tdrl.data import LazyTensorStorage, TensorDictReplayBuffer
from tdrl.data.replay_buffers.samplers import SliceSampler
from tdrl.envs import GymEnv
from tdrl.modules import LSTMModule, set_recurrent_mode

OBS_DIM = 4
N_ACTIONS = 2
HIDDEN = 16


def make_policy() -> Seq:
    lstm = LSTMModule(
        input_size=OBS_DIM,
        hidden_size=HIDDEN,
        in_keys=["observation", "rs_h", "rs_c"],
        out_keys=["features", ("next", "rs_h"), ("next", "rs_c")],
        python_based=True,
    )
    head = Mod(nn.Linear(HIDDEN, N_ACTIONS), in_keys=["features"], out_keys=["logits"])
    chooser = Mod(lambda logits: logits.argmax(-1, keepdim=False), in_keys=["logits"], out_keys=["action"])
    return Seq(lstm, head, chooser)


def main(scale: float = 1.0):
    torch.manual_seed(0)
    device = torch.device("cpu")
    policy = make_policy()
    policy.eval()

    # the collector appends InitTracker and the LSTM's TensorDictPrimer to the env
    env = GymEnv("CartPole-v1", device=device)
    collector = Collector(
        env,
        policy,
        frames_per_batch=64,
        total_frames=max(64, int(512 * scale) // 64 * 64),
        device=device,
        storing_device=device,
        auto_register_policy_transforms=True,
        reset_at_each_iter=False,
    )
    data = next(iter(collector))
    print("Batch shape:", data.shape)
    print("Available keys:", sorted(k for k in data.keys()))
    print("is_init shape:", data["is_init"].shape)
    print("# trajectory boundaries in batch:", int(data["is_init"].sum().item()))
    print("Next-step hidden shape:", data["next", "rs_h"].shape, "(batch, num_layers, hidden_size)")
    assert data["next", "rs_h"].shape == (64, 1, HIDDEN)
    assert bool(data["is_init"][0])

    # slices of trajectories from a replay buffer
    slice_len, num_slices = 8, 4
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(max_size=1024, device=device),
        sampler=SliceSampler(slice_len=slice_len, strict_length=False),
        batch_size=slice_len * num_slices,
    )
    rb.extend(data)
    sample = rb.sample()
    print("Sampled batch shape:", sample.shape)
    positions = sample["is_init"].reshape(-1).nonzero().squeeze(-1).tolist()
    print("is_init True positions (slice starts):", positions)
    # the sampler marks every slice's first step (TorchRL's init_key): the slices end where
    # ("next", "truncated") is set, so each following row starts one
    ends = sample["next", "truncated"].reshape(-1).nonzero().squeeze(-1)
    starts = [0, *(ends[:-1] + 1).tolist()]
    print("slice starts:", starts)
    assert set(starts) <= set(positions), (starts, positions)

    # the LSTM over the whole flat sample at once
    with set_recurrent_mode(True):
        out = policy(sample.clone())
    print("Recurrent-mode output shape:", out["features"].shape, "(total_steps, hidden)")
    print("Recurrent-mode logits shape:", out["logits"].shape, "(total_steps, n_actions)")
    # each slice restarts from its own stored hidden state: running the slices one by one gives the same features
    with set_recurrent_mode(True):
        bounds = [*starts, sample.shape[0]]
        parts = [policy(sample[a:b].clone())["features"] for a, b in itertools.pairwise(bounds)]
    torch.testing.assert_close(out["features"], torch.cat(parts), rtol=1e-5, atol=1e-6)
    print("No hidden state crosses a slice boundary: verified.")

    # no hidden state crosses an is_init boundary inside a packed batch
    t_a = t_b = 4
    t = t_a + t_b
    is_init_packed = torch.zeros(1, t, dtype=torch.bool)
    is_init_packed[0, 0] = True
    is_init_packed[0, t_a] = True
    obs = torch.randn(1, t, OBS_DIM)
    noisy_h = torch.randn(1, t, 1, HIDDEN)
    noisy_c = torch.randn(1, t, 1, HIDDEN)
    packed = TensorDict(
        {"observation": obs, "rs_h": noisy_h, "rs_c": noisy_c, "is_init": is_init_packed}, batch_size=[1, t]
    )
    is_init_b = torch.zeros(1, t_b, dtype=torch.bool)
    is_init_b[0, 0] = True
    b_only = TensorDict(
        {
            "observation": obs[:, t_a:].clone(),
            "rs_h": noisy_h[:, t_a:].clone(),
            "rs_c": noisy_c[:, t_a:].clone(),
            "is_init": is_init_b,
        },
        batch_size=[1, t_b],
    )
    with set_recurrent_mode(True):
        packed_out = policy(packed)
        b_out = policy(b_only)
    torch.testing.assert_close(packed_out["features"][:, t_a:], b_out["features"], rtol=1e-5, atol=1e-6)
    print("Hidden-state isolation across is_init boundary: verified.")

    # a few supervised updates through the recurrent path
    trainable_policy = make_policy()
    optimizer = torch.optim.Adam(trainable_policy.parameters(), lr=3e-4)
    target_logits = torch.zeros(N_ACTIONS)
    target_logits[0] = 1.0
    losses = []
    for _step in range(4):
        sample = rb.sample()
        with set_recurrent_mode(True):
            out = trainable_policy(sample.clone())
        loss = (out["logits"] - target_logits.expand_as(out["logits"])).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    for batch in collector:  # the rest of the frame budget
        rb.extend(batch)
    collector.shutdown()
    print("Training loss trajectory:", [round(v, 4) for v in losses])


if __name__ == "__main__":
    import os
    import warnings

    warnings.filterwarnings("ignore")
    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
