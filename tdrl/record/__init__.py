"""Recording a run: loggers (``tdrl.record.loggers``) and video."""

from tdrl.record.loggers import Logger

__all__ = ["Logger"]
