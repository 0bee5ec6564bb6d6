"""Row hashes: ``SipHash`` (Python's builtin bytes hash of each row) and ``RandomProjectionHash``.

Both rely on Python's ``hash`` of bytes, which is salted per process unless the
``PYTHONHASHSEED`` environment variable is set before Python starts: the values are
stable within a process, and across processes only with that variable set.

Examples:
    >>> import torch
    >>> from tdrl.data import SipHash
    >>> x = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.1, 0.2]])
    >>> h = SipHash()(x)
    >>> h.shape, bool(h[0] == h[2]), bool(h[0] == h[1])
    (torch.Size([3]), True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

__all__ = ["SipHash", "RandomProjectionHash"]


class SipHash(nn.Module):
    """Hash each row of a ``[batch, features]`` tensor to one ``int64`` (or to its bytes).

    Args:
        as_tensor: return an ``int64`` tensor ``[batch]`` of ``hash(row bytes)`` (True) or
            the list of each row's bytes (False).

    Raises:
        ValueError: in ``forward``, when the input is not 2-D.

    Examples:
        >>> import torch
        >>> SipHash(as_tensor=False)(torch.zeros(2, 1, dtype=torch.uint8))
        [b'\\x00', b'\\x00']
    """

    def __init__(self, as_tensor: bool = True) -> None:
        super().__init__()
        self.as_tensor = as_tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[bytes]:
        if x.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}: expected a [batch, features] tensor, got shape {tuple(x.shape)}. "
                "Fix: flatten the features first (x.flatten(1)) or add a batch dim (x.unsqueeze(0))."
            )
        if x.dtype == torch.bfloat16:
            x = x.to(torch.float16)  # numpy has no bfloat16
        rows = [row.tobytes() for row in x.detach().cpu().numpy()]
        if not self.as_tensor:
            return rows
        return torch.tensor([hash(row) for row in rows], dtype=torch.int64)


class RandomProjectionHash(SipHash):
    """Project rows onto ``n_components`` random directions (cast to ``dtype_cast``), then :class:`SipHash` them.

    The projection is drawn on the first call (:meth:`fit`) from ``init_method``
    (default ``torch.nn.init.normal_``); casting to a coarse dtype makes nearby rows share
    a hash.

    Args:
        n_components: the number of random directions (default 16).
        dtype_cast: the projection's dtype (default ``torch.bfloat16``).
        as_tensor: as in :class:`SipHash`.
        init_method: fills the ``[features, n_components]`` projection in place.

    Examples:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> rph = RandomProjectionHash(n_components=4)
        >>> x = torch.randn(5, 10)
        >>> bool((rph(x) == rph(x.clone())).all()), rph.transform.shape
        (True, torch.Size([10, 4]))
    """

    def __init__(
        self,
        *,
        n_components: int | None = None,
        dtype_cast: torch.dtype = torch.bfloat16,
        as_tensor: bool = True,
        init_method: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
    ) -> None:
        super().__init__(as_tensor=as_tensor)
        n = 16 if n_components is None else int(n_components)
        if n < 1:
            raise ValueError(f"RandomProjectionHash: n_components must be >= 1, got {n}.")
        self.register_buffer("_n_components", torch.as_tensor(n))
        self.dtype_cast = dtype_cast
        self.init_method = init_method if init_method is not None else torch.nn.init.normal_
        self.register_buffer("transform", None)

    @property
    def n_components(self) -> int:
        """The number of random directions."""
        return int(cast(torch.Tensor, self._n_components))

    def fit(self, x: torch.Tensor) -> None:
        """Draw the projection for inputs with ``x.shape[-1]`` features."""
        projection = torch.empty(x.shape[-1], self.n_components, dtype=self.dtype_cast, device=x.device)
        self.init_method(projection)
        self.transform = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[bytes]:
        if self.transform is None:
            self.fit(x)
        projection = self.transform
        if x.shape[-1] != projection.shape[0]:
            raise ValueError(
                f"RandomProjectionHash: the projection was fitted to {projection.shape[0]} features, got "
                f"{x.shape[-1]}. Fix: use one RandomProjectionHash per input size."
            )
        return super().forward(x.to(self.dtype_cast) @ projection)
