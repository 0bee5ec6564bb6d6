"""``TensorDictRecorder``: a transform that keeps every ``skip``-th step and saves them as one file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import NestedKey

__all__ = ["TensorDictRecorder"]


class TensorDictRecorder(Transform):
    """Records the steps an env outputs (every ``skip``-th, resets included) and saves them with
    :meth:`~tdrl.record.TensorDictRecorder.dump`.

    :meth:`dump` stacks the recorded TensorDicts along a new first dim and writes them with
    ``torch.save`` to ``"<out_file_base>[_<suffix>]_tensordict.t"`` (read back with
    ``torch.load(path, weights_only=False)``), then starts a new recording.

    Args:
        out_file_base: the path prefix of the files written.
        skip_reset: leave out the first recorded TensorDict (usually the reset's output).
        skip: record one step in ``skip`` (counting resets).
        in_keys: record only these entries (default: every entry).

    Raises:
        ValueError: ``skip`` is not a positive int.

    Examples:
        >>> import os, tempfile, torch
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> base = os.path.join(tempfile.mkdtemp(), "run")
        >>> recorder = TensorDictRecorder(base, skip=2, in_keys=["observation"])
        >>> env = TransformedEnv(CountingEnv(max_steps=100), recorder)
        >>> _ = env.rollout(6)
        >>> recorder.dump()
        >>> torch.load(base + "_tensordict.t", weights_only=False)["observation"].flatten()
        tensor([3., 5.])
    """

    time_vectorizable = False  # counts steps as they come

    def __init__(
        self,
        out_file_base: str | os.PathLike,
        skip_reset: bool = True,
        skip: int = 4,
        in_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 1:
            raise ValueError(
                f"TensorDictRecorder: skip must be a positive int (record one step in skip), got {skip!r}."
            )
        super().__init__(in_keys=list(in_keys) if in_keys else [])
        self.out_file_base = os.fspath(out_file_base)
        self.skip_reset = skip_reset
        self.skip = skip
        self.iter = 0
        self.count = 0
        self.td: list[TensorDictBase] = []

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.count += 1
        if self.count % self.skip == 0:
            kept = tensordict.select(*self.in_keys) if self.in_keys else tensordict
            self.td.append(kept.to_tensordict() if kept is not tensordict else tensordict.clone())
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def _check_forward_keys(self, tensordict: TensorDictBase, nxt: TensorDictBase | None) -> None:
        """Any TensorDict can be recorded (the selected entries may be absent)."""

    def dump(self, suffix: str | None = None, **kwargs: Any) -> None:
        """Save the recorded steps, stacked, and start a new recording.

        Args:
            suffix: added to the file name (``"<out_file_base>_<suffix>_tensordict.t"``).
            **kwargs: what ``Compose.dump`` passes to every transform (ignored here).

        Raises:
            RuntimeError: nothing is left to save (no step recorded, or only the skipped reset).
        """
        tag = self.out_file_base if suffix is None else f"{self.out_file_base}_{suffix}"
        recorded = self.td[1:] if self.skip_reset else self.td
        if not recorded:
            raise RuntimeError(
                f"TensorDictRecorder.dump: no step recorded since the last dump ({len(self.td)} kept with "
                f"skip={self.skip}, skip_reset={self.skip_reset}); run the env longer or lower skip."
            )
        path = f"{tag}_tensordict.t"
        torch.save(torch.stack(recorded, 0).contiguous(), path)  # type: ignore[arg-type]
        self.iter += 1
        self.count = 0
        self.td = []
