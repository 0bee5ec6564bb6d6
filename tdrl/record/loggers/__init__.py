"""Loggers: one interface (:class:`Logger`) over CSV files, TensorBoard, Weights & Biases and MLflow."""

from tdrl.record.loggers.common import Logger

__all__ = ["Logger"]
