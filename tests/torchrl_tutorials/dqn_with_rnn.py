"""TorchRL's "Recurrent DQN: training recurrent policies" tutorial (dqn_with_rnn), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``, with the normalization warm-up, the frames and the updates per batch cut by
``scale``. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import shutil
import tempfile

import torch
import tqdm
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential
from tensordict.nn import TensorDictSequential as Seq
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyMemmapStorage, TensorDictReplayBuffer
from tdrl.data.replay_buffers.samplers import SliceSampler
from tdrl.envs import (
    Compose,
    ExplorationType,
    GrayScale,
    InitTracker,
    ObservationNorm,
    Resize,
    RewardScaling,
    StepCounter,
    ToTensorImage,
    TransformedEnv,
    set_exploration_type,
)
from tdrl.envs.libs.gym import GymEnv
from tdrl.modules import MLP, ConvNet, EGreedyModule, LSTMModule, QValueModule
from tdrl.objectives import DQNLoss, SoftUpdate


def main(scale: float = 1.0):
    device = torch.device("cpu")
    env = TransformedEnv(
        GymEnv("CartPole-v1", from_pixels=True, device=device),
        Compose(
            ToTensorImage(),
            GrayScale(),
            Resize(84, 84),
            StepCounter(),
            InitTracker(),
            RewardScaling(loc=0.0, scale=0.1),
            ObservationNorm(standard_normal=True, in_keys=["pixels"]),
        ),
    )
    env.transform[-1].init_stats(max(10, int(1000 * scale)), reduce_dim=[0, 1, 2], cat_dim=0, keep_dims=[0])
    env.reset()
    feature = Mod(
        ConvNet(
            num_cells=[32, 32, 64],
            squeeze_output=True,
            aggregator_class=nn.AdaptiveAvgPool2d,
            aggregator_kwargs={"output_size": (1, 1)},
            device=device,
        ),
        in_keys=["pixels"],
        out_keys=["embed"],
    )
    n_cells = feature(env.reset())["embed"].shape[-1]
    lstm = LSTMModule(input_size=n_cells, hidden_size=128, device=device, in_key="embed", out_key="embed")
    print(lstm.in_keys, lstm.out_keys)
    env.append_transform(lstm.make_tensordict_primer())
    print(env)
    mlp = MLP(out_features=2, num_cells=[64], device=device)
    mlp[-1].bias.data.fill_(0.0)
    mlp = Mod(mlp, in_keys=["embed"], out_keys=["action_value"])
    qval = QValueModule(action_space=None, spec=env.action_spec)
    policy = Seq(feature, lstm, mlp, qval)
    exploration_module = EGreedyModule(annealing_num_steps=1_000_000, spec=env.action_spec, eps_init=0.2, device=device)
    stoch_policy = TensorDictSequential(policy, exploration_module)
    policy(env.reset())
    loss_fn = DQNLoss(policy, action_space=env.action_spec, delay_value=True)
    updater = SoftUpdate(loss_fn, eps=0.95)
    optim = torch.optim.Adam(policy.parameters(), lr=3e-4)
    buffer_scratch_dir = tempfile.TemporaryDirectory().name
    rb = TensorDictReplayBuffer(
        storage=LazyMemmapStorage(1_000_000, scratch_dir=buffer_scratch_dir),
        sampler=SliceSampler(slice_len=50, end_key=("next", "done"), cache_values=True, strict_length=False),
        batch_size=200,
        prefetch=10,
        transform=lambda td: td.to(device),
    )
    collector = SyncDataCollector(
        env,
        stoch_policy,
        frames_per_batch=50,
        total_frames=max(100, int(200 * scale)),
        storing_device="cpu",
        replay_buffer=rb,
    )
    utd = max(1, int(16 * scale))
    warmup = min(1000, collector.total_frames // 2)  # the tutorial trains once 1000 frames are stored
    pbar = tqdm.tqdm(total=collector.total_frames)
    traj_lens = []
    for i, _ in enumerate(collector):
        pbar.update(collector.frames_per_batch)
        if len(rb) < warmup:
            continue
        for j in range(utd):
            s = rb.sample()
            if i == 0 and j == 0:
                print(s)
            loss_vals = loss_fn(s)
            loss_vals["loss"].backward()
            optim.step()
            optim.zero_grad()
        pbar.set_description(f"buffer_size: {len(rb)}, loss_val: {loss_vals['loss'].item(): 4.4f}")
        exploration_module.step(collector.frames_per_batch)
        updater.step()
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            rollout = env.rollout(10000, stoch_policy)
            traj_lens.append(rollout.get(("next", "step_count")).max().item())
    collector.shutdown()
    shutil.rmtree(buffer_scratch_dir, ignore_errors=True)
    assert traj_lens


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
