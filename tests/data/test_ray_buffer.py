"""RayReplayBuffer: a tdrl buffer in a Ray actor behaves as the same buffer held locally."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from functools import partial

import pytest
import torch
from tensordict import TensorDict

from tdrl._ray_transport import Packed, pack, unpack
from tdrl.data.replay_buffers import (
    LazyTensorStorage,
    RayReplayBuffer,
    SamplerWithoutReplacement,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray(ray_local_runtime):
    """A Ray runtime of the module's own (tests/conftest.py), even when another cluster runs here."""
    return ray_local_runtime


@pytest.fixture(scope="module")
def shared():
    """One buffer for the tests that start from ``empty()`` (each actor costs seconds to start)."""
    with _buffer(storage=partial(LazyTensorStorage, 4000), sampler=SamplerWithoutReplacement, batch_size=32) as rb:
        yield rb


def _buffer(**kwargs) -> RayReplayBuffer:
    kwargs.setdefault("replay_buffer_cls", TensorDictReplayBuffer)
    kwargs.setdefault("storage", partial(LazyTensorStorage, 100))
    kwargs.setdefault("timeout", 60)
    return RayReplayBuffer(**kwargs)


def test_samples_match_a_local_buffer_with_the_same_seed(make_transitions):
    data = make_transitions(10)
    with _buffer(sampler=SamplerWithoutReplacement, batch_size=4, seed=3) as remote:
        torch.manual_seed(3)
        local = TensorDictReplayBuffer(
            storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(), batch_size=4
        )
        assert remote.extend(data).tolist() == local.extend(data.clone()).tolist()
        first_remote, first_local = remote.sample(), local.sample()
        assert first_remote.batch_size == first_local.batch_size == torch.Size([4])
        assert set(first_remote.keys(True, True)) == set(first_local.keys(True, True))
        torch.testing.assert_close(first_remote.to_dict(), first_local.to_dict(), rtol=0, atol=0)
        # the rest of the epoch, through iteration
        rest_remote, rest_local = list(remote), list(local)
        assert [b["index"].tolist() for b in rest_remote] == [b["index"].tolist() for b in rest_local]
        assert len(remote) == len(local) == 10
        assert remote.write_count == 10
        torch.testing.assert_close(remote[2:5].to_dict(), local[2:5].to_dict(), rtol=0, atol=0)
        batch = rest_remote[0]
        batch["observation"].mul_(2)  # a sampled batch is the caller's to write into
        assert batch.device is None or batch.device.type == "cpu"


def _double_reward():
    def transform(td):
        td["next", "reward"] = td["next", "reward"] * 2
        return td

    return transform


def test_prioritized_sampling_follows_priority_updates_and_the_transform_runs(make_transitions):
    with _buffer(
        replay_buffer_cls=TensorDictPrioritizedReplayBuffer,
        alpha=1.0,
        beta=0.5,
        batch_size=16,
        transform_factory=_double_reward,
    ) as rb:
        rb.extend(make_transitions(8))
        batch = rb.sample()
        assert "priority_weight" in batch.keys()
        torch.testing.assert_close(batch["next", "reward"][:, 0], batch["index"].float() * 2)
        # the index route: every item gets priority 0, then the TensorDict route: one gets 1
        rb.update_priority(torch.arange(8), torch.zeros(8))
        batch["td_error"] = (batch["index"] == batch["index"][0]).float()
        rb.update_tensordict_priority(batch)
        favourite = int(batch["index"][0])
        assert set(rb.sample()["index"].tolist()) == {favourite}
        # the index route again: only item 5 is left with a priority
        rb.update_priority(torch.arange(8), (torch.arange(8) == 5).float())
        assert set(rb.sample()["index"].tolist()) == {5}


def test_state_dumps_and_loads_round_trip(shared, make_transitions, tmp_path):
    rb = shared
    rb.empty()
    assert len(rb) == 0
    assert rb.write_count == 0
    data = make_transitions(20)
    rb.extend(data)
    rb.sample(6)
    state = rb.state_dict()
    assert state["type"] == "TensorDictReplayBuffer"
    rb.dumps(tmp_path)
    expected = [rb.sample(6)["index"].tolist() for _ in range(2)]
    rb.extend(make_transitions(5, start=20))
    rb.loads(tmp_path)
    assert len(rb) == 20
    assert rb.write_count == 20
    assert [rb.sample(6)["index"].tolist() for _ in range(2)] == expected
    torch.testing.assert_close(rb[0:20]["observation"], data["observation"], rtol=0, atol=0)
    rb.empty()
    rb.load_state_dict(state)
    assert len(rb) == 20


@ray.remote(num_cpus=0)
class _Writer:
    """Extends ``batches`` copies of ``template`` whose ``"episode"`` and observations hold unique ids."""

    def __init__(self, client, first_id: int, batches: int, template: TensorDict) -> None:
        self.client, self.first_id, self.batches, self.template = client, first_id, batches, template

    def run(self) -> int:
        size = self.template.batch_size[0]
        for b in range(self.batches):
            start = self.first_id + b * size
            data = self.template.clone()
            data["episode"] = torch.arange(start, start + size)
            data["observation"][:] = data["episode"].double().unsqueeze(-1)
            self.client.extend(data)
        return self.batches * size


def test_concurrent_writers_lose_and_duplicate_nothing(shared, make_transitions):
    batches, batch = 20, 50
    rb = shared
    rb.empty()
    template = make_transitions(batch)
    writers = [_Writer.remote(client, i * 10_000, batches, template) for i, client in enumerate(rb.clients(2))]
    pending = [w.run.remote() for w in writers]
    sampled = 0
    while True:  # the learner samples while the writers write
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        if len(rb):
            sample = rb.sample()
            assert torch.equal(sample["observation"][:, 0], sample["episode"].double())
            sampled += 1
        if len(done) == len(pending):
            break
    assert sum(ray.get(pending, timeout=60)) == 2 * batches * batch
    ids = rb[0 : 2 * batches * batch]["episode"]
    expected = {i * 10_000 + k for i in range(2) for k in range(batches * batch)}
    assert len(rb) == rb.write_count == 2 * batches * batch
    assert ids.unique().numel() == ids.numel()
    assert set(ids.tolist()) == expected
    assert sampled > 0


def test_a_client_pickles_but_cannot_close_and_close_leaves_no_actor():
    rb = _buffer(batch_size=2, remote_config={"name": "tdrl-test-rb"})
    assert ray.get_actor("tdrl-test-rb") is not None
    client = pickle.loads(pickle.dumps(rb.client()))
    client.extend(TensorDict({"x": torch.arange(4)}, [4]))
    assert client.add(TensorDict({"x": torch.tensor(9)}, [])) == 4
    assert len(rb) == 5
    assert client.sample()["x"].shape == (2,)
    with pytest.raises(KeyError, match="unexpected keys"):  # the buffer's own error, as it raised it
        client.extend(TensorDict({"y": torch.arange(2)}, [2]))
    assert rb.write_count == 5
    assert not hasattr(client, "close")
    assert not hasattr(client, "client")
    with pytest.raises(TypeError, match=r"rb\.client"):
        pickle.dumps(rb)
    rb.close()
    with pytest.raises(RuntimeError, match="dead"):
        len(client)
    with pytest.raises(RuntimeError, match="closed"):
        rb.sample()
    with pytest.raises(ValueError, match="tdrl-test-rb"):
        ray.get_actor("tdrl-test-rb")
    assert ray.is_initialized()  # a runtime the user started is left running
    rb.close()  # twice: nothing happens


def test_a_killed_actor_raises_a_clear_error_at_once():
    with _buffer(batch_size=2) as rb:
        rb.extend(TensorDict({"x": torch.arange(4)}, [4]))
        ray.kill(rb._actor, no_restart=True)  # returns before the actor is gone: wait until it is
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ray.get(rb._actor.__ray_ready__.remote(), timeout=5)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                break
            time.sleep(0.1)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"RayReplayBuffer.sample: the actor is dead .*Create a new one"):
            rb.sample()
        assert time.monotonic() - start < 30


def test_construction_errors_reach_the_caller():
    with pytest.raises(TypeError, match=r"storage=.*built a list, not a Storage"):
        _buffer(storage=list)
    with pytest.raises(TypeError, match="replay_buffer_cls"):
        RayReplayBuffer(replay_buffer_cls=dict)
    with pytest.raises(TimeoutError, match=r"num_cpus.*free"):
        _buffer(remote_config={"num_cpus": 64}, timeout=3)


def test_packing_keeps_nested_batch_sizes_and_dtypes():
    data = TensorDict(
        {
            "a": torch.arange(6).reshape(3, 2),
            "agents": TensorDict({"obs": torch.randn(3, 4, 5), "h": torch.ones(3, 4, dtype=torch.bfloat16)}, [3, 4]),
            "next": {"done": torch.zeros(3, 1, dtype=torch.bool)},
        },
        [3],
    )
    packed = pack(data)
    assert isinstance(packed, Packed)
    back = unpack(pickle.loads(pickle.dumps(packed)))
    assert back["agents"].batch_size == torch.Size([3, 4])
    assert back["agents", "h"].dtype == torch.bfloat16
    torch.testing.assert_close(back.to_dict(), data.to_dict(), rtol=0, atol=0)
    with_text = data.clone()
    with_text["name"] = "cartpole"  # non-tensor data: the TensorDict travels as it is
    assert pack(with_text) is with_text


def test_without_ray_import_works_and_construction_names_the_extra():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "import tdrl.data\n"
        "try:\n    tdrl.data.RayReplayBuffer()\n"
        "except ImportError as err:\n    print(err)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'RayReplayBuffer needs Ray, which is not installed: pip install "tdrl[ray]"'
