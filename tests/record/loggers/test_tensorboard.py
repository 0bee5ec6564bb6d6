"""TensorboardLogger: scalars, hparams, histograms and videos read back from the event files."""

from __future__ import annotations

import io

import pytest
import torch

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tdrl.record import TensorboardLogger


def _events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_are_read_back(tmp_path):
    logger = TensorboardLogger("run", log_dir=str(tmp_path))
    for step, value in enumerate([0.5, 0.25, 0.125]):
        logger.log_scalar("loss", torch.tensor(value), step=step * 10)
    logger.close()
    events = _events(tmp_path / "run").Scalars("loss")
    assert [(e.step, e.value) for e in events] == [(0, 0.5), (10, 0.25), (20, 0.125)]


def test_histogram_is_read_back(tmp_path):
    logger = TensorboardLogger("run", log_dir=str(tmp_path))
    data = torch.arange(100.0)
    logger.log_histogram("weights", data, step=4)
    logger.close()
    (event,) = _events(tmp_path / "run").Histograms("weights")
    assert event.step == 4
    assert event.histogram_value.num == 100
    assert event.histogram_value.min == 0.0
    assert event.histogram_value.max == 99.0


def test_hparams_are_written(tmp_path):
    logger = TensorboardLogger("run", log_dir=str(tmp_path))
    logger.log_hparams({"lr": 0.001, "net": {"depth": 3}, "env": "Pendulum-v1", "sizes": [64, 64]})
    logger.close()
    # add_hparams writes its summary into a sub-run of the experiment's folder
    subruns = [p for p in (tmp_path / "run").iterdir() if p.is_dir()]
    assert len(subruns) == 1
    content = _events(subruns[0]).PluginTagToContent("hparams")
    blob = b"".join(content.values())
    for name in (b"lr", b"net/depth", b"env", b"sizes"):
        assert name in blob


def test_video_is_a_decodable_animated_image(tmp_path):
    imageio = pytest.importorskip("imageio")
    logger = TensorboardLogger("run", log_dir=str(tmp_path))
    video = torch.zeros(5, 3, 16, 24, dtype=torch.uint8)
    video[:, 1] = torch.arange(5, dtype=torch.uint8).mul(50).view(5, 1, 1)  # a brighter green each frame
    logger.log_video("episode", video, step=2, fps=5)
    logger.close()
    (event,) = _events(tmp_path / "run").Images("episode")
    assert (event.step, event.height, event.width) == (2, 16, 24)
    frames = imageio.mimread(io.BytesIO(event.encoded_image_string), format="GIF")
    assert len(frames) == 5
    assert frames[0].shape[:2] == (16, 24)


def test_a_new_run_never_writes_into_another_runs_folder_and_resume_goes_back(tmp_path):
    first = TensorboardLogger("run", log_dir=str(tmp_path))
    first.log_scalar("x", 1.0, step=0)
    state = first.state_dict()
    first.close()
    with pytest.warns(UserWarning, match="run_1"):
        second = TensorboardLogger("run", log_dir=str(tmp_path))
    assert second.log_dir == str(tmp_path / "run_1")
    second.load_state_dict(state)
    second.log_scalar("x", 2.0, step=1)
    second.close()
    assert [e.value for e in _events(tmp_path / "run").Scalars("x")] == [1.0, 2.0]


def test_bad_input_is_refused(tmp_path):
    logger = TensorboardLogger("run", log_dir=str(tmp_path))
    with pytest.raises(TypeError, match="'loss'"):
        logger.log_scalar("loss", torch.ones(2))
    with pytest.raises(ValueError, match=r"\[T, C, H, W\]"):
        logger.log_video("clip", torch.zeros(3, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="unknown arguments"):
        logger.log_histogram("h", torch.ones(3), colour="red")
    logger.close()
