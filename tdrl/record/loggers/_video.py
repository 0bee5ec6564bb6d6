"""Writing and reading H.264 mp4 files (the ``video`` extra: imageio with imageio-ffmpeg).

Private to the loggers; the CSV logger and the video recorder write through :func:`write_mp4`,
tests and users read a file back with :func:`read_mp4`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_MISSING_BACKEND = (
    "Writing or reading mp4 needs imageio and imageio-ffmpeg, which are not installed ({error}). "
    "Install the video extra: pip install 'tdrl[video]'."
)
_BAD_VIDEO = (
    "{who}: the video {name!r} must be a uint8 tensor of layout [T, C, H, W] or [N, T, C, H, W] "
    "with C in (1, 3); got dtype {dtype} and shape {shape}. {fix}"
)


def _imageio() -> Any:
    try:
        import imageio
        import imageio_ffmpeg  # type: ignore[import-untyped]  # noqa: F401  (the ffmpeg binary)
    except ImportError as error:
        raise ImportError(_MISSING_BACKEND.format(error=error)) from error
    return imageio


def check_video(video: Any, name: str, who: str) -> torch.Tensor:
    """``video`` as a 5-dim uint8 tensor ``[N, T, C, H, W]``, or a TypeError/ValueError saying the layout."""
    if not isinstance(video, torch.Tensor):
        raise TypeError(
            _BAD_VIDEO.format(
                who=who,
                name=name,
                dtype=type(video).__name__,
                shape="-",
                fix="Pass a torch.Tensor (torch.from_numpy for an array).",
            )
        )
    if video.dtype != torch.uint8:
        raise TypeError(
            _BAD_VIDEO.format(
                who=who,
                name=name,
                dtype=video.dtype,
                shape=tuple(video.shape),
                fix="Convert frames in [0, 1] with (video * 255).to(torch.uint8).",
            )
        )
    shape = tuple(video.shape)
    if video.ndim == 4:
        video = video.unsqueeze(0)
    if video.ndim != 5 or video.shape[2] not in (1, 3):
        raise ValueError(
            _BAD_VIDEO.format(
                who=who,
                name=name,
                dtype=video.dtype,
                shape=shape,
                fix="Channels come before height and width: permute a [T, H, W, C] video with "
                "video.permute(0, 3, 1, 2).",
            )
        )
    return video


def to_frames(video: torch.Tensor) -> np.ndarray:
    """A checked ``[N, T, C, H, W]`` video as ``[T, H, N * W, 3]`` uint8 frames: the N videos side by side."""
    n, t, _c, h, w = video.shape
    frames = video.detach().cpu().expand(n, t, 3, h, w).permute(1, 3, 0, 4, 2).reshape(t, h, n * w, 3)
    return frames.contiguous().numpy()


def write_mp4(path: str, video: torch.Tensor, fps: int = 30, **kwargs: Any) -> None:
    """Writes a checked ``[N, T, C, H, W]`` uint8 video to ``path`` as H.264 mp4 (yuv420p).

    The N videos are placed side by side. H.264 in yuv420p needs even sizes: an odd height or
    width gets one more row or column, a copy of the last. ``kwargs`` go to imageio's ffmpeg
    writer (``codec``, ``quality``, ``ffmpeg_params``, ...).
    """
    imageio = _imageio()
    frames = to_frames(video)
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    kwargs.setdefault("codec", "libx264")
    kwargs.setdefault("macro_block_size", 1)
    with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, **kwargs) as writer:
        for frame in frames:
            writer.append_data(frame)


def read_mp4(path: str) -> torch.Tensor:
    """Decodes an mp4 file into a uint8 tensor ``[T, C, H, W]`` (RGB).

    Examples:
        >>> import pytest
        >>> _ = pytest.importorskip("imageio_ffmpeg")
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "clip.mp4")
        >>> write_mp4(path, torch.zeros(1, 4, 3, 16, 24, dtype=torch.uint8), fps=10)
        >>> read_mp4(path).shape
        torch.Size([4, 3, 16, 24])
    """
    imageio = _imageio()
    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = np.stack([np.asarray(frame) for frame in reader])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
