"""A job's :class:`Recording`: what it sends to a :mod:`tdrl.record` logger, evaluation videos included.

Not public API; :mod:`tdrl.examples._job` opens one per run (``open_recording``) from the
``--logger`` and ``--video`` options it checked.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tdrl.envs import TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.record import Logger, PixelRenderTransform, VideoRecorder

__all__ = ["Recording", "render_fps"]

_VIDEO_MAX_SIDE = 320  # frames are subsampled to at most this many pixels a side (memory of a long episode)
_VIDEO_SKIP = 2  # one frame kept out of two (TorchRL's VideoRecorder default for a single env)


def _downsample(frame: Any) -> Any:
    """Every k-th row and column of an ``[H, W, C]`` frame, k the smallest that brings both sides to
    at most ``_VIDEO_MAX_SIDE`` pixels (an episode of full-size frames can take gigabytes)."""
    step = max(1, math.ceil(max(frame.shape[0], frame.shape[1]) / _VIDEO_MAX_SIDE))
    return frame[::step, ::step] if step > 1 else frame


class Recording:
    """What a job sends to a :mod:`tdrl.record` logger: hyperparameters, per-batch figures, eval returns, videos.

    Built by :func:`open_recording`. Figures are logged at ``step`` = frames collected so far,
    under the names of the job's ``log.csv`` columns; a figure the batch does not have (NaN:
    no update yet, no episode ended) is not logged, as ``log.csv`` leaves its cell empty.
    With ``video_every``, :meth:`attach` adds a :class:`~tdrl.record.PixelRenderTransform`
    (switched off) and a :class:`~tdrl.record.VideoRecorder` to the evaluation env, and
    :meth:`filming` switches rendering on for one evaluation episode, then logs it as the
    video ``eval_video`` at that step.

    Args:
        logger: the logger, or ``None`` (``--logger none``: every method does nothing).
        video_every: record a video every this many batches and after the last (0: never).
        log_dir: the folder the logger writes in (``None`` when it writes elsewhere, or nowhere).
    """

    def __init__(self, logger: Logger | None, video_every: int = 0, log_dir: Path | None = None) -> None:
        self.logger = logger
        self.log_dir = log_dir if logger is not None else None
        self.video_every = video_every if logger is not None else 0
        self.renderer: PixelRenderTransform | None = None
        self.recorder: VideoRecorder | None = None

    def attach(self, eval_env: TransformedEnv, seed: int, fps: int) -> None:
        """Add the (switched-off) renderer and the recorder at the end of ``eval_env``'s transforms.

        Adding the renderer resets the env once (to find the frame's shape), so the env is
        seeded again with ``seed``: its evaluation episodes stay those of a run without video.
        """
        if not self.video_every:
            return
        self.renderer = PixelRenderTransform(preproc=_downsample)
        self.recorder = VideoRecorder(self.logger, tag="eval_video", skip=_VIDEO_SKIP, fps=max(1, fps))
        eval_env.append_transform(self.renderer)
        eval_env.append_transform(self.recorder)
        self.renderer.switch("off")
        eval_env.set_seed(seed)

    def video_due(self, batch: int, last: bool) -> bool:
        """Whether the evaluation after batch number ``batch`` (from 0) is filmed."""
        return bool(self.video_every) and (batch % self.video_every == 0 or last)

    @contextlib.contextmanager
    def filming(self, on: bool, step: int) -> Iterator[None]:
        """Render the evaluation episode run inside the block and log it as a video at ``step`` (when ``on``)."""
        if not on or self.renderer is None or self.recorder is None:
            yield
            return
        self.renderer.switch("on")
        try:
            yield
        except BaseException:
            self.recorder.obs.clear()
            raise
        finally:
            self.renderer.switch("off")
        self.recorder.dump(step=step)

    def log_hparams(self, config: dict[str, Any]) -> None:
        """Log the run's configuration."""
        if self.logger is not None:
            self.logger.log_hparams(config)

    def log(self, step: int, figures: dict[str, float]) -> None:
        """Log the figures that are numbers (not NaN) at ``step``."""
        if self.logger is not None:
            self.logger.log_metrics({k: v for k, v in figures.items() if v == v}, step=step)

    def close(self) -> None:
        """Flush and close the logger."""
        if self.logger is not None:
            self.logger.close()


def render_fps(env: GymEnv) -> int:
    """Frames per second of the recorded video: the env's ``render_fps`` over the frames skipped (30 if unknown)."""
    fps = env.env.metadata.get("render_fps") or 30 * _VIDEO_SKIP
    return max(1, round(fps / _VIDEO_SKIP))
