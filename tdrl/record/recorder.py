"""Video: ``PixelRenderTransform`` writes rendered frames, ``VideoRecorder`` collects them for a logger.

The two are transforms (TorchRL's names, arguments and semantics). A typical chain renders
the base env into ``"pixels"`` and records those frames; ``dump()`` hands the video to the
logger (an mp4 file for ``CSVLogger(video_format="mp4")``, ``add_video`` for TensorBoard)::

    env = TransformedEnv(GymEnv("CartPole-v1", render_mode="rgb_array"),
                         Compose(PixelRenderTransform(), VideoRecorder(logger, tag="episode")))
    env.rollout(200)
    env.transform.dump()

Recording off the hot path: a switched-off ``PixelRenderTransform`` neither renders nor
copies, and writes no ``"pixels"``; a ``VideoRecorder`` that finds no frame does nothing. A
chain whose recorder can only read frames from a switched-off renderer then takes
``TransformedEnv``'s policy-free fast road again, as if the two were absent.

Headless MuJoCo rendering needs ``MUJOCO_GL=egl`` (or ``osmesa``) in the environment before the
program starts; when no backend works, rendering raises one RuntimeError naming ``MUJOCO_GL``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.libs._render import render_error
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Bounded, Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["VideoRecorder", "PixelRenderTransform"]

_BAD_FRAME = (
    "VideoRecorder: the entry {key!r} has shape {shape}; a frame is [H, W, 3] or [3, H, W] (or [H, W] / "
    "[1, H, W] grayscale), with leading batch dims. Fix: record an image entry (in_keys=[...]), or render "
    "with PixelRenderTransform."
)
_MISSING_FRAME = (
    "VideoRecorder: the tensordict has no {key!r} entry to record (its keys: {have}). Fix: pass in_keys "
    "naming the image entry, or place the recorder after the transform that writes it."
)
_NO_RENDER = (
    "PixelRenderTransform: the env it reads from ({env}) has no {method!r} method. Fix: build the env so that "
    "it renders (GymEnv(name, render_mode='rgb_array'), DMControlEnv, or a custom env with a render() method), "
    "or pass render_method='<the method's name>'."
)
_BAD_RENDER = (
    "PixelRenderTransform: {method}() returned {what}; the transform writes it under {key!r} of a tensordict "
    "with batch size {batch}, so it needs an array of shape [{batch_dims}H, W, C]. Fix: pass preproc= to "
    "reshape it, or keyword arguments for {method}() (e.g. mode='rgb_array')."
)


def _make_grid(frames: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` frames tiled row by row into one ``[C, rows*H, cols*W]`` image (cols = ceil(sqrt(N)))."""
    n, channels, height, width = frames.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    if rows * cols != n:
        frames = torch.cat([frames, frames.new_zeros(rows * cols - n, channels, height, width)])
    # [rows, cols, C, H, W] -> [C, rows, H, cols, W]
    grid = frames.reshape(rows, cols, channels, height, width).permute(2, 0, 3, 1, 4)
    return grid.reshape(channels, rows * height, cols * width)


def _center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of ``[..., H, W]`` frames, zero-padded where the frame is smaller.

    The window's offset is ``round((H - size) / 2)`` (Python's rounding), as torchvision's
    ``center_crop`` computes it, so the same frames give the same pixels.
    """
    height, width = frames.shape[-2:]
    if size > height or size > width:
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        frames = torch.nn.functional.pad(frames, [pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2])
        height, width = frames.shape[-2:]
        if height == size and width == size:
            return frames
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return frames[..., top : top + size, left : left + size]


class VideoRecorder(Transform):
    """Collects frames at each reset and step; :meth:`~tdrl.record.VideoRecorder.dump` logs them as a video.

    Frames are read from ``in_keys`` (uint8 ``[H, W, 3]`` or ``[3, H, W]``; ``[H, W]`` and
    ``[1, H, W]`` grayscale; leading batch dims allowed) and are not changed in the data.
    Each kept frame is copied to the CPU as uint8 ``[C, H, W]``: the recorder holds one such
    frame per kept call (per ``skip`` calls) between two dumps, at most ``max_frames`` of
    them when that is set (later frames are dropped until :meth:`dump` empties the buffer).
    A batch of frames from a batched env is tiled into one grid frame (``make_grid``).

    On a plain TensorDict (in a replay buffer, on a dataset) ``t(td)`` records the root's
    frames; a batch there becomes one frame per item when ``make_grid`` is off.

    Args:
        logger: where :meth:`dump` writes (any object with TorchRL's ``log_video(name, video,
            step=..., **kwargs)``, e.g. a :class:`~tdrl.record.loggers.Logger`); ``None``
            records and discards.
        tag: the video's name in the logger.
        in_keys: the image entries to read. Default ``["pixels"]``.
        skip: keep one call out of ``skip``. Default 2 for a single (unbatched) env, 1 for a
            batched env or when used without an env.
        center_crop: crop each frame to its central ``center_crop x center_crop`` window
            (zero-padded when larger than the frame).
        make_grid: tile a batch of frames into one frame. Default True with an env, False
            without one.
        out_keys: as TorchRL's (the frames are not changed); default ``in_keys``.
        fps: frames per second passed to ``log_video`` (overrides the logger's default).
        max_frames: keep at most this many frames between two dumps (unbounded by default).
        dump_on_done: call :meth:`dump` when a step ends every sub-env's episode.
        **kwargs: further keyword arguments for ``log_video``.

    Raises:
        ValueError: for ``max_frames < 1``, ``skip < 1`` or ``center_crop < 1``, or a frame
            whose shape is not an image.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> class Keep:
        ...     def log_video(self, name, video, step=None, **kwargs):
        ...         print(name, tuple(video.shape), video.dtype, step, kwargs)
        >>> recorder = VideoRecorder(Keep(), tag="demo", fps=10)
        >>> for _ in range(4):
        ...     _ = recorder(TensorDict(pixels=torch.zeros(8, 6, 3, dtype=torch.uint8)))
        >>> recorder.dump(suffix="eval")
        demo_eval (1, 4, 3, 8, 6) torch.uint8 0 {'fps': 10}
        >>> recorder.dump()  # nothing recorded since: nothing written
    """

    def __init__(
        self,
        logger: Any,
        tag: str | None,
        in_keys: Sequence[NestedKey] | None = None,
        skip: int | None = None,
        center_crop: int | None = None,
        make_grid: bool | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        fps: int | None = None,
        max_frames: int | None = None,
        dump_on_done: bool = False,
        **kwargs: Any,
    ) -> None:
        for name, value in (("skip", skip), ("center_crop", center_crop), ("max_frames", max_frames)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"VideoRecorder: {name} must be a positive integer or None, got {value!r}.")
        if logger is not None and not callable(getattr(logger, "log_video", None)):
            raise TypeError(
                f"VideoRecorder: logger must have a log_video(name, video, step=...) method (a tdrl.record Logger), "
                f"got {type(logger).__name__}."
            )
        super().__init__(in_keys=["pixels"] if in_keys is None else in_keys, out_keys=out_keys)
        self.logger = logger
        self.tag = tag
        self.video_kwargs = dict(kwargs)
        if fps is not None:
            self.video_kwargs["fps"] = fps
        self._skip = skip
        self.center_crop = center_crop
        self._make_grid_flag = make_grid
        self.max_frames = max_frames
        self.dump_on_done = dump_on_done
        self.iter = 0
        self.count = 0
        self.obs: list[torch.Tensor] = []

    # --- defaults that depend on the env (resolved once per attachment, not per frame) ----------
    def _env(self) -> Any:
        """The env at the top of the chain (same batch size as the parent), cached until re-attached."""
        if "_env_cache" not in self.__dict__:
            self.__dict__["_env_cache"] = self._env_of_chain()
        return self.__dict__["_env_cache"]

    def set_container(self, container: Any) -> None:
        super().set_container(container)
        self.__dict__.pop("_env_cache", None)

    def reset_parent(self) -> None:
        super().reset_parent()
        self.__dict__.pop("_env_cache", None)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_env_cache", None)
        return state

    @property
    def skip(self) -> int:
        """Keep one call out of ``skip`` (resolved from the env when not given)."""
        if self._skip is None:
            env = self._env()
            return 1 if env is None or len(env.batch_size) else 2
        return self._skip

    @skip.setter
    def skip(self, value: int | None) -> None:
        self._skip = value

    @property
    def make_grid(self) -> bool:
        """Tile a batch of frames into one frame (resolved from the env when not given)."""
        if self._make_grid_flag is None:
            return self._env() is not None
        return self._make_grid_flag

    @make_grid.setter
    def make_grid(self, value: bool | None) -> None:
        self._make_grid_flag = value

    @property
    def time_vectorizable(self) -> bool:  # type: ignore[override]  # dynamic here; the base's is a class flag
        """True only while every frame it reads would come from a switched-off ``PixelRenderTransform``.

        Recording is per step (a reset frame, then one per step), so a rollout mapped at once
        would record other frames; a recorder that cannot find any frame records nothing on
        either road, and lets the chain take the fast one.
        """
        container = self.container
        if not isinstance(container, Compose):
            return False
        before = container._before(self)
        for key in self.in_keys:
            sources = [t for t in before if isinstance(t, PixelRenderTransform) and key in t.out_keys]
            if not sources or any(t.enabled for t in sources):
                return False
        return True

    # --- recording ---------------------------------------------------------------------------
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for key in self.in_keys:
            frames = td_read(tensordict, key)
            if frames is not None:
                self._record(key, frames)
        return tensordict

    def _record(self, key: NestedKey, frames: torch.Tensor) -> None:
        self.count += 1
        if self.count % self.skip:
            return
        if self.max_frames is not None and len(self.obs) >= self.max_frames:
            return
        frames = self._as_chw(key, frames)
        if self.center_crop:
            frames = _center_crop(frames, self.center_crop)
        if frames.ndim >= 4 and self.make_grid:
            self.obs.append(_make_grid(frames.flatten(0, -4)).to("cpu", torch.uint8, copy=True))
        elif frames.ndim >= 4:
            batch = frames.flatten(0, -4)
            if self.max_frames is not None:
                batch = batch[: self.max_frames - len(self.obs)]
            self.obs.extend(batch.to("cpu", torch.uint8, copy=True).unbind(0))
        else:
            self.obs.append(frames.to("cpu", torch.uint8, copy=True))

    @staticmethod
    def _as_chw(key: NestedKey, frames: torch.Tensor) -> torch.Tensor:
        """``[..., C, H, W]`` view of channels-last or channels-first frames (grayscale kept one channel)."""
        if frames.ndim == 2:
            return frames.unsqueeze(-3)
        if frames.ndim >= 3:
            if frames.shape[-3] in (1, 3) and frames.shape[-2] > 3 and frames.shape[-1] > 3:
                frames = frames.movedim(-3, -1)  # channels-first: read as channels-last first
            if frames.shape[-1] == 1:
                frames = frames.expand(*frames.shape[:-1], 3)
            if frames.shape[-1] == 3:
                return frames.movedim(-1, -3)
        raise ValueError(_BAD_FRAME.format(key=key, shape=tuple(frames.shape)))

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for key in self.in_keys:  # the per-step hook: no frame (recording off) costs one dict lookup per key
            frames = td_read(next_tensordict, key)
            if frames is not None:
                self._record(key, frames)
        if self.dump_on_done and self._all_done(next_tensordict):
            self.dump()
        return next_tensordict

    def _all_done(self, next_tensordict: TensorDictBase) -> bool:
        env = self._env()
        keys = [k for k in env.done_keys if (k[-1] if isinstance(k, tuple) else k) == "done"] if env else ["done"]
        dones = [v for v in (td_read(next_tensordict, k) for k in keys) if v is not None]
        return bool(dones) and all(bool(d.all()) for d in dones)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Record the root's frames of ``tensordict`` (unchanged).

        Raises:
            KeyError: when an in_key is missing, unless its only source is a switched-off
                ``PixelRenderTransform`` (then nothing is recorded).
        """
        if not self.time_vectorizable:
            for key in self.in_keys:
                if td_read(tensordict, key) is None:
                    have = sorted(map(str, tensordict.keys(True, True)))
                    raise KeyError(_MISSING_FRAME.format(key=key, have=have))
        return self._call(tensordict)

    def dump(self, suffix: str | None = None, step: int | None = None, **kwargs: Any) -> None:
        """Hand the frames recorded so far to the logger as one video, then forget them.

        The video is ``uint8 [1, T, C, H, W]`` (TorchRL's layout: one video of ``T`` frames),
        logged as ``tag`` or ``f"{tag}_{suffix}"`` at ``step`` (default: the number of earlier
        dumps). With no frame recorded, nothing is logged (the dump still counts).

        Args:
            suffix: appended to the tag with an underscore.
            step: the logger step; default the dump counter.
            **kwargs: ignored (``Compose.dump`` passes its keyword arguments to every transform).
        """
        del kwargs
        frames, self.obs = self.obs, []
        if frames and self.logger is not None:
            name = str(self.tag) if suffix is None else f"{self.tag}_{suffix}"
            video = torch.stack(frames).unsqueeze(0)
            self.logger.log_video(name=name, video=video, step=self.iter if step is None else step, **self.video_kwargs)
        self.iter += 1
        self.count = 0

    def _extra_repr(self) -> str:
        return f"tag={self.tag!r}, frames={len(self.obs)}"


class PixelRenderTransform(Transform):
    """Writes the env's rendered frame under ``"pixels"`` at each reset and step.

    The frame comes from ``render()`` of the env the transform is attached to (a
    :class:`~tdrl.envs.GymEnv` made with ``render_mode="rgb_array"``, a
    :class:`~tdrl.envs.DMControlEnv`, or any env with a ``render`` method): a fresh copy
    per call, so a renderer that reuses its buffer cannot change frames already written.
    The entry's spec is found once, when the chain is built, by resetting the env and
    rendering (as TorchRL does). :meth:`switch` turns rendering off and on: while off,
    nothing is rendered or copied, and no ``"pixels"`` entry is written.

    On a plain TensorDict (``t(td)``, a replay buffer) the transform does nothing: it
    renders an env's current state, which stored data does not have.

    Args:
        out_keys: the one entry written. Default ``["pixels"]``.
        preproc: applied to what ``render`` returns (e.g. to crop or reshape it).
        as_non_tensor: must be False: tdrl writes frames as tensors (a spec'd entry).
            TorchRL's ``None`` (infer) is read as False.
        render_method: the name of the env's method to call. Default ``"render"``.
        pass_tensordict: call ``render(tensordict, **kwargs)`` (for stateless envs).
        **kwargs: keyword arguments for the render method (e.g. ``mode="rgb_array"``).

    Raises:
        ValueError: for more than one out_key or ``as_non_tensor=True``; when the env has no
            such render method (at build time); when a frame does not fit the env's batch.
        RuntimeError: naming ``MUJOCO_GL`` when MuJoCo finds no working OpenGL backend.

    Examples:
        >>> from tdrl.envs import GymEnv, TransformedEnv
        >>> base = GymEnv("HalfCheetah-v5", render_mode="rgb_array", width=32, height=24)  # MUJOCO_GL=egl headless
        >>> env = TransformedEnv(base, PixelRenderTransform())
        >>> env.rollout(3)["next", "pixels"].shape
        torch.Size([3, 24, 32, 3])
        >>> env.transform.switch()  # off: no render call, no "pixels"
        >>> "pixels" in env.rollout(3)["next"].keys()
        False
        >>> env.close()
    """

    def __init__(
        self,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        preproc: Callable[[Any], Any] | None = None,
        as_non_tensor: bool | None = False,
        render_method: str = "render",
        pass_tensordict: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_keys=[], out_keys=[])
        keys = ["pixels"] if out_keys is None else out_keys
        self.out_keys = [keys] if isinstance(keys, (str, tuple)) else list(keys)
        if len(self.out_keys) != 1:
            raise ValueError(f"PixelRenderTransform writes one entry: out_keys must hold one key, got {self.out_keys}.")
        if as_non_tensor:
            raise ValueError(
                "PixelRenderTransform: as_non_tensor=True is not supported: tdrl writes frames as tensors described "
                "by the observation spec. Fix: use preproc= to turn the render output into an array of shape "
                "[*batch, H, W, C]."
            )
        self.preproc = preproc
        self.as_non_tensor = False
        self.render_method = render_method
        self.pass_tensordict = pass_tensordict
        self.kwargs = kwargs
        self._enabled = True

    def _rewritten_keys(self) -> set:
        return set(self.out_keys)

    @property
    def enabled(self) -> bool:
        """Whether the transform renders."""
        return self._enabled

    def switch(self, mode: str | bool | None = None) -> None:
        """Turn rendering on or off.

        Args:
            mode: ``True``/``"on"`` or ``False``/``"off"``; ``None`` flips the current state.

        Raises:
            ValueError: for any other value.
        """
        if mode is None:
            self._enabled = not self._enabled
        elif isinstance(mode, bool):
            self._enabled = mode
        elif mode in ("on", "off"):
            self._enabled = mode == "on"
        else:
            raise ValueError(
                f"PixelRenderTransform.switch: mode must be 'on', 'off', True, False or None, got {mode!r}."
            )

    @property
    def time_vectorizable(self) -> bool:  # type: ignore[override]  # dynamic here; the base's is a class flag
        """Rendering reads the env's state at each step; switched off, the transform is a no-op."""
        return not self._enabled

    # --- rendering -----------------------------------------------------------------------------
    def set_container(self, container: Any) -> None:
        super().set_container(container)
        self.__dict__.pop("_render_cache", None)

    def reset_parent(self) -> None:
        super().reset_parent()
        self.__dict__.pop("_render_cache", None)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_render_cache", None)
        return state

    def _render_fn(self) -> Callable[..., Any]:
        """The env's render method, looked up once per attachment (``parent`` builds a view env per call)."""
        method = self.__dict__.get("_render_cache")
        if method is None:
            parent = self.parent
            method = getattr(parent, self.render_method, None)
            if not callable(method):
                raise ValueError(_NO_RENDER.format(env=type(parent).__name__, method=self.render_method))
            self.__dict__["_render_cache"] = method
        return method

    def _render(self, tensordict: TensorDictBase) -> torch.Tensor:
        method = self._render_fn()
        try:
            array = method(tensordict, **self.kwargs) if self.pass_tensordict else method(**self.kwargs)
        except Exception as err:
            clear = render_error(err, type(self).__name__)
            if clear is not err:
                raise clear from err
            raise
        if self.preproc is not None:
            array = self.preproc(array)
        if isinstance(array, (list, tuple)):
            array = np.stack([np.asarray(a) for a in array]) if array else np.asarray(array)
        if isinstance(array, torch.Tensor):
            return array.detach().clone()
        if not isinstance(array, np.ndarray):
            raise ValueError(
                _BAD_RENDER.format(
                    method=self.render_method,
                    what=f"a {type(array).__name__}",
                    key=self.out_keys[0],
                    batch=tuple(tensordict.batch_size),
                    batch_dims="".join(f"{d}, " for d in tensordict.batch_size),
                )
            )
        return torch.from_numpy(np.array(array, copy=True))

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not self._enabled:
            return tensordict
        frame = self._render(tensordict)
        batch = tensordict.batch_size
        if frame.ndim < len(batch) + 2 or frame.shape[: len(batch)] != batch:
            raise ValueError(
                _BAD_RENDER.format(
                    method=self.render_method,
                    what=f"an array of shape {tuple(frame.shape)}",
                    key=self.out_keys[0],
                    batch=tuple(batch),
                    batch_dims="".join(f"{d}, " for d in batch),
                )
            )
        tensordict.set(self.out_keys[0], frame)
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Return ``tensordict`` unchanged: stored data has no env state to render (as TorchRL's)."""
        return tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        parent = self.parent
        if parent is None:
            return observation_spec
        if not callable(getattr(parent, self.render_method, None)):
            raise ValueError(_NO_RENDER.format(env=type(parent).__name__, method=self.render_method))
        was_enabled, self._enabled = self._enabled, True
        try:
            probe = parent.reset()
            frame = self._call(probe).get(self.out_keys[0])
        finally:
            self._enabled = was_enabled
        spec: TensorSpec
        if frame.dtype == torch.uint8:
            spec = Bounded(0, 255, shape=frame.shape, dtype=torch.uint8, device=frame.device)
        else:
            spec = Unbounded(shape=frame.shape, dtype=frame.dtype, device=frame.device)
        observation_spec[self.out_keys[0]] = spec
        return observation_spec

    def _extra_repr(self) -> str:
        return f"enabled={self._enabled}, render_method={self.render_method!r}"
