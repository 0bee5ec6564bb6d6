# %% [markdown]
# # Replay buffers: storage, sampler, writer
#
# A replay buffer answers three questions, each by a separate, swappable part:
#
# | part | question | examples |
# |---|---|---|
# | **storage** | where do items live? | `LazyTensorStorage` (RAM, allocated on first write), `LazyMemmapStorage` (files on disk), `ListStorage` (any Python objects) |
# | **sampler** | which items come out? | `RandomSampler`, `SamplerWithoutReplacement`, `PrioritizedSampler`, `SliceSampler` |
# | **writer** | where do new items go? | `RoundRobinWriter` (overwrite the oldest), `TensorDictMaxValueWriter` (keep the best) |
#
# This notebook fills buffers with real transitions from a MuJoCo env, samples them the
# four ways above, and saves one to disk and back.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import torch

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SliceSampler,
    TensorDictMaxValueWriter,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)
from tdrl.envs import StepCounter, TransformedEnv
from tdrl.envs.libs.gym import GymEnv

torch.manual_seed(0)
frames = int(os.environ.get("TDRL_TUTORIAL_FRAMES", 20_000))
workdir = os.environ.get("TDRL_TUTORIAL_DIR") or tempfile.mkdtemp()

# %% [markdown]
# ## Some data
#
# A random policy on `HalfCheetah-v5`, collected in batches of 1000 frames. Each frame is
# a TensorDict with the observation, the action, and the `"next"` entries; the collector also
# tags each frame with the id of its trajectory, `("collector", "traj_ids")`.

# %%
env = TransformedEnv(GymEnv("HalfCheetah-v5"), StepCounter(max_steps=200))
collector = SyncDataCollector(env, None, frames_per_batch=1000, total_frames=frames)
batches = list(collector)
collector.shutdown()
data = torch.cat(list(batches), 0)
print(data)

# %% [markdown]
# ## Uniform sampling, and an epoch without replacement
#
# `LazyTensorStorage(n)` allocates one tensor per key, of `n` rows, from the structure of the
# first item written. `extend` writes a whole batch at once.

# %%
buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=100_000))
buffer.extend(data)
print(len(buffer), buffer.sample(4)["next", "reward"].flatten())

# %% [markdown]
# With `SamplerWithoutReplacement`, iterating over the buffer is one epoch: every item
# comes out exactly once (this is how the PPO tutorial consumes each batch).

# %%
epoch_buffer = ReplayBuffer(storage=LazyTensorStorage(1000), sampler=SamplerWithoutReplacement(), batch_size=128)
epoch_buffer.extend(batches[0])
seen = torch.cat([b["step_count"].flatten() * 0 + i for i, b in enumerate(epoch_buffer)])
print("batches in one epoch:", int(seen.max()) + 1, "- items seen:", seen.numel())

# %% [markdown]
# ## Prioritized replay
#
# A prioritized buffer samples item `i` with probability proportional to `(p_i + eps) ** alpha`
# and returns importance weights that correct for the bias. In DQN-style training, the
# priority is the TD error, written back after each update. Here we simply use the absolute
# reward as the priority and check that sampling follows it.

# %%
prb = TensorDictPrioritizedReplayBuffer(
    alpha=1.0, beta=0.4, priority_key="td_error", storage=LazyTensorStorage(data.shape[0])
)
prb.extend(data)
# a training step would do this for each sampled batch; here we set every item's priority
sample = prb.sample(256)
sample["td_error"] = sample["next", "reward"].abs().flatten()
prb.update_tensordict_priority(sample)  # from a sampled batch (its "index" says where)
prb.update_priority(torch.arange(len(prb)), data["next", "reward"].abs().flatten())  # or by index

everything = prb.sample(4096)
print("mean |reward| sampled uniformly  :", data["next", "reward"].abs().mean().item())
print("mean |reward| sampled prioritized:", everything["next", "reward"].abs().mean().item())
print("importance weights:", everything["priority_weight"][:5])

# %% [markdown]
# Transitions with a large reward come out more often, and their importance weights are
# smaller: a loss that multiplies by `priority_weight` undoes the bias of the sampling.
#
# ## Slices of trajectories
#
# Sequence models and n-step returns want contiguous pieces of one trajectory. `SliceSampler`
# draws `num_slices` slices of `slice_len` steps, each inside a single trajectory (it reads the
# collector's `traj_ids`); a slice never crosses an episode boundary.

# %%
slices = ReplayBuffer(
    storage=LazyTensorStorage(data.shape[0]),
    sampler=SliceSampler(slice_len=16, traj_key=("collector", "traj_ids")),
    batch_size=64,
)
slices.extend(data)
batch = slices.sample().reshape(4, 16)
print("trajectory ids of each slice:", batch["collector", "traj_ids"][:, [0, -1]].tolist())
print("step counts of one slice:", batch["step_count"][0].flatten().tolist())

# %% [markdown]
# ## Keeping the best
#
# A writer decides where new items go. `TensorDictMaxValueWriter` keeps the items with the
# largest value of a key — here, the 50 highest-reward transitions seen so far.

# %%
best = TensorDictReplayBuffer(
    storage=LazyTensorStorage(50), writer=TensorDictMaxValueWriter(rank_key=("next", "reward"))
)
for b in batches:
    best.extend(b)
kept = best[:]["next", "reward"].flatten()
print(
    f"kept {kept.numel()} rewards, min {kept.min().item():.2f}, dataset max {data['next', 'reward'].max().item():.2f}"
)

plt.hist(data["next", "reward"].flatten().numpy(), bins=50, alpha=0.6, label="all transitions")
plt.hist(kept.numpy(), bins=10, alpha=0.8, label="kept by the max-value writer")
plt.xlabel("reward")
plt.legend()
plt.show()

# %% [markdown]
# ## On disk, and back
#
# `LazyMemmapStorage` writes each key to a memory-mapped file in `scratch_dir`: a buffer of a
# million MuJoCo transitions lives on disk, and the operating system pages in what is read.
# `dumps(path)` saves storage, sampler and writer state (no pickle: tensors and JSON), and
# `loads(path)` restores them exactly: the restored buffer draws the same future samples.

# %%
disk = ReplayBuffer(storage=LazyMemmapStorage(100_000, scratch_dir=os.path.join(workdir, "memmap")))
disk.extend(data)
path = os.path.join(workdir, "checkpoint")
disk.dumps(path)

restored = ReplayBuffer(storage=LazyMemmapStorage(100_000, scratch_dir=os.path.join(workdir, "memmap2")))
restored.loads(path)
torch.manual_seed(1)
a = disk.sample(8)["observation"]
torch.manual_seed(1)
b = restored.sample(8)["observation"]
print("same items:", len(restored) == len(disk), "- same samples:", torch.equal(a, b))
print("files:", sorted(os.listdir(path)))
