"""MLFlowLogger on a local file store: metrics, params and a video artifact read back with MlflowClient."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient

from tdrl.record import MLFlowLogger, get_logger


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.10 refuses file stores otherwise
    return (tmp_path / "mlruns").as_uri()


def test_metrics_and_params_are_read_back(tracking_uri):
    logger = MLFlowLogger("exp", tracking_uri, tags={"algo": "ppo"})
    for step, value in [(0, 0.5), (10, 0.25)]:
        logger.log_scalar("loss", torch.tensor(value), step=step)
    logger.log_hparams({"lr": 0.001, "net": {"depth": 3}})
    logger.close()
    client = MlflowClient(tracking_uri=tracking_uri)
    history = client.get_metric_history(logger.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (10, 0.25)]
    run = client.get_run(logger.run_id)
    assert run.data.params == {"lr": "0.001", "net/depth": "3"}
    assert run.data.tags["algo"] == "ppo"
    assert run.info.status == "FINISHED"


def test_a_second_logger_opens_a_new_run_and_resume_goes_back(tracking_uri):
    first = MLFlowLogger("exp", tracking_uri)
    first.log_scalar("x", 1.0, step=0)
    state = first.state_dict()
    second = MLFlowLogger("exp", tracking_uri)
    assert second.run_id != first.run_id
    second.load_state_dict(state)
    second.log_scalar("x", 2.0, step=1)
    history = MlflowClient(tracking_uri=tracking_uri).get_metric_history(first.run_id, "x")
    assert [m.value for m in history] == [1.0, 2.0]


def test_video_is_an_mp4_artifact(tracking_uri, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from tdrl.record.loggers._video import read_mp4

    logger = MLFlowLogger("exp", tracking_uri)
    logger.log_video("episode", torch.zeros(4, 3, 16, 16, dtype=torch.uint8), step=3)
    client = MlflowClient(tracking_uri=tracking_uri)
    assert [a.path for a in client.list_artifacts(logger.run_id, "videos")] == ["videos/episode_3.mp4"]
    local = client.download_artifacts(logger.run_id, "videos/episode_3.mp4", str(tmp_path))
    assert read_mp4(local).shape == (4, 3, 16, 16)


def test_bad_input_is_refused(tracking_uri):
    logger = MLFlowLogger("exp", tracking_uri)
    with pytest.raises(TypeError, match="'loss'"):
        logger.log_scalar("loss", torch.ones(2))
    with pytest.raises(TypeError, match="uint8"):
        logger.log_video("clip", torch.zeros(2, 3, 8, 8))
    with pytest.raises(NotImplementedError, match="histogram"):
        logger.log_histogram("h", torch.ones(3))


def test_get_logger_mlflow(tracking_uri):
    logger = get_logger("mlflow", tracking_uri, "exp")
    assert isinstance(logger, MLFlowLogger)
    assert logger.log_dir == tracking_uri
