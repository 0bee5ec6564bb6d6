"""generate_exp_name and get_logger for every logger type."""

from __future__ import annotations

import pytest

from tdrl.record import CSVLogger, Logger, generate_exp_name, get_logger


def test_generated_names_are_unique_and_start_with_the_given_names():
    names = {generate_exp_name("PPO", "cartpole") for _ in range(20)}
    assert len(names) == 20
    assert all(name.startswith("PPO_cartpole_") for name in names)


def test_get_logger_csv(tmp_path):
    logger = get_logger("csv", str(tmp_path), "exp", video_format="mp4")
    assert isinstance(logger, CSVLogger)
    assert logger.video_format == "mp4"
    assert logger.experiment.log_dir == str(tmp_path / "exp")


@pytest.mark.parametrize("logger_type", ["", None])
def test_get_logger_none(logger_type, tmp_path):
    assert get_logger(logger_type, str(tmp_path), "exp") is None


def test_get_logger_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tdrl.record import TensorboardLogger

    logger = get_logger("tensorboard", str(tmp_path), "exp")
    assert isinstance(logger, TensorboardLogger)
    assert logger.log_dir == str(tmp_path / "exp")
    logger.close()


def test_get_logger_refuses_an_unknown_type(tmp_path):
    with pytest.raises(ValueError, match=r"'visdom'.*'csv'"):
        get_logger("visdom", str(tmp_path), "exp")


def test_every_logger_is_a_logger():
    assert issubclass(CSVLogger, Logger)
