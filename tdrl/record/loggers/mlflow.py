"""MLflow logging through ``mlflow.tracking.MlflowClient`` (the ``mlflow`` extra)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tdrl.record.loggers._video import check_video, write_mp4
from tdrl.record.loggers.common import Logger, _scalar
from tdrl.record.loggers.tensorboard import _flat_hparams

__all__ = ["MLFlowLogger"]

_MISSING = (
    "MLFlowLogger needs mlflow, which is not installed ({error}). Install the mlflow extra: pip install 'tdrl[mlflow]'."
)


class MLFlowLogger(Logger):
    """Logs to an MLflow run of the experiment ``exp_name`` (created when missing) at ``tracking_uri``.

    Each logger starts a new run, so runs never mix; :meth:`~tdrl.record.loggers.Logger.load_state_dict` goes back to a
    saved run (its id) and continues it. The logger talks to its own ``MlflowClient``: it sets
    no global tracking URI and no active run, so several loggers can live side by side.

    MLflow 3.10 and later refuse a ``file:`` tracking URI unless ``MLFLOW_ALLOW_FILE_STORE=true``
    is set in the environment; a database URI (``sqlite:///mlflow.db``) needs the full
    ``mlflow`` package.

    Args:
        exp_name: the MLflow experiment's name.
        tracking_uri: where MLflow stores runs (``"sqlite:///mlflow.db"``, ``"file:///abs/mlruns"``,
            a server URL).
        tags: tags of the run.
        video_fps: frames per second of the mp4 videos logged as artifacts.
        **kwargs: ``run_name`` (default ``exp_name``) and ``artifact_location`` of a new experiment.

    Raises:
        ImportError: when mlflow is not installed (naming the extra).

    Examples:
        >>> import pytest, tempfile
        >>> _ = pytest.importorskip("mlflow")
        >>> if os.environ.get("MLFLOW_ALLOW_FILE_STORE") != "true":
        ...     pytest.skip("a file store needs MLFLOW_ALLOW_FILE_STORE=true")
        >>> logger = MLFlowLogger("demo", "file://" + tempfile.mkdtemp())
        >>> logger.log_scalar("reward", 1.5, step=100)
        >>> logger.close()
    """

    def __init__(
        self,
        exp_name: str,
        tracking_uri: str,
        tags: dict[str, Any] | None = None,
        *,
        video_fps: int = 30,
        **kwargs: Any,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise ImportError(_MISSING.format(error=error)) from error
        self.client = MlflowClient(tracking_uri=str(tracking_uri))
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.video_fps = video_fps
        self.run_name = kwargs.pop("run_name", exp_name)
        self.artifact_location = kwargs.pop("artifact_location", None)
        if kwargs:
            raise TypeError(f"MLFlowLogger: unknown arguments {sorted(kwargs)}; it takes run_name, artifact_location.")
        self.video_log_counter = 0
        super().__init__(exp_name=exp_name, log_dir=str(tracking_uri))

    def _create_experiment(self) -> Any:
        experiment = self.client.get_experiment_by_name(self.exp_name)
        if experiment is None:
            self.id = self.client.create_experiment(self.exp_name, artifact_location=self.artifact_location)
        else:
            self.id = experiment.experiment_id
        return self.client.create_run(self.id, run_name=self.run_name, tags=self.tags)

    @property
    def run_id(self) -> str:
        """The id of the MLflow run this logger writes to."""
        return str(self.experiment.info.run_id)

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        """Logs ``value`` under ``name`` at ``step`` (0 when ``None``, MLflow's default).

        Raises:
            TypeError: when ``value`` is not a number or a one-element tensor.
        """
        self.client.log_metric(self.run_id, name, float(_scalar(name, value)), step=0 if step is None else int(step))

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs: Any) -> None:
        """Writes ``video`` (uint8 ``[T, C, H, W]`` or ``[N, T, C, H, W]``) as an mp4 artifact under ``videos/``.

        The file is ``<name>_<step>.mp4`` (a per-logger counter when ``step`` is ``None``);
        ``fps`` in ``kwargs`` overrides ``video_fps``.
        """
        video = check_video(video, name, "MLFlowLogger.log_video")
        if step is None:
            step = self.video_log_counter
        self.video_log_counter += 1
        fps = kwargs.pop("fps", self.video_fps)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"{name.replace('/', '_')}_{step}.mp4")
            write_mp4(path, video, fps=fps, **kwargs)
            self.client.log_artifact(self.run_id, path, "videos")

    def log_hparams(self, cfg: Mapping[str, Any]) -> None:
        """Logs the hyperparameters as run parameters (nested mappings joined with ``/``)."""
        if not hasattr(cfg, "items"):
            raise TypeError(f"MLFlowLogger.log_hparams takes a mapping of names to values, got {type(cfg).__name__}.")
        for key, value in _flat_hparams(cfg).items():
            self.client.log_param(self.run_id, key, value.item() if isinstance(value, torch.Tensor) else value)

    def log_histogram(self, name: str, data: Sequence | torch.Tensor, **kwargs: Any) -> None:
        """MLflow has no histogram type: raises NotImplementedError, as TorchRL does."""
        raise NotImplementedError(
            "MLFlowLogger cannot log histograms (MLflow has no histogram type); log summary scalars instead."
        )

    def flush(self) -> None:
        """MLflow's client writes each call at once: nothing to flush."""

    def close(self) -> None:
        """Marks the run finished; further calls are no-ops."""
        if not self._closed:
            self.client.set_terminated(self.run_id)
            self._closed = True

    def _checkpoint_state(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "video_log_counter": self.video_log_counter}

    def _load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        run_id = state.get("run_id")
        if run_id is not None and run_id != self.run_id:
            self.client.delete_run(self.run_id)  # the fresh run this logger opened, unused
            self.experiment = self.client.get_run(run_id)
            self.client.update_run(run_id, status="RUNNING")
        self.id = state.get("id", self.id)
        self.video_log_counter = int(state.get("video_log_counter", self.video_log_counter))

    def __repr__(self) -> str:
        return f"MLFlowLogger(exp_name={self.exp_name!r}, run_id={self.run_id!r})"
