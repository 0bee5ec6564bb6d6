"""The Logger base class: log_metrics, close, state_dict."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict

from tdrl.record.loggers import Logger


class ListLogger(Logger):
    def _create_experiment(self) -> list:
        return []

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        self.experiment.append((name, value, step))

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        raise NotImplementedError

    def log_hparams(self, cfg: Any) -> None:
        raise NotImplementedError

    def log_histogram(self, name: str, data: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return "ListLogger()"


def test_log_metrics_turns_tensors_and_numbers_into_python_scalars():
    logger = ListLogger("x", "d")
    out = logger.log_metrics(
        {"a": torch.tensor(1.5), "b": torch.tensor(3), "c": torch.tensor(True), "d": 2, "e": 0.25}, step=7
    )
    assert out == {"a": 1.5, "b": 3, "c": True, "d": 2, "e": 0.25}
    assert type(out["b"]) is int
    assert type(out["c"]) is bool
    assert logger.experiment == [("a", 1.5, 7), ("b", 3, 7), ("c", True, 7), ("d", 2, 7), ("e", 0.25, 7)]


def test_log_metrics_flattens_nested_tensordict_keys():
    logger = ListLogger("x", "d")
    out = logger.log_metrics(TensorDict({"train": {"loss": torch.tensor(2.0)}, "lr": torch.tensor(0.1)}, []))
    assert out == pytest.approx({"train/loss": 2.0, "lr": 0.1})


def test_a_metric_that_is_not_a_scalar_is_named():
    with pytest.raises(TypeError, match=r"'loss'.*shape \(3,\)"):
        ListLogger("x", "d").log_metrics({"loss": torch.zeros(3)})
    with pytest.raises(TypeError, match=r"'name'.*str"):
        ListLogger("x", "d").log_metrics({"name": "hello"})


def test_close_is_idempotent_and_state_dict_names_the_run():
    logger = ListLogger("run", "folder")
    assert logger.state_dict() == {"exp_name": "run", "log_dir": "folder", "local": {}}
    logger.close()
    logger.close()
    logger.load_state_dict({"local": {}})
