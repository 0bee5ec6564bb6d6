"""TorchRL's "Memory-efficient RL training" tutorial (memory_efficient_rl), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``: a collector with ``compact_obs=True``, ``NextStateReconstructor`` and
``NextObservationDelta`` in replay buffers, GAE over rebuilt next observations with NaN at
trajectory ends, and a memory-mapped storage. The rollouts keep the tutorial's 200 frames
(slices of 20 steps need trajectories that long); the envs are seeded so that the run is
reproducible. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import tempfile

import torch
from tensordict.nn import TensorDictModule

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyMemmapStorage, LazyTensorStorage, ReplayBuffer
from tdrl.data.replay_buffers.samplers import SliceSampler
from tdrl.envs import GymEnv, TransformedEnv
from tdrl.envs.transforms import NextObservationDelta, NextStateReconstructor
from tdrl.objectives.value import GAE


def main(scale: float = 1.0):
    torch.manual_seed(0)
    frames = 200

    def env_maker():
        env = GymEnv("CartPole-v1")
        env.set_seed(0)
        return env

    # where the memory goes: a default rollout holds every observation twice
    collector = SyncDataCollector(create_env_fn=env_maker, frames_per_batch=frames, total_frames=frames)
    data = next(iter(collector))
    collector.shutdown()
    next_obs = data.get(("next", "observation"))
    print(f"full rollout: {data.bytes()} B; ('next', 'observation'): {next_obs.numel() * next_obs.element_size()} B")

    # knob 1: the collector drops the next observations
    compact_collector = SyncDataCollector(
        create_env_fn=env_maker, frames_per_batch=frames, total_frames=frames, compact_obs=True
    )
    compact_data = next(iter(compact_collector))
    compact_collector.shutdown()
    dropped = set(data.keys(True, True)) - set(compact_data.keys(True, True))
    print(f"default {data.bytes()} B, compact_obs=True {compact_data.bytes()} B; dropped {dropped}")
    assert dropped == {("next", "observation")}, dropped
    assert compact_data.bytes() < data.bytes()

    # knob 2: rebuild them when sampling
    rb = ReplayBuffer(
        storage=LazyTensorStorage(frames),
        sampler=SliceSampler(slice_len=20, traj_key=("collector", "traj_ids")),
        transform=NextStateReconstructor(),
        batch_size=40,
    )
    rb.extend(compact_data)
    sample = rb.sample()
    print("sample keys:", sorted(str(k) for k in sample.keys(True, True))[:6])
    nan_next = torch.isnan(sample["next", "observation"])
    print("any NaN in ('next', 'observation')?", nan_next.any().item())
    traj = sample["collector", "traj_ids"]
    done = sample["next", "done"].squeeze(-1)
    boundary = torch.cat([traj[1:] != traj[:-1], torch.tensor([True])]) | done
    nan_rows = nan_next.any(-1).nonzero(as_tuple=True)[0].tolist()
    print("rows with NaN next-obs:", nan_rows)
    print("rows flagged as trajectory boundaries:", boundary.nonzero(as_tuple=True)[0].tolist())
    assert nan_rows == boundary.nonzero(as_tuple=True)[0].tolist()

    # knob 2b: a low-precision delta instead, exact at trajectory ends
    def env_maker_delta():
        env = TransformedEnv(GymEnv("CartPole-v1"), NextObservationDelta())
        env.set_seed(0)
        return env

    delta_collector = SyncDataCollector(create_env_fn=env_maker_delta, frames_per_batch=frames, total_frames=frames)
    delta_data = next(iter(delta_collector))
    delta_collector.shutdown()
    print(f"default {data.bytes()} B, compact {compact_data.bytes()} B, NextObservationDelta {delta_data.bytes()} B")
    print("delta key dtype:", delta_data["next", "delta", "observation"].dtype)
    print("('next', 'observation') in rollout?", ("next", "observation") in delta_data.keys(True, True))
    # TorchRL's layout: the collector keeps the float16 delta instead of ("next", "observation")
    # and no root "delta", so the batch saves half of the next observations' bytes
    expected = (set(data.keys(True, True)) - {("next", "observation")}) | {("next", "delta", "observation")}
    assert set(delta_data.keys(True, True)) == expected, set(delta_data.keys(True, True)) ^ expected
    next_obs_bytes = next_obs.numel() * next_obs.element_size()
    assert delta_data.bytes() == data.bytes() - next_obs_bytes + next_obs_bytes // 2
    rb_delta = ReplayBuffer(
        storage=LazyTensorStorage(frames),
        sampler=SliceSampler(slice_len=20, traj_key=("collector", "traj_ids")),
        transform=NextObservationDelta(in_keys=["observation"]),
        batch_size=40,
    )
    rb_delta.extend(delta_data)
    delta_sample = rb_delta.sample()
    print("('next', 'observation') in sample?", ("next", "observation") in delta_sample.keys(True, True))
    print("delta key dropped from sample?", ("next", "delta", "observation") not in delta_sample.keys(True, True))
    print(
        "any NaN in the rebuilt ('next', 'observation')?", torch.isnan(delta_sample["next", "observation"]).any().item()
    )
    assert not torch.isnan(delta_sample["next", "observation"]).any()

    # knob 2.5: GAE stays finite over the NaN next observations
    value_net = TensorDictModule(
        lambda x: x.pow(2).sum(-1, keepdim=True).sqrt(), in_keys=["observation"], out_keys=["state_value"]
    )
    gae = GAE(gamma=0.99, lmbda=0.95, value_network=value_net, shifted=False)
    out = gae(sample.reshape(-1, 20).clone())
    print("GAE advantage finite everywhere?", torch.isfinite(out["advantage"]).all().item())
    print("any -inf or +inf?", torch.isinf(out["advantage"]).any().item())
    assert torch.isfinite(out["advantage"]).all()

    # knob 3: a memory-mapped storage, the same API
    with tempfile.TemporaryDirectory() as tmpdir:
        rb_mmap = ReplayBuffer(
            storage=LazyMemmapStorage(max_size=1_000, scratch_dir=tmpdir),
            sampler=SliceSampler(slice_len=20, traj_key=("collector", "traj_ids")),
            transform=NextStateReconstructor(),
            batch_size=40,
        )
        rb_mmap.extend(compact_data)
        mmap_sample = rb_mmap.sample()
        print("memmap sample shape:", mmap_sample.shape)
        assert ("next", "observation") in mmap_sample.keys(True, True)


if __name__ == "__main__":
    import os
    import warnings

    warnings.filterwarnings("ignore")
    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
