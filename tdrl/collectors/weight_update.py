"""Weight updaters: pluggable strategies a collector's ``update_policy_weights_`` delegates to (TorchRL's).

A collector built with ``weight_updater=`` hands every ``update_policy_weights_(weights,
worker_ids=...)`` call to it; without one, the collector's own mechanism runs (copying
the weights into its policy, or into the shared memory its workers load from).
TorchRL deprecates this interface in favour of weight-sync schemes; it is kept for the
programs that use it. Subclass :class:`WeightUpdaterBase` and implement
``_sync_weights_with_worker``.
"""

from __future__ import annotations

import abc
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

__all__ = [
    "MultiProcessedWeightUpdater",
    "VanillaWeightUpdater",
    "WeightUpdaterBase",
    "RayWeightUpdater",
    "RemoteModuleWeightUpdater",
]

WorkerIds = int | torch.device | list[int] | list[torch.device] | None


class WeightUpdaterBase(abc.ABC):
    """Sends new policy weights to where the policy runs (the local policy, or workers).

    :meth:`push_weights` (also ``__call__``) takes the weights (a module, a TensorDict or a
    ``state_dict``; ``None``: ask ``_get_server_weights``), maps them with
    ``_maybe_map_weights``, hands them to ``_sync_weights_with_worker`` for each
    worker of ``worker_ids`` (default :meth:`all_worker_ids`; ``None``: a single call with
    no worker), then runs the post-hooks. Subclassing it outside tdrl warns with a
    ``DeprecationWarning``, as TorchRL's does.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> class Recorder(WeightUpdaterBase):
        ...     def __init__(self):
        ...         self.received = []
        ...     def all_worker_ids(self):
        ...         return [0, 1]
        ...     def _sync_weights_with_worker(self, *, worker_id=None, server_weights):
        ...         self.received.append(worker_id)
        >>> updater = Recorder()
        >>> updater.register_post_hook(lambda: updater.received.append("done"))
        >>> updater(TensorDict({"w": torch.zeros(1)}))
        >>> updater.received
        [0, 1, 'done']
    """

    _collector_refs: list[weakref.ReferenceType] | None = None
    _post_hooks: list[Callable[[], Any]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__module__.startswith("tdrl."):
            warnings.warn(
                f"{cls.__name__} subclasses WeightUpdaterBase, which TorchRL deprecates in favour of weight-sync "
                "schemes; tdrl keeps it working.",
                DeprecationWarning,
                stacklevel=2,
            )

    @classmethod
    def from_policy(cls, policy: nn.Module) -> WeightUpdaterBase | None:
        """An updater built from ``policy``, or ``None`` when this class cannot build one."""
        return None

    # --- collectors ---------------------------------------------------------------------------
    def register_collector(self, collector: Any) -> None:
        """Remembers ``collector`` (by weak reference); collectors call it when given the updater."""
        if self._collector_refs is None:
            self._collector_refs = []
        self._collector_refs.append(weakref.ref(collector))

    @property
    def collector(self) -> Any | None:
        """The one registered collector (``None`` if none or gone).

        Raises:
            ValueError: several collectors are registered (read :attr:`collectors`).
        """
        refs = self._collector_refs or []
        if len(refs) > 1:
            raise ValueError(f"{type(self).__name__}: {len(refs)} collectors are registered; read .collectors.")
        return refs[0]() if refs else None

    @property
    def collectors(self) -> list[Any] | None:
        """The registered collectors (``None`` where one is gone), or ``None`` if none was registered."""
        if not self._collector_refs:
            return None
        return [ref() for ref in self._collector_refs]

    # --- hooks --------------------------------------------------------------------------------
    @property
    def post_hooks(self) -> list[Callable[[], Any]]:
        """The callables run, in order, after each push."""
        if self._post_hooks is None:
            self._post_hooks = []
        return self._post_hooks

    def register_post_hook(self, hook: Callable[[], Any]) -> None:
        """Runs ``hook()`` after every push."""
        self.post_hooks.append(hook)

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Setup a subclass may need once the collector exists (nothing by default)."""

    # --- pushing ------------------------------------------------------------------------------
    def _get_server_weights(self) -> Any:
        """The weights to push when none are given (``None`` by default)."""
        return None

    def _maybe_map_weights(self, server_weights: Any) -> Any:
        """The weights in the form the workers take: a module becomes its parameters' TensorDict."""
        if isinstance(server_weights, nn.Module):
            return TensorDict.from_module(server_weights).data
        if server_weights is None or isinstance(server_weights, (TensorDictBase, Mapping)):
            return server_weights
        raise TypeError(
            f"{type(self).__name__}: weights must be None, a module, a TensorDict or a state_dict, "
            f"got {type(server_weights).__name__}."
        )

    def all_worker_ids(self) -> list[int] | list[torch.device] | None:
        """Every worker to update (``None``: one call without a worker id)."""
        return None

    def _skip_update(self, worker_id: int | torch.device) -> bool:
        """Whether worker ``worker_id`` skips this push (never, by default)."""
        return False

    @abc.abstractmethod
    def _sync_weights_with_worker(self, *, worker_id: int | torch.device | None = None, server_weights: Any) -> None:
        """Sends ``server_weights`` to one worker (or to the only policy when ``worker_id`` is None)."""

    def push_weights(self, policy_or_weights: Any = None, worker_ids: WorkerIds = None) -> None:
        """Sends the weights to ``worker_ids`` (default: every worker), then runs the post-hooks."""
        weights = self._get_server_weights() if policy_or_weights is None else policy_or_weights
        weights = self._maybe_map_weights(weights)
        if isinstance(worker_ids, (int, torch.device)):
            worker_ids = [worker_ids]  # type: ignore[assignment]
        elif worker_ids is None:
            worker_ids = self.all_worker_ids()
        if worker_ids is None:
            self._sync_weights_with_worker(server_weights=weights)
        else:
            for worker in worker_ids:  # type: ignore[union-attr]
                if not self._skip_update(worker):
                    self._sync_weights_with_worker(worker_id=worker, server_weights=weights)
        for hook in self.post_hooks:
            hook()

    def __call__(self, policy_or_weights: Any = None, worker_ids: WorkerIds = None) -> None:
        self.push_weights(policy_or_weights=policy_or_weights, worker_ids=worker_ids)


def _copy_into(target: TensorDictBase, weights: Any) -> None:
    source = weights if isinstance(weights, TensorDictBase) else TensorDict(dict(weights)).unflatten_keys(".")
    with torch.no_grad():
        target.update_(source)


class VanillaWeightUpdater(WeightUpdaterBase):
    """Copies new weights in place into one local policy's parameters.

    Args:
        weight_getter: returns the weights to push when :meth:`push_weights` gets none.
        policy_weights: the policy's parameters as a TensorDict
            (``TensorDict.from_module(policy)``), updated in place.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> policy, trained = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
        >>> updater = VanillaWeightUpdater.from_policy(policy)
        >>> updater(trained)
        >>> torch.equal(policy.weight, trained.weight)
        True
    """

    def __init__(self, *, weight_getter: Callable[[], Any] | None = None, policy_weights: TensorDictBase) -> None:
        self.weight_getter = weight_getter
        self.policy_weights = policy_weights

    @classmethod
    def from_policy(cls, policy: nn.Module) -> VanillaWeightUpdater:
        """An updater writing into ``policy``'s parameters."""
        return cls(policy_weights=TensorDict.from_module(policy))

    def _get_server_weights(self) -> Any:
        return self.weight_getter() if self.weight_getter is not None else None

    def _sync_weights_with_worker(self, *, worker_id: int | torch.device | None = None, server_weights: Any) -> None:
        if server_weights is not None:
            _copy_into(self.policy_weights, server_weights)


class MultiProcessedWeightUpdater(WeightUpdaterBase):
    """Copies new weights in place into several policies' parameters, one per worker or device.

    Args:
        get_server_weights: returns the weights to push when :meth:`push_weights` gets none
            (``None``: the weights must be given).
        policy_weights: each worker's (or device's) parameters as a TensorDict, updated in
            place; the keys are the worker ids.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> trained = torch.nn.Linear(2, 1)
        >>> copies = {0: torch.nn.Linear(2, 1), 1: torch.nn.Linear(2, 1)}
        >>> updater = MultiProcessedWeightUpdater(
        ...     get_server_weights=lambda: TensorDict.from_module(trained),
        ...     policy_weights={i: TensorDict.from_module(m) for i, m in copies.items()})
        >>> updater()
        >>> all(torch.equal(m.bias, trained.bias) for m in copies.values())
        True
    """

    def __init__(
        self,
        *,
        get_server_weights: Callable[[], Any] | None,
        policy_weights: dict[Any, TensorDictBase],
    ) -> None:
        self.weights_getter = get_server_weights
        self._policy_weights = policy_weights

    def all_worker_ids(self) -> list[Any]:
        return list(self._policy_weights)

    def _get_server_weights(self) -> Any:
        weights = self.weights_getter() if self.weights_getter is not None else None
        return weights.data if isinstance(weights, TensorDictBase) else weights

    def _sync_weights_with_worker(self, *, worker_id: int | torch.device | None = None, server_weights: Any) -> None:
        if server_weights is None:
            return
        if worker_id not in self._policy_weights:
            raise KeyError(
                f"MultiProcessedWeightUpdater: no weights for worker {worker_id!r}; "
                f"workers are {list(self._policy_weights)}."
            )
        _copy_into(self._policy_weights[worker_id], server_weights)


class RemoteModuleWeightUpdater(WeightUpdaterBase):
    """For policies the collector cannot reach (built by a ``policy_factory`` in workers): weights must be given.

    A push with weights is accepted and does nothing here (the program moves the weights
    itself); a push without weights raises, so that a forgotten argument is not a silent
    no-op.

    Raises:
        RuntimeError: on a push without weights.

    Examples:
        >>> import torch
        >>> updater = RemoteModuleWeightUpdater()
        >>> updater(torch.nn.Linear(2, 1))  # accepted
        >>> updater()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        RuntimeError: RemoteModuleWeightUpdater: weights must be passed explicitly ...
    """

    def __init__(self) -> None:
        pass

    def _sync_weights_with_worker(self, *, worker_id: int | torch.device | None = None, server_weights: Any) -> None:
        if server_weights is None:
            raise RuntimeError(
                "RemoteModuleWeightUpdater: weights must be passed explicitly (the collector cannot reach the "
                "remote policies). Fix: call update_policy_weights_(weights)."
            )


class RayWeightUpdater(WeightUpdaterBase):
    """Pushes policy weights to remote collectors (Ray actors): one ``ray.put``, every actor loads that object.

    The actors are tdrl's :class:`~tdrl.collectors.distributed.RayCollector` actors
    (``collector.remote_collectors``, which load weights with ``load_weights``) or any actor
    with TorchRL's ``update_policy_weights_(policy_weights=...)``. The calls are not
    awaited: Ray runs them before the next call this process makes on each actor (e.g.
    its next batch).

    Args:
        policy_weights: the weights pushed when none are given, a TensorDict of parameters
            (``TensorDict.from_module(policy)``), read at each push.
        remote_collectors: the actor handles, one per worker (worker id = index).
        max_interval: push to a worker only on every ``max_interval + 1``-th call (0: every
            call), counting the calls since that worker's last push.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> weights = TensorDict.from_module(torch.nn.Linear(2, 1))
        >>> updater = RayWeightUpdater(weights, remote_collectors=[], max_interval=2)
        >>> updater.all_worker_ids(), updater.max_interval
        ([], 2)
    """

    def __init__(self, policy_weights: TensorDictBase, remote_collectors: list, max_interval: int = 0) -> None:
        self.policy_weights = policy_weights
        self.remote_collectors = remote_collectors
        self.max_interval = max(0, int(max_interval))
        self._batches_since_weight_update = [0] * len(remote_collectors)

    def all_worker_ids(self) -> list[int]:
        return list(range(len(self.remote_collectors)))

    def _get_server_weights(self) -> Any:
        return self.policy_weights

    def _maybe_map_weights(self, server_weights: Any) -> Any:
        from tdrl._ray import import_ray
        from tdrl._ray_transport import pack

        ray = import_ray("RayWeightUpdater")
        if isinstance(server_weights, ray.ObjectRef):
            return server_weights
        weights = super()._maybe_map_weights(server_weights)
        if isinstance(weights, TensorDictBase):
            weights = weights.data.to("cpu")
        return ray.put(pack(weights))  # flat arrays, as RayCollector's own pushes

    def _sync_weights_with_worker(self, *, worker_id: int | torch.device | None = None, server_weights: Any) -> None:
        if not isinstance(worker_id, int) or not 0 <= worker_id < len(self.remote_collectors):
            raise IndexError(
                f"RayWeightUpdater: worker {worker_id!r} is not one of the {len(self.remote_collectors)} remote "
                "collectors (ids 0..n-1)."
            )
        actor = self.remote_collectors[worker_id]
        if _has_method(actor, "load_weights"):
            actor.load_weights.remote(server_weights)
        else:
            actor.update_policy_weights_.remote(policy_weights=server_weights)
        self._batches_since_weight_update[worker_id] = 0

    def _skip_update(self, worker_id: int | torch.device) -> bool:
        index = int(worker_id)  # type: ignore[arg-type]
        self._batches_since_weight_update[index] += 1
        return self._batches_since_weight_update[index] <= self.max_interval


def _has_method(actor: Any, name: str) -> bool:
    try:
        getattr(actor, name)
    except AttributeError:
        return False
    return True
