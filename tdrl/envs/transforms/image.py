"""Image transforms for pixel envs, written with torch ops (no torchvision).

``ToTensorImage`` turns ``uint8 [*, H, W, C]`` frames into ``float [*, C, H, W]`` in
``[0, 1]``; the others (``Resize``, ``GrayScale``, ``CenterCrop``, ``Crop``) then work on
``[*, C, H, W]`` floating-point images.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.envs import Compose
    >>> td = TensorDict({"pixels": torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)}, [2])
    >>> td = Compose(ToTensorImage(), Resize(4, 4), GrayScale())(td)
    >>> td["pixels"].shape, round(td["pixels"].max().item(), 3)
    (torch.Size([2, 1, 4, 4]), 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Bounded, NestedKey, TensorSpec, Unbounded

__all__ = ["ToTensorImage", "Resize", "GrayScale", "CenterCrop", "Crop"]

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as PIL and torchvision use


def _uniform_bounds(spec: TensorSpec) -> tuple[float, float] | None:
    if not isinstance(spec, Bounded):
        return None
    low, high = spec.low, spec.high
    if low.numel() == 0 or not ((low == low.flatten()[0]).all() and (high == high.flatten()[0]).all()):
        return None
    return low.flatten()[0].item(), high.flatten()[0].item()


def _with_shape(spec: TensorSpec, shape: list, keep_bounds: bool) -> TensorSpec:
    bounds = _uniform_bounds(spec) if keep_bounds else None
    if bounds is None:
        return Unbounded(shape=shape, dtype=spec.dtype, device=spec.device)
    return Bounded(bounds[0], bounds[1], shape=shape, dtype=spec.dtype, device=spec.device)


def _need_chw_float(name: str, spec: TensorSpec, key: NestedKey) -> None:
    if not spec.dtype.is_floating_point or len(spec.shape) < 3:
        raise ValueError(
            f"{name}: {key!r} must be a floating-point image [*, C, H, W], got shape {tuple(spec.shape)} and dtype "
            f"{spec.dtype}. Fix: put ToTensorImage() before {name} in the Compose."
        )


class ToTensorImage(Transform):
    """``uint8 [*, H, W, C]`` frames -> ``float [*, C, H, W]`` images in ``[0, 1]``.

    Args:
        from_int: divide by 255 (default: when the input is not floating-point).
        dtype: the output dtype (default ``torch.get_default_dtype()``).
        in_keys: the images (default ``["pixels"]``).
        out_keys: where to write them (default ``in_keys``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"pixels": torch.full((4, 5, 3), 51, dtype=torch.uint8)}, [])
        >>> img = ToTensorImage()(td)["pixels"]
        >>> img.shape, img.max().item()
        (torch.Size([3, 4, 5]), 0.20000000298023224)
    """

    def __init__(
        self,
        from_int: bool | None = None,
        dtype: torch.dtype | None = None,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.from_int = from_int
        self.dtype = dtype or torch.get_default_dtype()

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        scale = self.from_int if self.from_int is not None else not value.dtype.is_floating_point
        # a copy whenever the division follows (a float frame with one channel would otherwise be a view of the input)
        out = value.movedim(-1, -3).to(self.dtype, memory_format=torch.contiguous_format, copy=scale)
        return out.div_(255.0) if scale else out

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if len(spec.shape) < 3:
            raise ValueError(
                f"ToTensorImage: {key!r} must be an image [*, H, W, C], got shape {tuple(spec.shape)}. "
                f"Fix: apply it to the pixels entry."
            )
        shape = list(spec.shape)
        shape[-3:] = [shape[-1], shape[-3], shape[-2]]
        scale = self.from_int if self.from_int is not None else not spec.dtype.is_floating_point
        if scale:
            return Bounded(0.0, 1.0, shape=shape, dtype=self.dtype, device=spec.device)
        return _with_shape(spec, shape, keep_bounds=True).to(self.dtype)


class Resize(Transform):
    """Resize ``[*, C, H, W]`` images to ``[*, C, h, w]`` with ``torch.nn.functional.interpolate``.

    Args:
        w: the new width.
        h: the new height (default ``w``).
        interpolation: ``"bilinear"``, ``"nearest"``, ``"bicubic"`` or ``"area"``.
        in_keys: the images (default ``["pixels"]``).
        out_keys: where to write them (default ``in_keys``).

    Raises:
        ValueError: for non-positive sizes or an unknown interpolation.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> Resize(2)(TensorDict({"pixels": torch.ones(3, 8, 8)}, []))["pixels"].shape
        torch.Size([3, 2, 2])
    """

    _MODES = ("bilinear", "nearest", "bicubic", "area")

    def __init__(
        self,
        w: int,
        h: int | None = None,
        interpolation: str = "bilinear",
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        h = w if h is None else h
        if w < 1 or h < 1:
            raise ValueError(f"Resize: w and h must be >= 1, got w={w}, h={h}.")
        if interpolation not in self._MODES:
            raise ValueError(f"Resize: interpolation must be one of {self._MODES}, got {interpolation!r}.")
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.w, self.h = int(w), int(h)
        self.interpolation = interpolation

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        lead = value.shape[:-3]
        flat = value.reshape(-1, *value.shape[-3:])
        kwargs = {"align_corners": False} if self.interpolation in ("bilinear", "bicubic") else {}
        out = F.interpolate(flat, size=(self.h, self.w), mode=self.interpolation, **kwargs)
        return out.reshape(*lead, *out.shape[-3:])

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        _need_chw_float("Resize", spec, key)
        shape = [*spec.shape[:-2], self.h, self.w]
        return _with_shape(spec, shape, keep_bounds=self.interpolation != "bicubic")  # bicubic overshoots

    def _extra_repr(self) -> str:
        return f"w={self.w}, h={self.h}, interpolation={self.interpolation!r}"


class GrayScale(Transform):
    """RGB ``[*, 3, H, W]`` images -> gray ``[*, 1, H, W]`` (luma weights 0.2989, 0.587, 0.114).

    Args:
        in_keys: the images (default ``["pixels"]``).
        out_keys: where to write them (default ``in_keys``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> GrayScale()(TensorDict({"pixels": torch.ones(3, 2, 2)}, []))["pixels"].shape
        torch.Size([1, 2, 2])
    """

    weights: torch.Tensor  # a buffer (registered in __init__)

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.register_buffer("weights", torch.tensor(_GRAY_WEIGHTS).view(3, 1, 1))

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return (value * self.weights.to(value.dtype)).sum(-3, keepdim=True)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        _need_chw_float("GrayScale", spec, key)
        if spec.shape[-3] != 3:
            raise ValueError(
                f"GrayScale: {key!r} must have 3 channels at dim -3, got shape {tuple(spec.shape)}. "
                f"Fix: apply it to RGB images after ToTensorImage()."
            )
        return _with_shape(spec, [*spec.shape[:-3], 1, *spec.shape[-2:]], keep_bounds=True)


class CenterCrop(Transform):
    """Crop the ``h x w`` center of ``[*, C, H, W]`` images.

    Args:
        w: the crop width.
        h: the crop height (default ``w``).
        in_keys: the images (default ``["pixels"]``).
        out_keys: where to write them (default ``in_keys``).

    Raises:
        ValueError: for non-positive sizes; at attach time, for a crop larger than the image.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> img = torch.arange(16.0).view(1, 4, 4)
        >>> CenterCrop(2)(TensorDict({"pixels": img}, []))["pixels"]
        tensor([[[ 5.,  6.],
                 [ 9., 10.]]])
    """

    def __init__(
        self,
        w: int,
        h: int | None = None,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        h = w if h is None else h
        if w < 1 or h < 1:
            raise ValueError(f"CenterCrop: w and h must be >= 1, got w={w}, h={h}.")
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.w, self.h = int(w), int(h)

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        height, width = value.shape[-2:]
        if self.h > height or self.w > width:
            raise ValueError(f"CenterCrop: crop {self.h}x{self.w} is larger than the image {height}x{width}.")
        top = (height - self.h) // 2
        left = (width - self.w) // 2
        return value[..., top : top + self.h, left : left + self.w]

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if len(spec.shape) < 2 or self.h > spec.shape[-2] or self.w > spec.shape[-1]:
            raise ValueError(
                f"CenterCrop: a {self.h}x{self.w} crop does not fit {key!r} of shape {tuple(spec.shape)}. "
                f"Fix: crop at most the image size (Resize first to enlarge)."
            )
        return _with_shape(spec, [*spec.shape[:-2], self.h, self.w], keep_bounds=True)

    def _extra_repr(self) -> str:
        return f"w={self.w}, h={self.h}"


class Crop(Transform):
    """Crop the ``h x w`` window of images ``[*, H, W]`` whose top-left pixel is at ``(top, left)``.

    The last two dims are cropped, so the transform works on ``[*, C, H, W]`` images of
    any dtype; a bounded spec keeps the bounds of the cropped window.

    ``h`` counts rows and ``w`` columns, as for :class:`CenterCrop`. (TorchRL 0.14.1
    hands ``w`` to torchvision as the height, so its non-square crops come out transposed;
    square crops are the same.)

    Args:
        w: the crop width (columns).
        h: the crop height (rows); default ``w``.
        top: the first row kept (default 0).
        left: the first column kept (default 0).
        in_keys: the images (default ``["pixels"]``).
        out_keys: where to write them (default ``in_keys``).

    Raises:
        ValueError: for non-positive sizes or negative offsets; at attach time (or when
            called) for a window that does not fit the image.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> img = torch.arange(16.0).view(1, 4, 4)
        >>> Crop(w=2, h=3, top=1, left=2)(TensorDict({"pixels": img}, []))["pixels"]
        tensor([[[ 6.,  7.],
                 [10., 11.],
                 [14., 15.]]])
    """

    def __init__(
        self,
        w: int,
        h: int | None = None,
        top: int = 0,
        left: int = 0,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        h = w if h is None else h
        if w < 1 or h < 1 or top < 0 or left < 0:
            raise ValueError(
                f"Crop: w and h must be >= 1 and top, left >= 0, got w={w}, h={h}, top={top}, left={left}."
            )
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.w, self.h, self.top, self.left = int(w), int(h), int(top), int(left)

    def _fits(self, shape: torch.Size) -> bool:
        return len(shape) >= 2 and self.top + self.h <= shape[-2] and self.left + self.w <= shape[-1]

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        if not self._fits(value.shape):
            raise ValueError(
                f"Crop: the {self.h}x{self.w} window at (top={self.top}, left={self.left}) does not fit an image of "
                f"shape {tuple(value.shape)}. Fix: a smaller window or offset."
            )
        return value[..., self.top : self.top + self.h, self.left : self.left + self.w]

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if not self._fits(spec.shape):
            raise ValueError(
                f"Crop: the {self.h}x{self.w} window at (top={self.top}, left={self.left}) does not fit {key!r} of "
                f"shape {tuple(spec.shape)} (the last two dims are cropped). Fix: a smaller window or offset, or "
                "ToTensorImage() first for [H, W, C] frames."
            )
        return spec._reshaped(torch.Size([*spec.shape[:-2], self.h, self.w]), self._apply_transform)

    def _extra_repr(self) -> str:
        return f"w={self.w}, h={self.h}, top={self.top}, left={self.left}"
