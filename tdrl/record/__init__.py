"""Recording a run: loggers (``tdrl.record.loggers``) and video (``VideoRecorder``, ``PixelRenderTransform``)."""

from tdrl.record.loggers import Logger
from tdrl.record.recorder import PixelRenderTransform, VideoRecorder

__all__ = ["Logger", "PixelRenderTransform", "VideoRecorder"]
