"""Naming a run and building a logger from a config string (TorchRL's ``get_logger``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tdrl.record.loggers.common import Logger

__all__ = ["generate_exp_name", "get_logger"]

_TYPES = ("csv", "tensorboard", "wandb", "mlflow", "")


def generate_exp_name(model_name: str, experiment_name: str) -> str:
    """A unique run name: ``<model>_<experiment>_<8 hex digits>_<yy_mm_dd-HH_MM_SS>``.

    Examples:
        >>> name = generate_exp_name("PPO", "pendulum")
        >>> name.startswith("PPO_pendulum_"), len(name.split("_")[2])
        (True, 8)
    """
    stamp = datetime.now().strftime("%y_%m_%d-%H_%M_%S")
    return "_".join((model_name, experiment_name, uuid.uuid4().hex[:8], stamp))


def get_logger(
    logger_type: str | None,
    logger_name: str,
    experiment_name: str,
    *,
    state_dict: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Logger | None:
    """Builds the logger named by ``logger_type``, or returns ``None`` for ``""`` / ``None``.

    Args:
        logger_type: ``"csv"``, ``"tensorboard"``, ``"wandb"``, ``"mlflow"``, ``""`` or ``None``.
        logger_name: the folder logs go under (``log_dir``; W&B's ``save_dir``; MLflow's
            tracking URI unless ``tracking_uri`` is in ``kwargs``).
        experiment_name: the run's name.
        state_dict: a saved :meth:`Logger.state_dict` to continue (W&B: its run id is reused).
        **kwargs: passed to the logger's constructor (W&B: ``project`` defaults to ``experiment_name``).

    Raises:
        ValueError: for another ``logger_type`` (the message lists the accepted ones).

    Examples:
        >>> import tempfile
        >>> logger = get_logger("csv", tempfile.mkdtemp(), "run")
        >>> type(logger).__name__
        'CSVLogger'
        >>> get_logger("", "logs", "run") is None
        True
    """
    if logger_type is None or logger_type == "":
        return None
    logger = _build(logger_type, logger_name, experiment_name, state_dict, kwargs)
    if state_dict is not None:
        logger.load_state_dict(state_dict)
    return logger


def _build(
    logger_type: str, logger_name: str, experiment_name: str, state: Mapping[str, Any] | None, kwargs: dict[str, Any]
) -> Logger:
    if logger_type == "csv":
        from tdrl.record.loggers.csv import CSVLogger

        return CSVLogger(log_dir=logger_name, exp_name=experiment_name, **kwargs)
    if logger_type == "tensorboard":
        from tdrl.record.loggers.tensorboard import TensorboardLogger

        return TensorboardLogger(log_dir=logger_name, exp_name=experiment_name, **kwargs)
    if logger_type == "wandb":
        from tdrl.record.loggers.wandb import WandbLogger

        kwargs.setdefault("project", experiment_name)
        if state is not None and state.get("local", {}).get("id"):
            kwargs.setdefault("id", state["local"]["id"])
        return WandbLogger(save_dir=logger_name, exp_name=experiment_name, **kwargs)
    if logger_type == "mlflow":
        from tdrl.record.loggers.mlflow import MLFlowLogger

        kwargs.setdefault("tracking_uri", logger_name)
        return MLFlowLogger(exp_name=experiment_name, **kwargs)
    raise ValueError(f"get_logger: logger_type={logger_type!r} is not one of {_TYPES} (or None).")
