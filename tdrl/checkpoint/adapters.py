"""How one component of a checkpoint is saved and restored: the adapters and what they share.

A :class:`~tdrl.checkpoint.Checkpoint` gives each registered component its own folder and
asks an adapter to fill it: :class:`StateDictCheckpointAdapter` for anything with
``state_dict``/``load_state_dict`` (modules, optimizers, LR schedulers, collectors,
:class:`~tdrl.checkpoint.GlobalRNGState`), :class:`DumpLoadCheckpointAdapter` for objects that
save themselves into a folder (a replay buffer's ``dumps``/``loads``), and
:class:`JSONCheckpointAdapter` for plain values (counters, a config).

Restoring happens in two steps so that a checkpoint that does not fit changes nothing:
:meth:`CheckpointAdapter.prepare_load` reads and checks a component's files and returns the
function that applies them; the checkpoint calls those functions only once every component
is prepared.
"""

from __future__ import annotations

import abc
import copy
import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from tdrl.checkpoint._encoding import TensorFile, decode, encode

__all__ = [
    "CheckpointError",
    "CheckpointOptions",
    "CheckpointLoadResult",
    "CheckpointAdapter",
    "StateDictCheckpointAdapter",
    "DumpLoadCheckpointAdapter",
    "JSONCheckpointAdapter",
    "StateDictFormat",
]

StateDictFormat = Literal["directory", "torch"]
"""How :class:`StateDictCheckpointAdapter` stores a state: ``"directory"`` (JSON plus raw
tensor bytes, no pickle) or ``"torch"`` (:func:`torch.save`, loaded with ``weights_only=True``)."""

_STRICT_HINT = (
    "build the object as it was when the checkpoint was saved; to restore the other components only, "
    "pass components=[...] or strict='warn' to load()"
)


class CheckpointError(RuntimeError):
    """A checkpoint could not be saved or restored; ``result`` holds what was found, if anything.

    Examples:
        >>> from tdrl.checkpoint import CheckpointError
        >>> str(CheckpointError("no manifest"))
        'no manifest'
    """

    def __init__(self, message: str, result: CheckpointLoadResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class CheckpointOptions:
    """Extra arguments for a component's save and load calls.

    ``save_args``/``save_kwargs`` go to ``state_dict`` (or after the folder, to ``dump``);
    ``load_args``/``load_kwargs`` to ``load_state_dict`` (or ``load``). Options given to one
    ``save``/``load`` call are merged over those given at registration: keyword arguments key
    by key, positional arguments replaced whole.

    Examples:
        >>> from tdrl.checkpoint import CheckpointOptions
        >>> base = CheckpointOptions(load_kwargs={"strict": True})
        >>> base.merged(CheckpointOptions(load_kwargs={"assign": False})).load_kwargs
        {'strict': True, 'assign': False}
    """

    save_args: tuple[Any, ...] | None = None
    save_kwargs: Mapping[str, Any] | None = None
    load_args: tuple[Any, ...] | None = None
    load_kwargs: Mapping[str, Any] | None = None

    def merged(self, override: CheckpointOptions | None) -> CheckpointOptions:
        """These options with ``override`` applied on top."""
        if override is None:
            return self
        return CheckpointOptions(
            save_args=self.save_args if override.save_args is None else override.save_args,
            save_kwargs={**(self.save_kwargs or {}), **(override.save_kwargs or {})},
            load_args=self.load_args if override.load_args is None else override.load_args,
            load_kwargs={**(self.load_kwargs or {}), **(override.load_kwargs or {})},
        )


@dataclass
class CheckpointLoadResult:
    """What :meth:`Checkpoint.load <tdrl.checkpoint.Checkpoint.load>` restored and what it could not.

    Attributes:
        loaded: the components restored.
        missing: requested components the checkpoint does not hold.
        incompatible: components that could not be restored, with the reason.
        unrequested: components in the checkpoint that were not asked for.
        values: what adapters returned (the saved value of an immutable JSON component).
        manifest: the checkpoint's manifest.
        comparison: ``"versions"`` (per library: saved, running, whether they match) and
            ``"version_skew"``.

    Examples:
        >>> from tdrl.checkpoint import CheckpointLoadResult
        >>> CheckpointLoadResult().loaded
        set()
    """

    loaded: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    incompatible: dict[str, str] = field(default_factory=dict)
    unrequested: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)


class CheckpointAdapter(abc.ABC):
    """Saves one component into a folder of its own and restores it from there.

    Subclasses set ``adapter_id`` (recorded in the manifest, checked at load) and implement
    :meth:`save` and :meth:`load`. They may override :meth:`prepare_load` to read and check
    everything before anything changes (the built-in adapters do), and :meth:`snapshot`
    so that a failed multi-component load can undo this component.

    Examples:
        >>> import json
        >>> from tdrl.checkpoint import CheckpointAdapter
        >>> class Counter:
        ...     value = 0
        >>> class CounterAdapter(CheckpointAdapter):
        ...     adapter_id = "my.counter"
        ...     def save(self, component, path, *, args, kwargs):
        ...         path.mkdir(parents=True, exist_ok=True)
        ...         (path / "value.json").write_text(json.dumps(component.value))
        ...     def load(self, component, path, *, map_location, tensor_load_kwargs, args, kwargs):
        ...         component.value = json.loads((path / "value.json").read_text())
        >>> CounterAdapter().adapter_id
        'my.counter'
    """

    adapter_id: str
    format_version: int = 1
    restored_in_place_last: bool = False
    """True for adapters whose restore cannot be undone (the checkpoint applies them last)."""

    @abc.abstractmethod
    def save(self, component: Any, path: Path, *, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Writes ``component`` into the folder ``path`` (which it may create)."""

    @abc.abstractmethod
    def load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        """Restores ``component`` from ``path``; may return a value (kept in the load result)."""

    def prepare_load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Callable[[], Any]:
        """Reads and checks ``path``; returns the call that restores ``component`` from it.

        The default defers everything to :meth:`load`.
        """
        return lambda: self.load(
            component, path, map_location=map_location, tensor_load_kwargs=tensor_load_kwargs, args=args, kwargs=kwargs
        )

    def snapshot(self, component: Any) -> Callable[[], None] | None:
        """A call that puts ``component`` back as it is now, or ``None`` when it cannot."""
        return None


def _write_new(path: Path, data: bytes) -> None:
    """Creates ``path`` with ``data``; the checkpoint fsyncs every file of a component once, after its adapter."""
    with open(path, "xb") as file:
        file.write(data)


# ------------------------------------------------------------------------------ state dicts
def _check_module_state(module: nn.Module, state: Mapping[str, Any], strict: bool) -> None:
    """Raises naming the first key or shape that does not fit ``module``; changes nothing."""
    own = module.state_dict()
    name = type(module).__name__
    if strict:
        unexpected = [k for k in state if k not in own]
        missing = [k for k in own if k not in state]
        if unexpected:
            raise KeyError(
                f"the checkpoint holds key {unexpected[0]!r}, which this {name} does not have "
                f"(its keys: {list(own)[:8]}{'...' if len(own) > 8 else ''}); {_STRICT_HINT}"
            )
        if missing:
            raise KeyError(
                f"this {name} has key {missing[0]!r}, which the checkpoint does not hold "
                f"(checkpoint keys: {list(state)[:8]}{'...' if len(state) > 8 else ''}); {_STRICT_HINT}"
            )
    for key, value in state.items():
        mine = own.get(key)
        if isinstance(mine, (UninitializedParameter, UninitializedBuffer)) or not isinstance(mine, torch.Tensor):
            continue
        if isinstance(value, torch.Tensor) and value.shape != mine.shape:
            raise ValueError(
                f"key {key!r} has shape {list(value.shape)} in the checkpoint and {list(mine.shape)} in this "
                f"{name}; {_STRICT_HINT}"
            )


class StateDictCheckpointAdapter(CheckpointAdapter):
    """For objects with ``state_dict()`` and ``load_state_dict(state)``.

    The default payload (``"directory"``) is a JSON document ``state.json`` plus the raw bytes
    of every tensor in ``tensors.bin``: loading it runs no unpickler at all. An
    ``nn.Module``'s keys and shapes are checked against the checkpoint before anything is
    loaded (with ``load_kwargs={"strict": False}``, only the shapes of shared keys).
    ``payload_format="torch"`` stores the state with :func:`torch.save` instead (for states
    holding other objects), read back with ``weights_only=True`` unless
    ``tensor_load_kwargs`` says otherwise.

    Args:
        payload_format: ``"directory"`` or ``"torch"``.
        archive_compression: accepted for TorchRL's signature; unused (tdrl writes no archives).

    Examples:
        >>> from tdrl.checkpoint import StateDictCheckpointAdapter
        >>> StateDictCheckpointAdapter().payload_format
        'directory'
    """

    adapter_id = "tdrl.state_dict"
    schema_filename = "state.json"
    tensors_filename = "tensors.bin"
    torch_filename = "state.pt"

    def __init__(self, payload_format: StateDictFormat = "directory", *, archive_compression: Any = None) -> None:
        if payload_format not in ("directory", "torch"):
            raise ValueError(
                f"payload_format must be 'directory' (JSON + raw tensors, no pickle) or 'torch' (torch.save), "
                f"got {payload_format!r}"
            )
        self.payload_format = payload_format
        self.archive_compression = archive_compression

    def save(self, component: Any, path: Path, *, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        path.mkdir(parents=True, exist_ok=True)
        state = component.state_dict(*args, **kwargs)
        if self.payload_format == "torch":
            with open(path / self.torch_filename, "xb") as file:
                torch.save(state, file)
            return state
        tensors = TensorFile()
        schema = encode(state, tensors)
        with open(path / self.tensors_filename, "xb") as file:
            for chunk in tensors.chunks:
                file.write(chunk)
        _write_new(path / self.schema_filename, json.dumps(schema, separators=(",", ":")).encode())
        return state

    def read(self, path: Path, *, map_location: Any = None, tensor_load_kwargs: Mapping[str, Any] | None = None) -> Any:
        """The state stored in ``path`` (raises ``ValueError`` for a malformed one)."""
        tensor_load_kwargs = dict(tensor_load_kwargs or {})
        torch_file = path / self.torch_filename
        if torch_file.is_file():
            load_kwargs: dict[str, Any] = {"weights_only": True, **tensor_load_kwargs}
            if map_location is not None:
                load_kwargs["map_location"] = map_location
            return torch.load(torch_file, **load_kwargs)
        unsupported = set(tensor_load_kwargs) - {"mmap", "weights_only"}
        if unsupported:
            raise TypeError(
                f"tensor_load_kwargs {sorted(unsupported)} apply only to payloads saved with payload_format='torch'"
            )
        schema_file = path / self.schema_filename
        if not schema_file.is_file():
            raise FileNotFoundError(f"no state payload ({self.schema_filename} or {self.torch_filename}) in {path}")
        try:
            schema = json.loads(schema_file.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ValueError(f"{schema_file} is not valid JSON ({err})") from None
        data = memoryview(bytearray((path / self.tensors_filename).read_bytes()))
        return decode(schema, data, map_location)

    def prepare_load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Callable[[], Any]:
        state = self.read(path, map_location=map_location, tensor_load_kwargs=tensor_load_kwargs)
        if isinstance(component, nn.Module):
            _check_module_state(component, state, bool(kwargs.get("strict", args[0] if args else True)))

        def apply() -> None:
            component.load_state_dict(state, *args, **kwargs)

        return apply

    def load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        self.prepare_load(
            component, path, map_location=map_location, tensor_load_kwargs=tensor_load_kwargs, args=args, kwargs=kwargs
        )()

    def snapshot(self, component: Any) -> Callable[[], None] | None:
        state = copy.deepcopy(component.state_dict())
        return lambda: component.load_state_dict(state)


# ------------------------------------------------------------------------------- dump / load
class DumpLoadCheckpointAdapter(CheckpointAdapter):
    """For objects that save themselves into a folder: ``dump(path)``/``load(path)``, or
    tdrl's and TorchRL's replay-buffer spelling ``dumps(path)``/``loads(path)``.

    A tdrl replay buffer's checkpoint is JSON plus raw tensor files with a checksum each,
    checked before anything changes. Such a restore cannot be undone, so a checkpoint
    applies these components after all the others.

    Examples:
        >>> from tdrl.checkpoint import DumpLoadCheckpointAdapter
        >>> DumpLoadCheckpointAdapter().adapter_id
        'tdrl.dump_load'
    """

    adapter_id = "tdrl.dump_load"
    restored_in_place_last = True

    @staticmethod
    def _method(component: Any, names: tuple[str, str]) -> Callable[..., Any]:
        for name in names:
            method = getattr(component, name, None)
            if callable(method):
                return method
        raise TypeError(f"{type(component).__name__} has none of {list(names)}: it cannot save itself into a folder")

    def save(self, component: Any, path: Path, *, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        path.mkdir(parents=True, exist_ok=True)
        return self._method(component, ("dump", "dumps"))(path, *args, **kwargs)

    def load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        self._method(component, ("load", "loads"))(path, *args, **kwargs)


# ------------------------------------------------------------------------------------- JSON
class JSONCheckpointAdapter(CheckpointAdapter):
    """For JSON values: counters, metrics, a config.

    A dict or list component is updated in place at load; any other value is handed back
    in the ``values`` of :class:`CheckpointLoadResult`.

    Examples:
        >>> import tempfile
        >>> from tdrl.checkpoint import Checkpoint
        >>> folder = tempfile.mkdtemp()
        >>> _ = Checkpoint(progress={"step": 12}).save(f"{folder}/ckpt")
        >>> progress = {"step": 0}
        >>> _ = Checkpoint(progress=progress).load(f"{folder}/ckpt")
        >>> progress
        {'step': 12}
    """

    adapter_id = "tdrl.json"
    state_filename = "value.json"

    def save(self, component: Any, path: Path, *, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        if args or kwargs:
            raise TypeError("a JSON component takes no save options")
        path.mkdir(parents=True, exist_ok=True)
        _write_new(path / self.state_filename, json.dumps(component, indent=1, sort_keys=True).encode())
        return component

    def prepare_load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Callable[[], Any]:
        if args or kwargs:
            raise TypeError("a JSON component takes no load options")
        try:
            value = json.loads((path / self.state_filename).read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path / self.state_filename} is not valid JSON ({err})") from None

        def apply() -> Any:
            if isinstance(component, MutableMapping) and isinstance(value, dict):
                component.clear()
                component.update(value)
                return component
            if isinstance(component, list) and isinstance(value, list):
                component[:] = value
                return component
            return value

        return apply

    def load(
        self,
        component: Any,
        path: Path,
        *,
        map_location: Any,
        tensor_load_kwargs: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        return self.prepare_load(
            component, path, map_location=map_location, tensor_load_kwargs=tensor_load_kwargs, args=args, kwargs=kwargs
        )()

    def snapshot(self, component: Any) -> Callable[[], None] | None:
        if isinstance(component, MutableMapping):
            saved = dict(component)

            def undo_mapping() -> None:
                component.clear()
                component.update(saved)

            return undo_mapping
        if isinstance(component, list):
            saved_list = list(component)

            def undo_list() -> None:
                component[:] = saved_list

            return undo_list
        return lambda: None
