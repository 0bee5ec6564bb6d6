"""Loggers: one interface (:class:`Logger`) over CSV files, TensorBoard, Weights & Biases and MLflow.

Every logger imports its backend when it is built, so importing this package needs none of them.
"""

from tdrl.record.loggers.common import Logger
from tdrl.record.loggers.csv import CSVLogger, read_csv_scalars
from tdrl.record.loggers.mlflow import MLFlowLogger
from tdrl.record.loggers.tensorboard import TensorboardLogger
from tdrl.record.loggers.utils import generate_exp_name, get_logger
from tdrl.record.loggers.wandb import WandbLogger

__all__ = [
    "CSVLogger",
    "Logger",
    "MLFlowLogger",
    "TensorboardLogger",
    "WandbLogger",
    "generate_exp_name",
    "get_logger",
    "read_csv_scalars",
]
