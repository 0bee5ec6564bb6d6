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


def test_get_logger_resumes_from_a_state_dict(tmp_path):
    first = get_logger("csv", str(tmp_path), "exp")
    first.log_scalar("x", 1.0)
    state = first.state_dict()
    with pytest.warns(UserWarning, match="exp_1"):
        resumed = get_logger("csv", str(tmp_path), "exp", state_dict=state)
    resumed.log_scalar("x", 2.0)
    assert resumed.read_scalars() == {"x": [(0, 1.0), (1, 2.0)]}


def test_generated_names_have_torchrls_layout():
    torchrl_utils = pytest.importorskip("torchrl.record.loggers.utils")
    ours = generate_exp_name("SAC", "hopper").split("_")
    theirs = torchrl_utils.generate_exp_name("SAC", "hopper").split("_")
    assert [len(part) for part in ours] == [len(part) for part in theirs]
    assert ours[:2] == theirs[:2]
