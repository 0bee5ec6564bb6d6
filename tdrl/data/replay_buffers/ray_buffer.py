"""A replay buffer served by a Ray actor: many writers (collectors on other nodes) and a learner.

- :class:`RayReplayBuffer`: starts the actor (and Ray, when no runtime is running), reads,
  writes, saves and closes it.
- :class:`RayReplayBufferClient`: a picklable handle to the same actor, for writers in other
  Ray actors or processes; it reads and writes but cannot close the buffer.

The actor holds an ordinary tdrl buffer (``replay_buffer_cls``, built in the actor from the
same storages, samplers and writers as a local one) and runs one call at a time, so that
concurrent writers never interleave inside a write. TensorDicts travel as flat dicts of
numpy arrays (see ``tdrl._ray_transport``); samples come back on CPU.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from tdrl._ray import acquire_runtime, call, import_ray, release_runtime, wait
from tdrl._ray_transport import pack, unpack
from tdrl.data.replay_buffers.replay_buffers import ReplayBuffer, TensorDictReplayBuffer
from tdrl.data.replay_buffers.samplers import Sampler
from tdrl.data.replay_buffers.storages import Storage
from tdrl.data.replay_buffers.writers import Writer

__all__ = ["RayReplayBuffer", "RayReplayBufferClient"]

DEFAULT_RAY_INIT_CONFIG: dict[str, Any] = {"include_dashboard": False}
"""``ray.init`` arguments used when no Ray runtime is running (``ray_init_config`` updates them)."""
DEFAULT_REMOTE_CONFIG: dict[str, Any] = {"num_cpus": 1, "num_gpus": 0}
"""Resources of the buffer's actor (``remote_config`` updates them): one CPU, no GPU."""

_COMPONENTS = {"storage": Storage, "sampler": Sampler, "writer": Writer}
_CLOSED = "this RayReplayBuffer is closed: its actor was killed and its content is gone; create a new one"


def _build(name: str, value: Any) -> Any:
    """A storage / sampler / writer given as an instance or as a constructor (``partial(LazyTensorStorage, n)``)."""
    kind = _COMPONENTS[name]
    if value is None or isinstance(value, kind):
        return value
    if not callable(value):
        raise TypeError(f"{name} must be a {kind.__name__} or a constructor of one, got {type(value).__name__}")
    built = value()
    if not isinstance(built, kind):
        raise TypeError(
            f"{name}={value!r} built a {type(built).__name__}, not a {kind.__name__}; pass e.g. "
            f"{name}=functools.partial(LazyTensorStorage, 1000)"
        )
    return built


_DEATH_WAIT_S = 30.0


def _wait_for_death(ray: Any, actor: Any, limit: float) -> None:
    """Returns once ``actor`` answers as dead (``ray.kill`` only asks for it), or after ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            ray.get(actor.length.remote(), timeout=1.0)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            continue
        except Exception:  # e.g. an error of the half-built buffer: ask again
            pass
        time.sleep(0.02)


class _BufferHost:
    """The body of the actor: one tdrl replay buffer and the calls the clients make on it.

    A construction error is kept and raised by :meth:`describe`, so that it reaches the caller
    as the original exception rather than as a dead actor.
    """

    def __init__(
        self, replay_buffer_cls: type, kwargs: dict[str, Any], transform_factory: Any, seed: int | None
    ) -> None:
        self.error: BaseException | None = None
        try:
            if seed is not None:
                torch.manual_seed(seed)
            kwargs = {name: _build(name, value) if name in _COMPONENTS else value for name, value in kwargs.items()}
            if transform_factory is not None:
                kwargs["transform"] = transform_factory()
            self.buffer = replay_buffer_cls(**kwargs)
        except Exception as err:  # raised again by describe(), in the caller
            self.error = err

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        buffer = self.buffer
        return {
            "batch_size": buffer.batch_size,
            "priority_key": getattr(buffer, "priority_key", None),
            "tensordict": isinstance(buffer, TensorDictReplayBuffer),
            "pid": os.getpid(),
        }

    def extend(self, data: Any, kwargs: dict[str, Any]) -> Any:
        return self.buffer.extend(unpack(data, writable=False), **kwargs)

    def add(self, data: Any) -> Any:
        return self.buffer.add(unpack(data))

    def sample(self, batch_size: int | None, return_info: bool) -> tuple[Any, Any, bool]:
        data, info = self.buffer.sample(batch_size, return_info=True)
        return pack(data), info if return_info else None, self.buffer._last_ran_out

    def update_priority(self, index: Any, priority: Any) -> None:
        self.buffer.update_priority(unpack(index), priority)

    def update_tensordict_priority(self, data: Any) -> None:
        self.buffer.update_tensordict_priority(unpack(data))

    def getitem(self, index: Any) -> Any:
        return pack(self.buffer[index])

    def length(self) -> int:
        return len(self.buffer) if self.error is None else 0

    def write_count(self) -> int:
        return self.buffer.write_count

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The buffer's own methods that need no conversion (state, persistence, transforms)."""
        result = getattr(self.buffer, method)(*args, **kwargs)
        return None if result is self.buffer else result


class RayReplayBufferClient:
    """A picklable handle on a :class:`RayReplayBuffer`'s actor: extend, add, sample, update priorities.

    Get one from :meth:`RayReplayBuffer.client` and hand it to writers in other Ray actors or
    processes of the same cluster (it pickles as the actor's handle). It cannot close the
    buffer; when the owner closes it, calls raise :class:`RuntimeError`.

    Every call waits at most ``timeout`` seconds for the actor; errors raised by the buffer
    (a key missing from the data, a bad shape) come out as the buffer raised them.

    See the example of :class:`RayReplayBuffer`.
    """

    def __init__(self, actor: Any, description: dict[str, Any], timeout: float | None) -> None:
        self._actor = actor
        self._description = description
        self.timeout = timeout

    def __reduce__(self) -> tuple[Any, ...]:
        return RayReplayBufferClient, (self._actor, self._description, self.timeout)

    def _remote(self, method: str, *args: Any) -> Any:
        return call(self._actor, method, args, self.timeout, f"RayReplayBuffer.{method}")

    @property
    def batch_size(self) -> int | None:
        """The buffer's default :meth:`sample` batch size."""
        return self._description["batch_size"]

    @property
    def write_count(self) -> int:
        """Items written since creation (or the last ``empty()``), by every writer."""
        return self._remote("write_count")

    def __len__(self) -> int:
        return self._remote("length")

    def extend(self, data: Any, **kwargs: Any) -> Any:
        """Writes a batch and returns the positions it took (as the local buffer's ``extend``).

        A TensorDict is sent as a flat dict of CPU arrays; unlike a local
        :class:`~tdrl.data.replay_buffers.TensorDictReplayBuffer`, ``data`` itself is not
        changed (no ``"index"`` entry is written into it).
        """
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu()
        return self._remote("extend", pack(data), kwargs)

    def add(self, data: Any) -> Any:
        """Writes one item; returns its position."""
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu()
        return self._remote("add", pack(data))

    def sample(self, batch_size: int | None = None, return_info: bool = False) -> Any:
        """A batch drawn by the actor's sampler, on CPU (see :meth:`ReplayBuffer.sample`)."""
        data, info, _ = self._sample(batch_size, return_info)
        return (data, info) if return_info else data

    def _sample(self, batch_size: int | None, return_info: bool) -> tuple[Any, Any, bool]:
        data, info, ran_out = self._remote("sample", batch_size, return_info)
        return unpack(data), info, ran_out

    def update_priority(self, index: Any, priority: Any = None) -> None:
        """Sets priorities: ``update_priority(index, priority)``, or ``update_priority(td)`` on a
        TensorDict buffer (as :meth:`update_tensordict_priority`)."""
        if isinstance(index, TensorDictBase) and priority is None:
            self.update_tensordict_priority(index)
            return
        index, priority = (torch.as_tensor(x).detach().cpu() if x is not None else x for x in (index, priority))
        self._remote("update_priority", index, priority)

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        """Updates priorities from a sampled batch's ``"index"`` and priority entries.

        Only those two entries travel to the actor, not the whole batch.
        """
        key: NestedKey | None = self._description["priority_key"]
        if isinstance(data, TensorDictBase) and key is not None:
            data = data.select("index", key, strict=False)
        self._remote("update_tensordict_priority", pack(data))


class RayReplayBuffer(RayReplayBufferClient):
    """A replay buffer held by a Ray actor: written by many collectors, sampled by a learner.

    The actor builds ``replay_buffer_cls(**kwargs)`` itself. Pass the storage, sampler and
    writer as constructors (``storage=partial(LazyTensorStorage, 100_000)``; instances are
    accepted too and are pickled to the actor), and a transform as ``transform_factory``.
    Every method of a local buffer that reads or writes data is here with the same
    arguments; :meth:`client` gives writers in other processes a handle without the right
    to close the buffer.

    Ray is started with ``ray_init_config`` when no runtime is running in this process (and
    shut down by :meth:`close`); a running one, or the cluster at ``address``, is used as it is.

    Args:
        replay_buffer_cls: the buffer the actor holds, e.g.
            :class:`~tdrl.data.replay_buffers.TensorDictReplayBuffer` or
            :class:`~tdrl.data.replay_buffers.TensorDictPrioritizedReplayBuffer`.
        ray_init_config: ``ray.init`` arguments when Ray is started here (updates
            ``DEFAULT_RAY_INIT_CONFIG``).
        remote_config: the actor's options (``num_cpus``, ``num_gpus``, ``memory``, ``name``
            to find it with ``ray.get_actor``...; updates :data:`DEFAULT_REMOTE_CONFIG`: one
            CPU, no GPU).
        address: the cluster to connect to (``"auto"``: the one ``ray start`` runs on this
            machine); shorthand for ``ray_init_config={"address": ...}``.
        transform_factory: called in the actor to build the transform applied to samples.
        seed: seeds torch's generator in the actor before the buffer is built, so that its
            samples are those of a local buffer built after ``torch.manual_seed(seed)``.
        timeout: seconds any call waits for the actor (``None``: forever). Start-up may
            take as long again.
        **kwargs: the arguments of ``replay_buffer_cls`` (``storage``, ``sampler``,
            ``writer``, ``batch_size``, ``alpha``/``beta``, ``priority_key``...).

    Raises:
        ImportError: when Ray is not installed (``pip install "tdrl[ray]"``).
        TimeoutError: when the cluster cannot start the actor in time (e.g. it lacks the
            resources of ``remote_config``).

    Examples:
        >>> import pytest
        >>> ray = pytest.importorskip("ray")
        >>> from functools import partial
        >>> from tensordict import TensorDict
        >>> from tdrl.data import LazyTensorStorage, RayReplayBuffer, TensorDictReplayBuffer
        >>> rb = RayReplayBuffer(
        ...     replay_buffer_cls=TensorDictReplayBuffer,
        ...     storage=partial(LazyTensorStorage, 100),
        ...     batch_size=4,
        ...     address="local",  # starts a Ray runtime here, shut down by close()
        ...     ray_init_config={"num_cpus": 1},
        ... )
        >>> rb.extend(TensorDict({"obs": torch.arange(8.0)}, [8])).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7]
        >>> batch = rb.sample()
        >>> batch.batch_size, sorted(batch.keys())
        (torch.Size([4]), ['index', 'obs'])
        >>> writer = rb.client()  # picklable: give it to a collector in another Ray actor
        >>> writer.extend(TensorDict({"obs": torch.zeros(2)}, [2])).tolist(), len(rb)
        ([8, 9], 10)
        >>> rb.close()
    """

    def __init__(
        self,
        *,
        replay_buffer_cls: type[ReplayBuffer] = ReplayBuffer,
        ray_init_config: dict[str, Any] | None = None,
        remote_config: dict[str, Any] | None = None,
        address: str | None = None,
        transform_factory: Callable[[], Callable[[Any], Any]] | None = None,
        seed: int | None = None,
        timeout: float | None = 120.0,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(replay_buffer_cls, type) and issubclass(replay_buffer_cls, ReplayBuffer)):
            raise TypeError(
                f"replay_buffer_cls must be a tdrl ReplayBuffer class (e.g. TensorDictReplayBuffer), "
                f"got {replay_buffer_cls!r}"
            )
        if transform_factory is not None and kwargs.get("transform") is not None:
            raise TypeError("transform and transform_factory exclude each other: pass one of them")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        ray = import_ray("RayReplayBuffer")
        init_config = {**DEFAULT_RAY_INIT_CONFIG, **(ray_init_config or {})}
        if address is not None:
            init_config["address"] = address
        self._owns_runtime = acquire_runtime(init_config)
        self._closed = False
        try:
            options = {**DEFAULT_REMOTE_CONFIG, **(remote_config or {})}
            actor = (
                ray.remote(_BufferHost).options(**options).remote(replay_buffer_cls, kwargs, transform_factory, seed)
            )
            self._actor = actor
            try:
                description = wait(actor.describe.remote(), timeout, "RayReplayBuffer: starting the actor")
            except TimeoutError as err:
                raise TimeoutError(
                    f"{err}. The actor asks for {options}; the cluster has {ray.available_resources()} free"
                ) from None
        except BaseException:
            self._kill()
            raise
        super().__init__(actor, description, timeout)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            "a RayReplayBuffer owns its actor and does not pickle; send rb.client() to other processes instead"
        )

    def _remote(self, method: str, *args: Any) -> Any:
        if self._closed:
            raise RuntimeError(_CLOSED)
        return super()._remote(method, *args)

    # ------------------------------------------------------------------ clients
    def client(self) -> RayReplayBufferClient:
        """A picklable handle for a writer or a sampler in another process (no right to close)."""
        if self._closed:
            raise RuntimeError(_CLOSED)
        return RayReplayBufferClient(self._actor, self._description, self.timeout)

    def clients(self, num_clients: int) -> list[RayReplayBufferClient]:
        """``num_clients`` handles from :meth:`client`, e.g. one per collector."""
        if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
            raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}")
        return [self.client() for _ in range(num_clients)]

    # ------------------------------------------------------------------ the rest of a buffer
    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise RuntimeError(_CLOSED)
        return call(self._actor, "call", (method, args, kwargs), self.timeout, f"RayReplayBuffer.{method}")

    def __iter__(self) -> Iterator[Any]:
        """Batches of ``batch_size`` until the sampler's epoch ends (see :meth:`ReplayBuffer.__iter__`)."""
        if self.batch_size is None:
            raise ValueError("iterating needs a batch_size: pass batch_size= to the constructor")
        while True:
            data, _, ran_out = self._sample(None, False)
            yield data
            if ran_out:
                return

    def __getitem__(self, index: Any) -> Any:
        """The stored item(s) at ``index`` (copies, on CPU)."""
        return unpack(self._remote("getitem", index))

    def empty(self) -> None:
        """Forgets every item (see :meth:`ReplayBuffer.empty`)."""
        self._call("empty")

    def append_transform(self, transform: Callable[[Any], Any], *, invert: bool = False) -> RayReplayBuffer:
        """Sends ``transform`` (pickled) to the actor, to run after the others on samples."""
        self._call("append_transform", transform, invert=invert)
        return self

    def insert_transform(self, index: int, transform: Callable[[Any], Any], *, invert: bool = False) -> RayReplayBuffer:
        """Sends ``transform`` (pickled) to the actor, at position ``index`` of its chain."""
        self._call("insert_transform", index, transform, invert=invert)
        return self

    def state_dict(self) -> dict[str, Any]:
        """The actor's buffer state (see :meth:`ReplayBuffer.state_dict`), copied here."""
        return self._call("state_dict")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` in the actor; checked whole before anything changes."""
        self._call("load_state_dict", state)

    def dumps(self, path: str | os.PathLike) -> None:
        """Saves the buffer under ``path`` (see :meth:`ReplayBuffer.dumps`), written by the actor:
        ``path`` is a folder on the actor's node (a shared file system on a cluster)."""
        self._call("dumps", os.fspath(path))

    def loads(self, path: str | os.PathLike) -> None:
        """Restores what :meth:`dumps` wrote, read by the actor from its node."""
        self._call("loads", os.fspath(path))

    # ------------------------------------------------------------------ lifecycle
    def _kill(self) -> None:
        actor = getattr(self, "_actor", None)
        self._closed = True
        try:
            if actor is not None:
                import ray

                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # already dead, or Ray already shut down
                    pass
                else:
                    _wait_for_death(ray, actor, _DEATH_WAIT_S)
        finally:
            release_runtime(self._owns_runtime)
            self._owns_runtime = False

    def close(self) -> None:
        """Kills the actor (the content is lost; clients raise from then on) and shuts down
        Ray if this object started it. Returns once the actor is dead (at most 30 s); closing
        twice does nothing."""
        if not self._closed:
            self._kill()

    def shutdown(self) -> None:
        """Same as :meth:`close`."""
        self.close()

    def __enter__(self) -> RayReplayBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"batch_size={self.batch_size}"
        return f"RayReplayBuffer({state})"
