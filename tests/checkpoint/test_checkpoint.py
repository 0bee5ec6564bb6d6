"""tdrl.checkpoint: a whole training state saved mid-run resumes bit for bit, crash-safe, no pickle."""

from __future__ import annotations

import json
import os
import pickle
import zlib
from pathlib import Path

import pytest
import torch

import tdrl.checkpoint.adapters as adapters_module
import tdrl.checkpoint.checkpoint as checkpoint_module
from tdrl.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointOptions,
    CheckpointRotation,
    GlobalRNGState,
    StateDictCheckpointAdapter,
)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _rewrite_manifest(path: Path) -> None:
    """Recomputes the digests and the checksum after a test edited a file on purpose."""
    manifest = json.loads((path / "manifest.json").read_bytes())
    for rel in manifest["digests"]:
        data = (path / rel).read_bytes()
        manifest["digests"][rel] = {"bytes": len(data), "crc32": zlib.crc32(data)}
    manifest["checksum"] = checkpoint_module._body_crc(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# ----------------------------------------------------------------------------- resuming
def test_a_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, make_run):
    uninterrupted = make_run()
    uninterrupted.train(4)
    uninterrupted.checkpoint().save(tmp_path / "ckpt", metadata={"batches": 4})
    uninterrupted.train(4)

    resumed = make_run(seed=123)  # other weights, other generators: everything must come from the checkpoint
    result = resumed.checkpoint().load(tmp_path / "ckpt")
    assert result.loaded == set(resumed.checkpoint().components)
    assert result.manifest["metadata"] == {"batches": 4}
    assert resumed.progress == {"batches": 4}
    assert resumed.collector.state_dict()["frames"] == 32
    assert len(resumed.buffer) == 32
    resumed.train(4)

    assert resumed.losses == uninterrupted.losses[8:]
    assert _same(resumed.parameters(), uninterrupted.parameters())
    assert resumed.optim.param_groups[0]["lr"] == uninterrupted.optim.param_groups[0]["lr"]
    assert resumed.explore.eps.item() == uninterrupted.explore.eps.item()


def test_global_rng_state_restores_python_numpy_and_torch():
    import random

    import numpy as np

    rng = GlobalRNGState()
    state = rng.state_dict()

    def draw():
        return random.random(), float(np.random.rand()), torch.rand(()).item()  # noqa: NPY002

    first = draw()
    rng.load_state_dict(state)
    assert draw() == first
    with pytest.raises(KeyError, match="missing \\['numpy'\\]"):
        rng.load_state_dict({"python": state["python"], "torch_cpu": state["torch_cpu"]})


def test_the_training_state_round_trips_through_the_files(tmp_path, make_run):
    run = make_run()
    run.train(2)
    run.checkpoint().save(tmp_path / "ckpt")
    fresh = make_run(seed=5)
    fresh.checkpoint().load(tmp_path / "ckpt")
    assert _same(fresh.parameters(), run.parameters())
    assert fresh.optim.state_dict()["state"][0]["step"] == run.optim.state_dict()["state"][0]["step"]
    assert fresh.scheduler.state_dict() == run.scheduler.state_dict()
    assert torch.equal(fresh.buffer[:]["observation"], run.buffer[:]["observation"])


# ----------------------------------------------------------------------------- crash safety
@pytest.mark.parametrize("where", ["state_dict payload", "replay buffer", "manifest"])
def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch, where, make_run):
    run = make_run()
    run.train(2)
    run.checkpoint().save(tmp_path / "ckpt")
    saved = run.parameters()
    run.train(2)

    if where == "replay buffer":  # a component's own writer fails

        def broken_dumps(path):
            raise OSError("disk full")

        monkeypatch.setattr(run.buffer, "dumps", broken_dumps)
    else:  # the third state file, or the manifest (the last file), is torn by a full disk
        module = adapters_module if where == "state_dict payload" else checkpoint_module
        name = "_write_new" if where == "state_dict payload" else "write_new_file"
        real_write = getattr(module, name)
        calls = []

        def torn_write(path, data):
            calls.append(path)
            if where == "manifest" or len(calls) == 3:
                Path(path).write_bytes(bytes(data)[: len(data) // 2])
                raise OSError("disk full")
            return real_write(path, data)

        monkeypatch.setattr(module, name, torn_write)
    with pytest.raises(OSError, match="disk full"):
        run.checkpoint().save(tmp_path / "ckpt")
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no half-written folder left behind
    fresh = make_run(seed=9)
    fresh.checkpoint().load(tmp_path / "ckpt")
    assert _same(fresh.parameters(), saved)


def test_a_checkpoint_whose_rename_was_cut_short_is_read_from_its_backup(tmp_path):
    net = torch.nn.Linear(2, 2)
    Checkpoint(net=net).save(tmp_path / "ckpt")
    os.rename(tmp_path / "ckpt", tmp_path / ".ckpt.tdrl-old")  # killed between the two renames of a save
    fresh = torch.nn.Linear(2, 2)
    Checkpoint(net=fresh).load(tmp_path / "ckpt")
    assert torch.equal(fresh.weight, net.weight)


# ----------------------------------------------------------------------------- refusals
def test_loading_refuses_a_module_whose_keys_differ_and_names_the_key(tmp_path):
    Checkpoint(policy=torch.nn.Sequential(torch.nn.Linear(3, 4))).save(tmp_path / "ckpt")
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    before = [p.clone() for p in other.parameters()]
    with pytest.raises(CheckpointError, match=r"component 'policy'.*'2\.weight'.*build the object as it was"):
        Checkpoint(policy=other).load(tmp_path / "ckpt")
    assert _same([p.clone() for p in other.parameters()], before)


def test_loading_refuses_a_shape_that_differs(tmp_path):
    Checkpoint(policy=torch.nn.Linear(3, 4)).save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"key 'weight' has shape \[4, 3\] in the checkpoint and \[5, 3\]"):
        Checkpoint(policy=torch.nn.Linear(3, 5)).load(tmp_path / "ckpt")


def test_a_refused_load_changes_no_component(tmp_path):
    good, bad = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    Checkpoint(a_good=good, b_bad=bad).save(tmp_path / "ckpt")
    target_good, target_bad = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    before = target_good.weight.clone()
    with pytest.raises(CheckpointError, match="'b_bad'"):
        Checkpoint(a_good=target_good, b_bad=target_bad).load(tmp_path / "ckpt")
    assert torch.equal(target_good.weight, before)
    # with strict="warn" the components that fit are restored and the others reported
    with pytest.warns(UserWarning, match="'b_bad'"):
        result = Checkpoint(a_good=target_good, b_bad=target_bad).load(tmp_path / "ckpt", strict="warn")
    assert result.loaded == {"a_good"}
    assert "b_bad" in result.incompatible
    assert torch.equal(target_good.weight, good.weight)


def test_a_restore_that_fails_late_puts_the_earlier_components_back(tmp_path):
    class Fussy:
        def state_dict(self):
            return {"x": torch.zeros(2)}

        def load_state_dict(self, state):
            raise RuntimeError("refused")

    net = torch.nn.Linear(2, 2)
    Checkpoint(net=net, z_fussy=Fussy()).save(tmp_path / "ckpt")
    target = torch.nn.Linear(2, 2)
    before = target.weight.clone()
    with pytest.raises(CheckpointError, match=r"'z_fussy' .* put back"):
        Checkpoint(net=target, z_fussy=Fussy()).load(tmp_path / "ckpt")
    assert torch.equal(target.weight, before)


def test_loading_names_components_the_checkpoint_lacks(tmp_path):
    net = torch.nn.Linear(2, 2)
    Checkpoint(net=net).save(tmp_path / "ckpt")
    optim = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \['optim'\].*components=\[\.\.\.\]"):
        Checkpoint(net=net, optim=optim).load(tmp_path / "ckpt")
    assert Checkpoint(net=net, optim=optim).load(tmp_path / "ckpt", components=["net"]).loaded == {"net"}


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "edit the manifest", "remove a file"])
def test_a_damaged_checkpoint_is_refused_before_anything_changes(tmp_path, damage):
    net = torch.nn.Linear(4, 4)
    Checkpoint(net=net).save(tmp_path / "ckpt")
    payload = next((tmp_path / "ckpt").rglob("tensors.bin"))
    if damage == "flip a byte":
        data = bytearray(payload.read_bytes())
        data[5] ^= 0xFF
        payload.write_bytes(bytes(data))
    elif damage == "truncate":
        payload.write_bytes(payload.read_bytes()[:-4])
    elif damage == "remove a file":
        payload.unlink()
    else:
        text = (tmp_path / "ckpt" / "manifest.json").read_text()
        (tmp_path / "ckpt" / "manifest.json").write_text(text.replace('"net"', '"nut"', 1))
    target = torch.nn.Linear(4, 4)
    before = target.weight.clone()
    with pytest.raises(CheckpointError, match="damaged"):
        Checkpoint(net=target).load(tmp_path / "ckpt")
    assert torch.equal(target.weight, before)


def test_file_names_in_the_manifest_stay_inside_the_checkpoint(tmp_path):
    Checkpoint(net=torch.nn.Linear(2, 2)).save(tmp_path / "ckpt")
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_bytes())
    manifest["components"]["net"]["path"] = "../elsewhere"
    manifest["checksum"] = checkpoint_module._body_crc(manifest)
    (tmp_path / "ckpt" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not a path inside the checkpoint"):
        Checkpoint(net=torch.nn.Linear(2, 2)).load(tmp_path / "ckpt")


# ----------------------------------------------------------------------------- no pickle
def test_loading_runs_no_unpickler(tmp_path, monkeypatch, make_run):
    run = make_run()
    run.train(2)
    run.checkpoint().save(tmp_path / "ckpt")

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle anything")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    fresh = make_run(seed=3)
    fresh.checkpoint().load(tmp_path / "ckpt", tensor_load_kwargs={"weights_only": True})
    assert _same(fresh.parameters(), run.parameters())


PLANTED_CODE_RAN = []


def _planted_code():
    PLANTED_CODE_RAN.append(True)


class _Planted:
    """Unpickling this calls ``_planted_code``: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (_planted_code, ())


def test_torch_payloads_load_weights_only(tmp_path):
    net = torch.nn.Linear(2, 2)
    ckpt = Checkpoint()
    ckpt.register("net", net, adapter=StateDictCheckpointAdapter(payload_format="torch"))
    ckpt.save(tmp_path / "ckpt")
    fresh = torch.nn.Linear(2, 2)
    target = Checkpoint().register("net", fresh, adapter=StateDictCheckpointAdapter(payload_format="torch"))
    target.load(tmp_path / "ckpt")
    assert torch.equal(fresh.weight, net.weight)

    state_file = next((tmp_path / "ckpt").rglob("state.pt"))
    torch.save({"weight": _Planted()}, state_file)
    _rewrite_manifest(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="net"):
        target.load(tmp_path / "ckpt")
    assert not PLANTED_CODE_RAN


def test_a_state_that_needs_pickle_is_refused_at_save_and_nothing_is_written(tmp_path):
    class Odd:
        def state_dict(self):
            return {"fn": print}

        def load_state_dict(self, state):
            pass

    with pytest.raises(TypeError, match=r"builtin_function_or_method at state\['fn'\].*payload_format='torch'"):
        Checkpoint(odd=Odd()).save(tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- options, rotation
def test_options_reach_load_state_dict(tmp_path):
    Checkpoint(net=torch.nn.Sequential(torch.nn.Linear(2, 2))).save(tmp_path / "ckpt")
    bigger = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    result = Checkpoint(net=bigger).load(
        tmp_path / "ckpt", component_options={"net": CheckpointOptions(load_kwargs={"strict": False})}
    )
    assert result.loaded == {"net"}


def test_rotation_keeps_the_newest_and_resumes_from_the_latest(tmp_path):
    rotation = CheckpointRotation(tmp_path, keep_last=2)
    net = torch.nn.Linear(2, 2)
    for step in range(4):
        with torch.no_grad():
            net.weight.fill_(step)
        rotation.save(Checkpoint(net=net), step=step)
    assert [p.name for p in rotation.checkpoints()] == ["checkpoint-000000000002", "checkpoint-000000000003"]
    fresh = torch.nn.Linear(2, 2)
    rotation.load_latest(Checkpoint(net=fresh))
    assert torch.equal(fresh.weight, torch.full((2, 2), 3.0))
    with pytest.raises(KeyError, match="'return'"):
        CheckpointRotation(tmp_path, keep_last=1, keep_best=("return", "max")).save(Checkpoint(net=net), step=9)


@pytest.mark.parametrize("planted", ["an unlisted file", "a symlink out"])
def test_a_component_folder_holds_only_the_files_its_manifest_lists(tmp_path, planted):
    Checkpoint(net=torch.nn.Linear(2, 2)).save(tmp_path / "ckpt")
    folder = next((tmp_path / "ckpt" / "components").iterdir())
    if planted == "an unlisted file":
        (folder / "extra.bin").write_bytes(b"x")
    else:
        (tmp_path / "outside.bin").write_bytes(b"x")
        (folder / "link.bin").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(CheckpointError, match=r"does not list|symlink"):
        Checkpoint(net=torch.nn.Linear(2, 2)).load(tmp_path / "ckpt")
