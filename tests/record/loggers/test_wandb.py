"""WandbLogger in offline mode: the run's files are written on disk, nothing goes to the network."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("wandb")

from tdrl.record import WandbLogger, get_logger


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))


def _run_files(save_dir):
    return [p for p in (save_dir / "wandb").glob("offline-run-*") if p.is_dir()]


def test_offline_run_logs_scalars_hparams_histograms_and_video(offline, tmp_path):
    logger = WandbLogger("exp", offline=True, save_dir=str(tmp_path), project="tdrl-test")
    logger.log_scalar("loss", torch.tensor(0.5), step=10)
    logger.log_hparams({"lr": 0.001})
    logger.log_histogram("weights", torch.arange(10.0), step=10)
    assert logger.experiment.config["lr"] == 0.001
    summary = dict(logger.experiment.summary)
    assert summary["loss"] == 0.5
    assert summary["trainer/step"] == 10
    logger.close()
    (run_dir,) = _run_files(tmp_path)
    assert list(run_dir.glob("*.wandb"))  # the offline transaction log, for `wandb sync`


def test_video_is_logged_without_moviepy(offline, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    logger = WandbLogger("exp", offline=True, save_dir=str(tmp_path), project="tdrl-test")
    logger.log_video("episode", torch.zeros(4, 3, 16, 16, dtype=torch.uint8), step=10)
    assert dict(logger.experiment.summary)["episode"]["_type"] == "video-file"
    logger.close()
    (run_dir,) = _run_files(tmp_path)
    assert len(list(run_dir.rglob("episode_*.mp4"))) == 1


def test_resume_requires_the_same_run(offline, tmp_path):
    logger = WandbLogger("exp", offline=True, save_dir=str(tmp_path), project="tdrl-test")
    state = logger.state_dict()
    logger.load_state_dict(state)  # same run: accepted
    state["local"]["id"] = "another"
    with pytest.raises(ValueError, match="id='another'"):
        logger.load_state_dict(state)
    logger.close()


def test_bad_input_is_refused(offline, tmp_path):
    with pytest.raises(ValueError, match="save_dir and log_dir"):
        WandbLogger("exp", offline=True, save_dir=str(tmp_path), log_dir=str(tmp_path))
    logger = WandbLogger("exp", offline=True, save_dir=str(tmp_path), project="tdrl-test")
    with pytest.raises(TypeError, match="'loss'"):
        logger.log_scalar("loss", torch.ones(2))
    logger.close()


def test_get_logger_wandb(offline, tmp_path):
    logger = get_logger("wandb", str(tmp_path), "exp", offline=True)
    assert isinstance(logger, WandbLogger)
    assert logger.project == "exp"
    logger.close()
