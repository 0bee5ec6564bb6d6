"""tdrl.checkpoint against TorchRL 0.14.1's torchrl.checkpoint: the same names, arguments and behaviour."""

from __future__ import annotations

import inspect

import pytest
import torch

import tdrl.checkpoint as ours

theirs = pytest.importorskip("torchrl.checkpoint")

_METHODS = {
    "Checkpoint": ["__init__", "register", "register_adapter", "save", "load", "manifest", "is_checkpoint"],
    "CheckpointRotation": ["__init__", "save", "checkpoints", "latest", "best", "prune", "load_latest"],
    "GlobalRNGState": ["state_dict", "load_state_dict"],
    "CheckpointOptions": ["merged"],
    "StateDictCheckpointAdapter": ["__init__"],
}


def test_every_torchrl_checkpoint_name_exists():
    assert sorted(set(theirs.__all__) - set(ours.__all__)) == []


@pytest.mark.parametrize(("cls", "method"), [(c, m) for c, ms in _METHODS.items() for m in ms])
def test_the_arguments_are_torchrls(cls, method):
    def params(owner):
        signature = inspect.signature(getattr(getattr(owner, cls), method))
        return [(p.name, p.kind) for p in signature.parameters.values()]

    assert params(ours) == params(theirs)


def test_a_torchrl_program_runs_with_the_import_swapped(tmp_path):
    """The same calls on both libraries restore the same weights and report the same result."""
    results = {}
    for name, lib in (("torchrl", theirs), ("tdrl", ours)):
        torch.manual_seed(0)
        source = torch.nn.Linear(2, 1)
        optim = torch.optim.Adam(source.parameters())
        source(torch.randn(4, 2)).sum().backward()
        optim.step()
        progress = {"step": 7}
        lib.Checkpoint(policy=source, optim=optim, progress=progress, rng=lib.GlobalRNGState()).save(
            tmp_path / name, metadata={"step": 7}
        )
        target = torch.nn.Linear(2, 1)
        target_optim = torch.optim.Adam(target.parameters())
        restored_progress: dict[str, int] = {}
        ckpt = lib.Checkpoint(policy=target, optim=target_optim, progress=restored_progress, rng=lib.GlobalRNGState())
        result = ckpt.load(tmp_path / name)
        results[name] = (
            sorted(result.loaded),
            result.manifest["metadata"],
            restored_progress,
            target.weight.detach().clone(),
            target_optim.state_dict()["state"][0]["exp_avg"].clone(),
            torch.rand(()).item(),  # the global generator as saved, then one draw
        )
    mine, reference = results["tdrl"], results["torchrl"]
    assert mine[:3] == reference[:3]
    assert torch.equal(mine[3], reference[3])
    assert torch.equal(mine[4], reference[4])
    assert mine[5] == reference[5]
