"""Recording a run: loggers (``tdrl.record.loggers``) and video (``VideoRecorder``, ``PixelRenderTransform``)."""

from tdrl.record.loggers import (
    CSVLogger,
    Logger,
    MLFlowLogger,
    TensorboardLogger,
    WandbLogger,
    generate_exp_name,
    get_logger,
    read_csv_scalars,
)
from tdrl.record.recorder import PixelRenderTransform, VideoRecorder

__all__ = [
    "CSVLogger",
    "Logger",
    "MLFlowLogger",
    "PixelRenderTransform",
    "TensorboardLogger",
    "VideoRecorder",
    "WandbLogger",
    "generate_exp_name",
    "get_logger",
    "read_csv_scalars",
]
