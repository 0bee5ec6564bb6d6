"""One call that saves or restores a whole training state, crash-safe and without pickle.

A :class:`Checkpoint` holds named components (modules, optimizers, LR schedulers, a
collector, a replay buffer, :class:`~tdrl.checkpoint.GlobalRNGState`, plain JSON values).
:meth:`Checkpoint.save` writes them as one folder::

    <path>/manifest.json              # format, versions, metadata, components, a CRC-32 per file
    <path>/components/0000-<name>/... # one folder per component, filled by its adapter

The folder is built next to the previous one and swapped in by
:func:`tdrl._safe_io.replace_folder`, so a save that fails or is killed at any instant
leaves the previous checkpoint whole and loadable. :meth:`Checkpoint.load` checks the
manifest's checksum and every file's size and checksum, reads and checks every requested
component, and only then restores them; should one still fail, those already restored are
put back as they were.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import tensordict
import torch

from tdrl import __version__ as tdrl_version
from tdrl._safe_io import FileDigest, committed_folder, file_digest, fsync_folder, replace_folder, write_new_file
from tdrl.checkpoint.adapters import (
    CheckpointAdapter,
    CheckpointError,
    CheckpointLoadResult,
    CheckpointOptions,
    DumpLoadCheckpointAdapter,
    JSONCheckpointAdapter,
    StateDictCheckpointAdapter,
)

__all__ = ["Checkpoint", "CheckpointFormat", "CheckpointStrictness"]

CheckpointFormat = Literal["directory", "archive"]
"""A checkpoint's container; tdrl writes ``"directory"`` only."""
CheckpointStrictness = Literal["error", "warn", "ignore"]
"""What a load does about a missing or incompatible component: raise, warn, or skip it."""

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "tdrl.checkpoint"
FORMAT_VERSION = 1
_DAMAGED = "the checkpoint is damaged or was changed after it was saved; load an earlier one"


@dataclass
class _Component:
    value: Any
    adapter: CheckpointAdapter | None
    options: CheckpointOptions


def _body_crc(manifest: Mapping[str, Any]) -> int:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _plain_relative(rel: Any, what: str) -> Path:
    """``rel`` as a relative path of plain names (no ``..``, not absolute), or CheckpointError."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if not parts or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise CheckpointError(f"the manifest names the {what} {rel!r}, which is not a path inside the checkpoint")
    return Path(*parts)


class Checkpoint:
    """Saves and restores named components of a training run together.

    Each component is saved by an adapter chosen from what it offers: an explicit
    ``adapter=``; one registered for its type (:meth:`register_adapter`); ``dump``/``load``
    (or ``dumps``/``loads``, as a replay buffer) through :class:`DumpLoadCheckpointAdapter`;
    ``state_dict``/``load_state_dict`` through :class:`StateDictCheckpointAdapter`; a JSON
    value through :class:`JSONCheckpointAdapter`.

    Args:
        format: ``"directory"`` (the only container tdrl writes).
        strict: what :meth:`load` does about a missing or incompatible component by default:
            ``"error"`` (raise, nothing changed), ``"warn"`` or ``"ignore"`` (skip it).
        archive_compression: accepted for TorchRL's signature (``"stored"`` or ``"deflate"``);
            unused, as tdrl writes no archives.
        save_components: the components :meth:`save` writes when not told (default: all).
        **components: the components, by name.

    Raises:
        ValueError: for ``format="archive"`` or an unknown ``strict``.

    Examples:
        >>> import tempfile, torch
        >>> from tdrl.checkpoint import Checkpoint, GlobalRNGState
        >>> policy = torch.nn.Linear(2, 1)
        >>> optim = torch.optim.Adam(policy.parameters())
        >>> path = tempfile.mkdtemp() + "/step-100"
        >>> _ = Checkpoint(policy=policy, optim=optim, rng=GlobalRNGState()).save(path)
        >>> fresh = torch.nn.Linear(2, 1)
        >>> result = Checkpoint(policy=fresh, optim=torch.optim.Adam(fresh.parameters()), rng=GlobalRNGState()).load(
        ...     path
        ... )
        >>> sorted(result.loaded), torch.equal(fresh.weight, policy.weight)
        (['optim', 'policy', 'rng'], True)
    """

    _format_migrations: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    def __init__(
        self,
        *,
        format: CheckpointFormat = "directory",
        strict: CheckpointStrictness = "error",
        archive_compression: Literal["stored", "deflate"] = "stored",
        save_components: Collection[str] | None = None,
        **components: Any,
    ) -> None:
        self._check_format(format)
        self._check_strict(strict)
        if archive_compression not in ("stored", "deflate"):
            raise ValueError(f"archive_compression must be 'stored' or 'deflate', got {archive_compression!r}")
        self.format = format
        self.strict = strict
        self.archive_compression = archive_compression
        self.save_components = None if save_components is None else frozenset(save_components)
        self._components: dict[str, _Component] = {}
        self._adapter_registry: list[tuple[type, CheckpointAdapter]] = []
        for name, component in components.items():
            self.register(name, component)

    # ------------------------------------------------------------------ registration
    @property
    def components(self) -> Mapping[str, Any]:
        """The registered components, by name (a copy)."""
        return {name: c.value for name, c in self._components.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def register(
        self,
        name: str,
        component: Any,
        *,
        adapter: CheckpointAdapter | None = None,
        options: CheckpointOptions | None = None,
    ) -> Checkpoint:
        """Adds a component under ``name`` (a plain name: no ``/``); returns self.

        Raises:
            KeyError: when ``name`` is taken.
            ValueError: for a name that cannot be a folder name.
            TypeError: for an ``adapter`` that is not a :class:`CheckpointAdapter`.
        """
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"component name {name!r} must be a non-empty name without path separators")
        if name in self._components:
            raise KeyError(f"a component {name!r} is already registered; pick another name")
        if adapter is not None and not isinstance(adapter, CheckpointAdapter):
            raise TypeError(f"adapter must be a CheckpointAdapter, got {type(adapter).__name__}")
        self._components[name] = _Component(component, adapter, options or CheckpointOptions())
        return self

    def register_adapter(self, component_type: type, adapter: CheckpointAdapter) -> Checkpoint:
        """Uses ``adapter`` for components of ``component_type`` (latest registration first); returns self."""
        if not isinstance(component_type, type) or not isinstance(adapter, CheckpointAdapter):
            raise TypeError("register_adapter takes a type and a CheckpointAdapter instance")
        self._adapter_registry.insert(0, (component_type, adapter))
        return self

    def _adapter(self, name: str) -> CheckpointAdapter:
        component = self._components[name]
        if component.adapter is not None:
            return component.adapter
        value = component.value
        for kind, adapter in self._adapter_registry:
            if isinstance(value, kind):
                return adapter
        if any(callable(getattr(value, n, None)) for n in ("dump", "dumps")) and any(
            callable(getattr(value, n, None)) for n in ("load", "loads")
        ):
            return DumpLoadCheckpointAdapter()
        if callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None)):
            return StateDictCheckpointAdapter()
        if _is_json(value):
            return JSONCheckpointAdapter()
        raise TypeError(
            f"component {name!r}: no way to save a {type(value).__name__}; give it state_dict/load_state_dict or "
            "dump/load methods, or register it with adapter=..."
        )

    def _selection(self, names: Collection[str] | None) -> set[str]:
        selected = set(self._components) if names is None else set(names)
        unknown = selected - set(self._components)
        if unknown:
            raise KeyError(f"no component named {sorted(unknown)}; registered: {sorted(self._components)}")
        return selected

    # ------------------------------------------------------------------------- save
    def save(
        self,
        path: str | os.PathLike,
        *,
        components: Collection[str] | None = None,
        component_options: Mapping[str, CheckpointOptions] | None = None,
        format: CheckpointFormat | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Path:
        """Writes the components into the folder ``path``, replacing what was there, crash-safe.

        Args:
            path: the checkpoint folder.
            components: the names to save (default: ``save_components``, else all).
            component_options: per-component options for this call.
            format: ``"directory"`` (the default and only container).
            metadata: JSON values kept in the manifest (a step, a metric).

        Returns:
            The checkpoint's path.

        Raises:
            TypeError: for metadata or a component that cannot be saved without pickle; the
                previous checkpoint at ``path`` stays as it was.
        """
        destination = Path(os.path.abspath(os.path.expanduser(path)))
        self._check_format(self.format if format is None else format)
        selected = self._selection(self.save_components if components is None else components)
        options = dict(component_options or {})
        stray = set(options) - selected
        if stray:
            raise KeyError(f"component_options name components not being saved: {sorted(stray)}")
        metadata = dict(metadata or {})
        if not _is_json(metadata):
            raise TypeError("metadata must hold JSON values only (str, int, float, bool, None, lists, dicts)")

        def fill(stage: Path) -> None:
            records: dict[str, Any] = {}
            digests: dict[str, Any] = {}
            (stage / "components").mkdir()
            for index, name in enumerate(sorted(selected)):
                registration = self._components[name]
                adapter = self._adapter(name)
                rel = f"components/{index:04d}-{quote(name, safe='._-')}"
                folder = stage / rel
                merged = registration.options.merged(options.get(name))
                adapter.save(registration.value, folder, args=merged.save_args or (), kwargs=merged.save_kwargs or {})
                files = _seal(folder)
                for file, digest in files.items():
                    digests[f"{rel}/{file}"] = {"bytes": digest.size, "crc32": digest.crc32}
                records[name] = {
                    "adapter": adapter.adapter_id,
                    "adapter_version": adapter.format_version,
                    "path": rel,
                    "files": sorted(files),
                }
            fsync_folder(stage / "components")
            manifest: dict[str, Any] = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "container": "directory",
                "checkpoint_id": uuid.uuid4().hex,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "versions": _versions(),
                "metadata": metadata,
                "components": records,
                "digests": digests,
            }
            manifest["checksum"] = _body_crc(manifest)
            write_new_file(stage / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True).encode())

        replace_folder(destination, fill)
        return destination

    # ------------------------------------------------------------------------- read
    @classmethod
    def register_migration(cls, from_version: int, migration: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Registers how a manifest of ``from_version`` becomes one of ``from_version + 1``."""
        if type(from_version) is not int or from_version < 0:
            raise ValueError(f"from_version must be an int >= 0, got {from_version!r}")
        if not callable(migration):
            raise TypeError("migration must be callable")
        cls._format_migrations[from_version] = migration

    @classmethod
    def manifest(cls, path: str | os.PathLike) -> dict[str, Any]:
        """The checked manifest of the checkpoint at ``path`` (no component is read).

        Raises:
            FileNotFoundError: when there is no checkpoint at ``path``.
            CheckpointError: for a manifest that is not tdrl's, of an unknown version, or damaged.
        """
        return cls._read_manifest(path)[0]

    @classmethod
    def _read_manifest(cls, path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
        """The checked manifest and the folder it was read from (the backup after a cut save)."""
        folder = committed_folder(os.path.expanduser(path))
        if folder is None:
            raise FileNotFoundError(f"no checkpoint at {path}: save one there with Checkpoint(...).save(path)")
        file = folder / MANIFEST_NAME
        try:
            manifest = json.loads(file.read_bytes())
        except FileNotFoundError:
            raise CheckpointError(f"{folder} holds no {MANIFEST_NAME}: it is not a tdrl checkpoint") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise CheckpointError(f"{file} is not valid JSON ({err}); {_DAMAGED}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{file} is not a tdrl checkpoint manifest (format {FORMAT_NAME!r})")
        if manifest.get("checksum") != _body_crc(manifest):
            raise CheckpointError(f"{file} does not match its checksum; {_DAMAGED}")
        version = manifest.get("format_version")
        while type(version) is int and version < FORMAT_VERSION:
            migration = cls._format_migrations.get(version)
            if migration is None:
                raise CheckpointError(f"checkpoint format version {version} is old and no migration is registered")
            manifest = migration(dict(manifest))
            if manifest.get("format_version") != version + 1:
                raise CheckpointError(f"the migration from version {version} did not produce version {version + 1}")
            version = version + 1
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format version {version!r} is not readable here (this tdrl reads {FORMAT_VERSION}); "
                "load it with the tdrl that saved it"
            )
        components, digests = manifest.get("components"), manifest.get("digests")
        if not isinstance(components, dict) or not isinstance(digests, dict):
            raise CheckpointError(f"{file} lists no components; {_DAMAGED}")
        for name, record in components.items():
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("adapter"), str)
                or type(record.get("adapter_version")) is not int
                or not isinstance(record.get("files"), list)
            ):
                raise CheckpointError(f"{file}: the record of component {name!r} is malformed; {_DAMAGED}")
            _plain_relative(record.get("path"), "component folder")
            for rel in record["files"]:
                _plain_relative(rel, "file")
                if f"{record['path']}/{rel}" not in digests:
                    raise CheckpointError(f"{file}: file {rel!r} of component {name!r} has no checksum; {_DAMAGED}")
        return manifest, folder

    @classmethod
    def is_checkpoint(cls, path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a readable tdrl checkpoint manifest."""
        try:
            cls.manifest(path)
        except (CheckpointError, OSError):
            return False
        return True

    # ------------------------------------------------------------------------- load
    def load(
        self,
        path: str | os.PathLike,
        *,
        components: Collection[str] | None = None,
        component_options: Mapping[str, CheckpointOptions] | None = None,
        map_location: Any = None,
        tensor_load_kwargs: Mapping[str, Any] | None = None,
        strict: CheckpointStrictness | None = None,
    ) -> CheckpointLoadResult:
        """Restores the components from the checkpoint at ``path``.

        Every requested component is read and checked (checksums, keys, shapes) before any
        is restored. With ``strict="error"`` a problem raises and leaves every component as
        it was; with ``"warn"``/``"ignore"`` the components that fit are restored and the
        others reported in the result.

        Args:
            path: the checkpoint folder.
            components: the names to restore (default: all registered).
            component_options: per-component options for this call.
            map_location: a device, or ``{saved device: device}``, for the restored tensors.
            tensor_load_kwargs: keyword arguments for :func:`torch.load` of payloads saved with
                ``payload_format="torch"`` (``weights_only=True`` by default).
            strict: overrides the checkpoint's ``strict``.

        Returns:
            A :class:`CheckpointLoadResult`.

        Raises:
            FileNotFoundError: when there is no checkpoint at ``path``.
            CheckpointError: for a damaged checkpoint, or (strict) a missing or incompatible
                component; the message names the component, the key and the fix.
        """
        strictness = self.strict if strict is None else strict
        self._check_strict(strictness)
        manifest, folder = self._read_manifest(path)
        requested = self._selection(components)
        saved = manifest["components"]
        options = dict(component_options or {})
        stray = set(options) - requested
        if stray:
            raise KeyError(f"component_options name components not being loaded: {sorted(stray)}")
        result = CheckpointLoadResult(
            missing=requested - set(saved),
            unrequested=set(saved) - requested,
            manifest=manifest,
            comparison=_compare_versions(manifest.get("versions")),
        )
        if result.comparison.get("version_skew"):
            skew = {k: v for k, v in result.comparison["versions"].items() if not v["matches"]}
            warnings.warn(f"checkpoint {path} was saved with other library versions: {skew}", stacklevel=2)
        for name in sorted(requested & set(saved)):
            adapter = self._adapter(name)
            record = saved[name]
            if (record["adapter"], record["adapter_version"]) != (adapter.adapter_id, adapter.format_version):
                result.incompatible[name] = (
                    f"saved by adapter {record['adapter']!r} v{record['adapter_version']}, this component uses "
                    f"{adapter.adapter_id!r} v{adapter.format_version}"
                )
        self._report(result, strictness, path)

        plans: dict[str, tuple[CheckpointAdapter, Callable[[], Any]]] = {}
        for name in sorted(requested & set(saved) - set(result.incompatible)):
            adapter = self._adapter(name)
            record = saved[name]
            merged = self._components[name].options.merged(options.get(name))
            try:
                _verify(folder, record, manifest["digests"])
                apply = adapter.prepare_load(
                    self._components[name].value,
                    folder / _plain_relative(record["path"], "component folder"),
                    map_location=map_location,
                    tensor_load_kwargs=tensor_load_kwargs or {},
                    args=merged.load_args or (),
                    kwargs=merged.load_kwargs or {},
                )
            except Exception as err:
                result.incompatible[name] = _reason(err)
                self._report(result, strictness, path)
                continue
            plans[name] = (adapter, apply)

        undo: list[Callable[[], None]] = []
        order = sorted(plans, key=lambda n: (plans[n][0].restored_in_place_last, n))
        for name in order:
            adapter, apply = plans[name]
            restore = adapter.snapshot(self._components[name].value) if strictness == "error" else None
            try:
                value = apply()
            except Exception as err:
                result.incompatible[name] = _reason(err)
                if strictness == "error":
                    if restore is not None:  # the failed restore may have changed part of it
                        try:
                            restore()
                        except Exception:  # it refuses its own state too: nothing more to do
                            pass
                    for earlier in reversed(undo):
                        earlier()
                    result.loaded.clear()
                    raise CheckpointError(
                        f"component {name!r} of checkpoint {path} could not be restored: {_reason(err)}; the "
                        "components restored before it were put back",
                        result,
                    ) from err
                self._report(result, strictness, path)
                continue
            if restore is not None:
                undo.append(restore)
            result.loaded.add(name)
            if value is not None:
                result.values[name] = value
        return result

    # ------------------------------------------------------------------------- checks
    @staticmethod
    def _report(result: CheckpointLoadResult, strictness: str, path: Any) -> None:
        if not result.missing and not result.incompatible:
            return
        parts = []
        if result.missing:
            parts.append(
                f"missing from the checkpoint: {sorted(result.missing)} (it holds "
                f"{sorted(result.manifest.get('components', {}))}; pass components=[...] to restore a subset)"
            )
        parts.extend(f"component {name!r}: {why}" for name, why in sorted(result.incompatible.items()))
        message = f"checkpoint {path}: " + "; ".join(parts)
        if strictness == "error":
            raise CheckpointError(message, result)
        if strictness == "warn":
            warnings.warn(message, stacklevel=3)

    @staticmethod
    def _check_format(format: str) -> None:
        if format == "archive":
            raise ValueError("tdrl writes checkpoints as folders only: use format='directory'")
        if format != "directory":
            raise ValueError(f"format must be 'directory', got {format!r}")

    @staticmethod
    def _check_strict(strict: str) -> None:
        if strict not in ("error", "warn", "ignore"):
            raise ValueError(f"strict must be 'error', 'warn' or 'ignore', got {strict!r}")


def _reason(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return f"{type(err).__name__}: {text}"


def _versions() -> dict[str, str]:
    return {"tdrl": tdrl_version, "tensordict": str(tensordict.__version__), "torch": str(torch.__version__)}


def _compare_versions(saved: Any) -> dict[str, Any]:
    if not isinstance(saved, dict):
        return {}
    versions = {
        name: {"checkpoint": saved[name], "runtime": running, "matches": saved[name] == running}
        for name, running in _versions().items()
        if isinstance(saved.get(name), str)
    }
    return {"versions": versions, "version_skew": any(not v["matches"] for v in versions.values())}


def _seal(folder: Path) -> dict[str, Any]:
    """Fsyncs every file and subfolder under ``folder``; returns ``{relative path: digest}``."""
    out: dict[str, FileDigest] = {}
    if not folder.is_dir():
        return out
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            file = Path(root) / name
            if file.is_symlink():
                raise CheckpointError(f"a component wrote the symlink {file}; checkpoints hold plain files only")
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            out[file.relative_to(folder).as_posix()] = file_digest(file)
        fsync_folder(root)
    return out


def _verify(folder: Path, record: Mapping[str, Any], digests: Mapping[str, Any]) -> None:
    """Checks a component's folder: exactly the files listed, none a symlink, each of its size and CRC-32."""
    home = Path(os.path.realpath(folder))
    base = _plain_relative(record["path"], "component folder")
    component = folder / base
    if component.is_symlink() or home not in Path(os.path.realpath(component)).parents:
        raise CheckpointError(f"component folder {component} is a symlink or lies outside the checkpoint; {_DAMAGED}")
    on_disk: set[str] = set()
    for root, dirs, files in os.walk(component):
        for name in dirs + files:
            if (Path(root) / name).is_symlink():
                raise CheckpointError(f"{Path(root) / name} is a symlink; checkpoints hold plain files only")
        on_disk.update((Path(root) / name).relative_to(component).as_posix() for name in files)
    unlisted = sorted(on_disk - set(record["files"]))
    if unlisted:
        raise CheckpointError(f"{component} holds files the manifest does not list: {unlisted[:5]}; {_DAMAGED}")
    for rel in record["files"]:
        file = folder / base / _plain_relative(rel, "file")
        real = Path(os.path.realpath(file))
        if home not in real.parents:
            raise CheckpointError(f"file {rel!r} resolves to {real}, outside the checkpoint; {_DAMAGED}")
        if not real.is_file():
            raise CheckpointError(f"file {file} is missing; {_DAMAGED}")
        expected = digests[f"{record['path']}/{rel}"]
        digest = file_digest(real)
        if not isinstance(expected, dict) or (digest.size, digest.crc32) != (
            expected.get("bytes"),
            expected.get("crc32"),
        ):
            raise CheckpointError(f"file {file} does not match its recorded size and checksum; {_DAMAGED}")
