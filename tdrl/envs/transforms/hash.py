"""Hash: write a fixed-size hash of each entry (per batch element), e.g. to count visits to states.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.envs.transforms import Hash
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(), Hash(in_keys=["observation"], out_keys=["obs_hash"]))
    >>> ro = env.rollout(3)
    >>> ro["next", "obs_hash"].shape, ro["next", "obs_hash"].dtype
    (torch.Size([3, 32]), torch.uint8)
    >>> bool((ro["obs_hash"][1] == ro["next", "obs_hash"][0]).all())  # the same observation, the same hash
    True
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _leaf, _slot
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["Hash"]

_NO_REPERTOIRE = (
    "Hash.get_input_from_hash: this Hash keeps no repertoire of its inputs. Fix: build it with repertoire={} "
    "(or with in_keys_inv/out_keys_inv, which create one)."
)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, torch.Tensor):
        return value.detach().contiguous().cpu().numpy().tobytes()
    if isinstance(value, bytes):
        return value
    return ("" if value is None else str(value)).encode("utf-8")


class Hash(Transform):
    """Write ``hash_fn(x)`` for each batch element ``x`` of ``in_keys`` under ``out_keys``.

    The default :meth:`reproducible_hash` is SHA-256 (32 ``uint8``); for a string it is
    TorchRL's hash (the same bytes), for a tensor element the hash of its raw bytes. The
    entry is hashed element by element over the data's batch dims, so a batched env or a
    rollout gets one hash per step. A ``repertoire`` dict (given, or created when
    ``in_keys_inv`` is given) records each input under its hash, for
    :meth:`get_input_from_hash` and the inverse path (hash -> input).

    Args:
        in_keys: the entries to hash.
        out_keys: where the hashes go.
        in_keys_inv: the base env's inputs the inverse writes (looked up from the hashes).
        out_keys_inv: the hashes the policy writes, read by the inverse.
        hash_fn: ``(value, seed) -> Tensor`` (or ``value -> Tensor`` when no seed is given),
            called on one batch element.
        seed: a string prepended to each input (passed to ``hash_fn``).
        use_raw_nontensor: accepted for TorchRL compatibility (non-tensor entries are
            always handed over as Python data).
        repertoire: a dict filled with ``{hash as nested tuple: input}``; not copied.

    Raises:
        TypeError: when ``hash_fn`` is not callable or does not return a tensor.

    Examples:
        >>> Hash.reproducible_hash("hello")[:4]
        tensor([ 44, 242,  77, 186], dtype=torch.uint8)
    """

    time_vectorizable = False  # one hash per batch element: the batch dims of a rollout differ from a step's

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey],
        out_keys: NestedKey | Sequence[NestedKey],
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        *,
        hash_fn: Callable[..., torch.Tensor] | None = None,
        seed: Any | None = None,
        use_raw_nontensor: bool = False,
        repertoire: dict | None = None,
    ) -> None:
        if hash_fn is not None and not callable(hash_fn):
            raise TypeError(f"Hash: hash_fn must be callable, got {hash_fn!r}.")
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self._hash_fn = hash_fn if hash_fn is not None else Hash.reproducible_hash
        self._seed = seed
        self._use_raw_nontensor = use_raw_nontensor
        if repertoire is None and self.in_keys_inv:
            repertoire = {}
        self._repertoire = repertoire

    @staticmethod
    def reproducible_hash(string: Any, seed: Any | None = None) -> torch.Tensor:
        """SHA-256 of ``seed + string`` as 32 ``uint8`` (a tensor element hashes its raw bytes).

        Args:
            string: a string (``None`` is ``""``), bytes, or a tensor.
            seed: a string prepended to the input.
        """
        data = _as_bytes(string)
        if seed is not None:
            data = str(seed).encode("utf-8") + data
        return torch.frombuffer(bytearray(hashlib.sha256(data).digest()), dtype=torch.uint8)

    @staticmethod
    def hash_to_repertoire_key(hash_tensor: Any) -> Any:
        """A hashable key for a hash tensor (nested tuples of its values)."""
        if isinstance(hash_tensor, torch.Tensor):
            hash_tensor = hash_tensor.tolist()
        if isinstance(hash_tensor, list):
            return tuple(Hash.hash_to_repertoire_key(item) for item in hash_tensor)
        return hash_tensor

    def call_hash_fn(self, value: Any) -> torch.Tensor:
        """The hash of one element (recorded in the repertoire when there is one)."""
        out = self._hash_fn(value) if self._seed is None else self._hash_fn(value, self._seed)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"Hash: hash_fn must return a tensor, got a {type(out).__name__}.")
        if self._repertoire is not None:
            self._repertoire[self.hash_to_repertoire_key(out)] = copy.copy(value)
        return out

    def get_input_from_hash(self, hash_tensor: torch.Tensor) -> Any:
        """The input that gave ``hash_tensor`` (``None`` when it was never seen).

        Raises:
            RuntimeError: when the transform keeps no repertoire.
        """
        if self._repertoire is None:
            raise RuntimeError(_NO_REPERTOIRE)
        return self._repertoire.get(self.hash_to_repertoire_key(hash_tensor))

    # --- maps ------------------------------------------------------------------------------
    def _hash_batch(self, value: Any, batch_shape: torch.Size) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            flat = value.reshape(-1, *value.shape[len(batch_shape) :])
            items: list = list(flat.unbind(0))
        else:
            items = _flat_items(value.tolist() if hasattr(value, "tolist") else value, len(batch_shape))
        hashes = [self.call_hash_fn(item) for item in items]
        return torch.stack(hashes).reshape(*batch_shape, *hashes[0].shape)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = tensordict.get(in_key, None)
            if value is not None:
                tensordict.set(out_key, self._hash_batch(value, tensordict.batch_size))
        return tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            hashes = tensordict.get(out_key, None)
            if hashes is None:
                continue
            batch = tensordict.batch_size
            flat = hashes.reshape(-1, *hashes.shape[len(batch) :])
            inputs = [self.get_input_from_hash(h) for h in flat.unbind(0)]
            missing = [i for i, x in enumerate(inputs) if x is None]
            if missing:
                raise KeyError(
                    f"Hash: the hash at flat index {missing[0]} of {out_key!r} was never produced by this transform, "
                    "so its input is unknown. Fix: write hashes this transform computed."
                )
            tensordict.set(in_key, torch.stack(inputs).reshape(*batch, *inputs[0].shape))
        return tensordict

    # --- specs -----------------------------------------------------------------------------
    def _out_spec(self, spec: TensorSpec, batch_dims: int) -> TensorSpec:
        element = spec.zero()[(0,) * batch_dims]
        out = self._hash_fn(element) if self._seed is None else self._hash_fn(element, self._seed)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"Hash: hash_fn must return a tensor, got a {type(out).__name__}.")
        return Unbounded(shape=(*spec.shape[:batch_dims], *out.shape), dtype=out.dtype, device=spec.device)

    def _map_spec(self, spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            if in_key in spec.keys(True, True):
                spec[out_key] = self._out_spec(_leaf(spec, in_key), len(spec.shape))
        return spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        for name in ("full_action_spec", "full_state_spec"):
            slot = _slot(input_spec, name)
            for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
                if in_key in slot.keys(True, True):
                    new = self._out_spec(_leaf(slot, in_key), len(slot.shape))
                    if out_key != in_key:
                        del slot[in_key]
                    slot[out_key] = new
        return input_spec

    def _extra_repr(self) -> str:
        return f"hash_fn={getattr(self._hash_fn, '__name__', self._hash_fn)!r}"


def _flat_items(data: Any, depth: int) -> list:
    """The items of a nested list ``depth`` levels deep, in row-major order."""
    if depth == 0:
        return [data]
    return [item for sub in data for item in _flat_items(sub, depth - 1)]
