"""TensorDictRecorder: which steps it keeps, what dump writes, TorchRL parity of the recorded steps."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import TransformedEnv
from tdrl.record import TensorDictRecorder
from tdrl.testing import CountingEnv


def test_dump_writes_every_skip_th_step_and_starts_over(tmp_path):
    recorder = TensorDictRecorder(tmp_path / "run", skip=2, skip_reset=False)
    env = TransformedEnv(CountingEnv(max_steps=100, batch_size=[2]), recorder)
    env.rollout(5)
    recorder.dump(suffix="first")
    path = f"{tmp_path / 'run'}_first_tensordict.t"
    saved = torch.load(path, weights_only=False)
    assert saved.batch_size == (3, 2)  # three kept steps (of six, the reset included) of the two envs
    assert saved["observation"][:, 0].flatten().tolist() == [1.0, 3.0, 5.0]
    assert {"observation", "reward", "done"} <= set(saved.keys())
    assert (recorder.iter, recorder.count, recorder.td) == (1, 0, [])


def test_recorded_steps_are_copies_of_the_selected_keys():
    recorder = TensorDictRecorder("unused", skip=1, in_keys=["observation"])
    step = TensorDict({"observation": torch.zeros(1), "reward": torch.ones(1)}, [])
    recorder._call(step)
    step["observation"].add_(5.0)
    assert list(recorder.td[0].keys()) == ["observation"]
    assert recorder.td[0]["observation"].item() == 0.0


def test_dump_with_nothing_recorded_and_a_bad_skip_say_what_to_do(tmp_path):
    recorder = TensorDictRecorder(tmp_path / "run", skip=1)
    recorder._call(TensorDict({"x": torch.zeros(1)}, []))  # only the skipped first step
    with pytest.raises(RuntimeError, match="no step recorded"):
        recorder.dump()
    with pytest.raises(ValueError, match="skip must be a positive int"):
        TensorDictRecorder(tmp_path / "run", skip=0)


def test_keeps_the_steps_torchrls_keeps():
    recorders = pytest.importorskip("torchrl.record")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = recorders.TensorDictRecorder("unused", skip=3, in_keys=["x"])
    ours = TensorDictRecorder("unused", skip=3, in_keys=["x"])
    for t in range(10):
        step = TensorDict({"x": torch.tensor([float(t)]), "y": torch.zeros(1)}, [])
        theirs._call(step)
        ours._call(step)
    assert [td["x"].item() for td in ours.td] == [td["x"].item() for td in theirs.td] == [2.0, 5.0, 8.0]
