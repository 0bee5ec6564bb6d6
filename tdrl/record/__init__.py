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
from tdrl.record.tensordict_recorder import TensorDictRecorder

__all__ = [
    "CSVLogger",
    "Logger",
    "MLFlowLogger",
    "PixelRenderTransform",
    "TensorboardLogger",
    "TensorDictRecorder",
    "VideoRecorder",
    "WandbLogger",
    "generate_exp_name",
    "get_logger",
    "read_csv_scalars",
]
