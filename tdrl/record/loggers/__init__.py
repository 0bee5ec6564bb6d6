"""Loggers: one interface (:class:`Logger`) over CSV files, TensorBoard, Weights & Biases and MLflow."""

from tdrl.record.loggers.common import Logger
from tdrl.record.loggers.csv import CSVLogger, read_csv_scalars
from tdrl.record.loggers.tensorboard import TensorboardLogger
from tdrl.record.loggers.utils import generate_exp_name, get_logger

__all__ = ["CSVLogger", "Logger", "TensorboardLogger", "generate_exp_name", "get_logger", "read_csv_scalars"]
