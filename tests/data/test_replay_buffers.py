"""Replay buffers: the seed's usage, TensorDict and prioritized variants, transforms, iteration."""

from __future__ import annotations

import functools
import json
import operator
import subprocess
import sys
import textwrap

import pytest
import torch

import tdrl.data
from tdrl.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    PrioritizedReplayBuffer,
    ReplayBuffer,
    SamplerWithoutReplacement,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)


def test_seed_imports_and_usage(make_transitions):
    from tdrl.data.replay_buffers import ReplayBuffer as RB
    from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement as SWR
    from tdrl.data.replay_buffers.storages import LazyTensorStorage as LTS

    frames_per_batch, sub_batch_size = 1000, 64
    replay_buffer = RB(storage=LTS(max_size=frames_per_batch), sampler=SWR())
    for collected in range(3):
        data_view = make_transitions(frames_per_batch, start=collected * frames_per_batch)
        replay_buffer.extend(data_view.cpu())
        seen = []
        for _ in range(frames_per_batch // sub_batch_size):
            subdata = replay_buffer.sample(sub_batch_size)
            assert subdata.batch_size[0] <= sub_batch_size
            seen.append(subdata["observation"][:, 0])
        steps = torch.cat(seen).long()
        assert steps.min() >= collected * frames_per_batch  # only the newest batch is sampled
        if collected == 0:  # within one epoch, no frame is repeated
            assert len(set(steps.tolist())) == len(steps) == 960
        assert len(replay_buffer) == frames_per_batch


def test_tdrl_data_exports_specs_and_buffers():
    assert tdrl.data.ReplayBuffer is ReplayBuffer
    assert "Composite" in tdrl.data.__all__
    assert "LazyMemmapStorage" in tdrl.data.__all__


def test_default_buffer_is_a_list_of_anything():
    rb = ReplayBuffer()
    rb.extend([1, "two", 3.0])
    assert len(rb) == 3
    assert rb.storage.max_size == 1000
    assert set(rb.sample(20)) <= {1, "two", 3.0}
    rb.add(torch.zeros(2))
    assert rb[3].shape == (2,)


def test_list_storage_stacks_tensors_and_tensordicts(make_transitions):
    rb = ReplayBuffer(storage=ListStorage(10))
    rb.extend(make_transitions(4))
    assert rb.sample(3).batch_size == torch.Size([3])
    tensors = ReplayBuffer(storage=ListStorage(10))
    tensors.extend([torch.ones(2), torch.zeros(2)])
    assert tensors.sample(5).shape == (5, 2)
    ragged = ReplayBuffer(storage=ListStorage(10))
    ragged.extend([torch.ones(2), torch.zeros(3)])
    with pytest.raises(ValueError, match="collate_fn=list"):
        ragged.sample(8)
    as_list = ReplayBuffer(storage=ListStorage(10), collate_fn=list)
    as_list.extend([torch.ones(2), torch.zeros(3)])
    assert isinstance(as_list.sample(2), list)


def test_batch_size_rules(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    rb.extend(make_transitions(5))
    with pytest.raises(ValueError, match="no batch size"):
        rb.sample()
    with pytest.raises(ValueError, match="positive integer"):
        rb.sample(0)
    with pytest.raises(ValueError, match="prefetch needs a fixed batch_size"):
        ReplayBuffer(prefetch=2)
    with pytest.raises(TypeError, match="storage must be a Storage"):
        ReplayBuffer(storage=[1, 2])
    fixed = ReplayBuffer(storage=LazyTensorStorage(10), batch_size=2)
    fixed.extend(make_transitions(5))
    with pytest.warns(UserWarning, match="overrides the batch_size=2"):
        assert len(fixed.sample(3)) == 3


def test_getitem(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    rb.extend(make_transitions(6))
    assert rb[2]["observation"][0] == 2
    assert rb[-1]["observation"][0] == 5
    assert rb[1:4]["observation"][:, 0].tolist() == [1, 2, 3]
    assert rb[[0, 5]]["observation"][:, 0].tolist() == [0, 5]
    assert rb[torch.tensor([-2])]["observation"][:, 0].tolist() == [4]
    with pytest.raises(IndexError, match="out of range"):
        rb[6]
    with pytest.raises(IndexError, match=r"\[-6, 6\)"):
        rb[[0, 9]]


def test_empty_keeps_the_structure(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(10), sampler=SamplerWithoutReplacement(), batch_size=4)
    rb.extend(make_transitions(6))
    rb.sample()
    rb.empty()
    assert len(rb) == 0
    assert rb.write_count == 0
    with pytest.raises(RuntimeError, match="empty replay buffer"):
        rb.sample()
    assert rb.extend(make_transitions(3)).tolist() == [0, 1, 2]
    assert sorted(torch.cat([b["observation"][:, 0] for b in rb]).tolist()) == [0, 1, 2]


def test_tensordict_buffer_adds_index_and_info(make_transitions):
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), batch_size=16)
    rb.extend(make_transitions(50))
    batch = rb.sample()
    assert torch.equal(batch["index"].double(), batch["observation"][:, 0])
    item = make_transitions(1, start=50)[0]
    assert rb.add(item) == 50
    assert item["index"] == 50
    with pytest.raises(TypeError, match="stores TensorDicts"):
        rb.extend(torch.zeros(3))


def test_tensordict_prioritized_buffer_round_trip(make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=1.0, beta=1.0, eps=0.0, storage=LazyTensorStorage(20), batch_size=64)
    data = make_transitions(10)
    data["td_error"] = torch.zeros(10)
    data["td_error"][3] = 1.0
    rb.extend(data)  # priorities read from "td_error"
    batch = rb.sample()
    assert (batch["index"] == 3).all()
    assert (batch["priority_weight"] == 1).all()
    batch["td_error"] = torch.full((64,), 0.0)
    batch["td_error"][0] = 0.0
    other = rb[torch.tensor([7])]
    other["index"] = torch.tensor([7])
    other["td_error"] = torch.tensor([5.0])
    rb.update_tensordict_priority(batch)  # item 3 now has priority 0
    rb.update_priority(other)  # a TensorDict works too
    assert (rb.sample()["index"] == 7).all()


def test_prioritized_extend_refuses_bad_priorities_before_writing(make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.5, beta=0.5, storage=LazyTensorStorage(20))
    data = make_transitions(5)
    data["td_error"] = torch.tensor([1.0, 2.0, -1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"finite and >= 0, got -1\.0"):
        rb.extend(data)
    assert len(rb) == 0
    assert rb.sampler._tree.total() == 0


def test_prioritized_priority_reduction(make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=1.0, beta=1.0, eps=0.0, storage=LazyTensorStorage(5), reduction="mean")
    data = make_transitions(2)
    data["td_error"] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    rb.extend(data)
    assert rb.sampler._tree.values().tolist()[:2] == [2.0, 0.0]


def test_plain_prioritized_buffer_with_tensors():
    rb = PrioritizedReplayBuffer(alpha=1.0, beta=1.0, eps=0.0, storage=LazyTensorStorage(10))
    index = rb.extend(torch.arange(6.0))
    rb.update_priority(index, torch.tensor([0.0, 0, 0, 0, 1, 1]))
    assert set(rb.sample(50).tolist()) == {4.0, 5.0}


class _AddOne:
    """A transform with an inverse, like a tdrl Transform used in a buffer."""

    def __init__(self, key: str = "observation") -> None:
        self.key = key

    def __call__(self, td):
        return td.set(self.key, td[self.key] + 1)

    def inv(self, td):
        return td.set(self.key, td[self.key] - 100)


def test_transforms_run_on_sample_and_inverse_on_write(make_transitions):
    rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=lambda td: td.set("seen", torch.ones(td.shape[0])))
    rb.extend(make_transitions(4))
    assert "seen" in rb.sample(2).keys()
    with_inverse = ReplayBuffer(storage=LazyTensorStorage(10)).append_transform(_AddOne())
    with_inverse.extend(make_transitions(4))
    stored = with_inverse.storage.get(torch.arange(4))["observation"][:, 0]
    assert stored.tolist() == [-100.0, -99.0, -98.0, -97.0]
    assert with_inverse[torch.arange(4)]["observation"][:, 0].tolist() == [-99.0, -98.0, -97.0, -96.0]
    inverted = ReplayBuffer(storage=LazyTensorStorage(10)).append_transform(_AddOne(), invert=True)
    inverted.add(make_transitions(1)[0])  # forward call on write, inv on read
    assert inverted.storage.get(0)["observation"][0] == 1.0
    assert inverted[0]["observation"][0] == -99.0


def test_transform_order_and_insert(make_transitions):
    calls = []
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    rb.append_transform(lambda td: calls.append("b") or td)
    rb.insert_transform(0, lambda td: calls.append("a") or td)
    rb.append_transform(lambda td: calls.append("c") or td)
    rb.extend(make_transitions(3))
    rb.sample(2)
    assert calls == ["a", "b", "c"]
    assert len(rb.transform) == 3
    with pytest.raises(TypeError, match="must be callable"):
        rb.append_transform("not callable")
    with pytest.raises(TypeError, match="inv"):
        rb.append_transform(lambda td: td, invert=True)


def test_transform_module_is_put_in_eval_mode(make_transitions):
    module = torch.nn.Dropout(0.5)
    rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=lambda td: td)
    rb.append_transform(module.train())
    assert not module.training


def test_prefetch_gives_the_same_batches_as_sampling_in_line(make_transitions):
    def run(prefetch):
        torch.manual_seed(4)
        rb = ReplayBuffer(
            storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(), batch_size=16, prefetch=prefetch
        )
        rb.extend(make_transitions(100))
        return [[b["observation"][:, 0] for b in rb] for _ in range(2)]

    plain, ahead = run(None), run(3)
    assert len(plain[0]) == len(ahead[0]) == 7
    for a, b in zip(functools.reduce(operator.iadd, plain, []), functools.reduce(operator.iadd, ahead, [])):
        assert torch.equal(a, b)


# A prefetch job is made to be running (held in its transform, outside the buffer's lock)
# when the call starts; once let go, the job after it needs the lock. A call that waits for
# prefetch jobs while holding the lock then waits forever, so the scenario runs in a child
# process that reports which calls returned and exits hard (a hung thread cannot hang pytest).
_PREFETCH_SCENARIO = textwrap.dedent(
    """
    import json, os, sys, tempfile, threading
    import torch
    from tdrl.data.replay_buffers import LazyTensorStorage, ReplayBuffer

    entered, release = threading.Event(), threading.Event()

    def transform(batch):
        if threading.current_thread() is not threading.main_thread() and not release.is_set():
            entered.set()
            release.wait()
        return batch

    def returns(method):
        rb = ReplayBuffer(storage=LazyTensorStorage(100), batch_size=4, prefetch=3, transform=transform)
        rb.extend(torch.zeros(100))
        other = ReplayBuffer(storage=LazyTensorStorage(100))
        other.extend(torch.ones(100))
        state = other.state_dict()
        folder = tempfile.mkdtemp()
        other.dumps(folder)
        entered.clear()
        release.clear()
        rb.sample()  # three more batches are now drawn in the background
        entered.wait(30)
        call = {"empty": rb.empty, "load_state_dict": lambda: rb.load_state_dict(state),
                "loads": lambda: rb.loads(folder)}[method]
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(0.2)  # let the call reach its wait
        release.set()
        thread.join(20)
        if thread.is_alive():
            return "hangs"
        if method == "empty":
            rb.extend(torch.ones(100))
        # no batch drawn before the call is handed out after it
        return [bool((rb.sample() == 1).all()) for _ in range(5)]

    print(json.dumps({m: returns(m) for m in ("empty", "load_state_dict", "loads")}))
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_empty_and_loading_do_not_deadlock_with_prefetch_jobs_running():
    child = subprocess.run([sys.executable, "-c", _PREFETCH_SCENARIO], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    returned = json.loads(child.stdout.strip().splitlines()[-1])
    assert returned == {"empty": [True] * 5, "load_state_dict": [True] * 5, "loads": [True] * 5}


def test_memmap_buffer_end_to_end(tmp_path, make_transitions):
    rb = TensorDictReplayBuffer(storage=LazyMemmapStorage(64, scratch_dir=tmp_path), batch_size=8)
    for start in range(0, 100, 10):
        rb.extend(make_transitions(10, start=start))
    batch = rb.sample()
    assert ((batch["observation"][:, 0] >= 36) & (batch["observation"][:, 0] < 100)).all()
    assert torch.equal(batch["index"].double(), batch["observation"][:, 0] % 64)


def test_repr_mentions_the_parts(make_transitions):
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.6, beta=0.4, storage=LazyTensorStorage(10))
    rb.extend(make_transitions(2))
    text = repr(rb)
    assert "LazyTensorStorage" in text
    assert "PrioritizedSampler" in text
    assert "alpha=0.6" in text


def test_prioritized_buffers_need_a_finite_capacity():
    with pytest.raises(ValueError, match="finite max_size"):
        PrioritizedReplayBuffer(alpha=0.5, beta=0.5, storage=ListStorage())
    with pytest.raises(ValueError, match="finite max_size"):
        TensorDictPrioritizedReplayBuffer(alpha=0.5, beta=0.5, storage=ListStorage())
