"""How RayCollector's arguments become its actors: one collector spec and ``ray.remote`` options per actor.

Every check on the arguments runs here, before Ray is imported or any actor starts, and
names the argument, the value and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from tdrl.collectors.multi import MultiaSyncDataCollector, MultiSyncDataCollector
from tdrl.collectors.sync import DataCollectorBase, SyncDataCollector
from tdrl.envs.common import EnvBase
from tdrl.envs.utils import ExplorationType

__all__ = ["ActorPlan", "plan_actors", "per_collector", "buffer_client", "DEFAULT_REMOTE_CONFIG"]

DEFAULT_REMOTE_CONFIG: dict[str, Any] = {"num_cpus": 1}
"""``ray.remote`` options of each collector actor when ``remote_configs`` is not given: one CPU, no GPU."""

_CLASS_NAMES = {"single": SyncDataCollector, "sync": MultiSyncDataCollector, "async": MultiaSyncDataCollector}
_SET_HERE = ("create_env_fn", "policy", "policy_factory", "frames_per_batch", "total_frames", "postproc", "split_trajs")
_DEVICE_ARGS = ("device", "storing_device", "env_device", "policy_device")


def per_collector(value: Any, name: str, n: int) -> list:
    """One value per collector: a list of ``n``, or one value repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"RayCollector: {name} is a list of {len(value)} but there are {n} collectors "
                f"(num_collectors, or the length of create_env_fn): pass one per collector, or one for all."
            )
        return list(value)
    return [value] * n


@dataclass
class ActorPlan:
    """What each actor builds: ``collector_class(env_fns[i], policy, **collector_kwargs[i])``."""

    collector_class: type[DataCollectorBase]
    env_fns: list[Any]  # a factory, or a list of them for a multi-process collector
    policy_factories: list[Callable[[], Any] | None]
    collector_kwargs: list[dict[str, Any]]
    remote_configs: list[dict[str, Any]]


def plan_actors(
    create_env_fn: Any,
    policy: Any,
    policy_factory: Any,
    *,
    frames_per_batch: int,
    sync: bool,
    num_collectors: int | None,
    collector_class: Any,
    collector_kwargs: Any,
    num_workers_per_collector: int,
    remote_configs: Any,
    device_args: tuple[Any, Any, Any, Any],
    max_frames_per_traj: int | None,
    init_random_frames: int | None,
    reset_at_each_iter: bool,
    exploration_type: ExplorationType,
) -> ActorPlan:
    """Check RayCollector's arguments and spell out each actor (see :class:`RayCollector` for their meaning)."""
    if policy is not None and policy_factory is not None:
        raise ValueError("RayCollector: pass policy or policy_factory, not both (the factory builds the policy).")
    if isinstance(create_env_fn, (list, tuple)):
        n = len(create_env_fn)
        if num_collectors is not None and num_collectors != n:
            raise ValueError(f"RayCollector: num_collectors={num_collectors} but {n} create_env_fn were given.")
    else:
        n = 1 if num_collectors is None else num_collectors
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"RayCollector: needs at least one collector, got num_collectors={n!r}.")
    fns = per_collector(create_env_fn, "create_env_fn", n)
    for fn in fns:
        if isinstance(fn, EnvBase) or not callable(fn):
            raise TypeError(
                f"RayCollector: create_env_fn must be callables that build an env (each actor builds its own), "
                f"got a {type(fn).__name__}. Pass e.g. lambda: GymEnv('CartPole-v1')."
            )
    if isinstance(collector_class, str):
        if collector_class not in _CLASS_NAMES:
            raise ValueError(f"RayCollector: collector_class={collector_class!r}; use {sorted(_CLASS_NAMES)}.")
        collector_class = _CLASS_NAMES[collector_class]
    if not isinstance(collector_class, type) or not issubclass(collector_class, DataCollectorBase):
        raise TypeError(
            f"RayCollector: collector_class must be a tdrl collector class (SyncDataCollector, "
            f"MultiSyncDataCollector, MultiaSyncDataCollector), got {collector_class!r}."
        )
    multi = issubclass(collector_class, (MultiSyncDataCollector, MultiaSyncDataCollector))
    workers = num_workers_per_collector
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"RayCollector: num_workers_per_collector must be >= 1, got {workers!r}.")
    if num_workers_per_collector > 1 and not multi:
        raise ValueError(
            f"RayCollector: num_workers_per_collector={num_workers_per_collector} needs a multi-process "
            f"collector_class (MultiSyncDataCollector or MultiaSyncDataCollector), not {collector_class.__name__}."
        )
    if sync and frames_per_batch % n:
        lo = frames_per_batch - frames_per_batch % n
        raise ValueError(
            f"RayCollector: with sync=True, frames_per_batch={frames_per_batch} is split evenly over the "
            f"num_collectors={n} collectors, so it must be a multiple of {n}. Use {lo or n} or {lo + n}."
        )
    per_actor = frames_per_batch // n if sync else frames_per_batch
    if issubclass(collector_class, MultiSyncDataCollector) and per_actor % workers:
        raise ValueError(
            f"RayCollector: each collector collects {per_actor} frames per batch, which its MultiSyncDataCollector "
            f"splits over num_workers_per_collector={workers}: make frames_per_batch a multiple of "
            f"{workers * (n if sync else 1)}."
        )
    if isinstance(policy, nn.Module) and any(
        isinstance(p, nn.parameter.UninitializedParameter) for p in policy.parameters()
    ):
        raise ValueError(
            "RayCollector: the policy has uninitialized (lazy) parameters, which cannot be sent to the actors. "
            "Run it once first, e.g. policy(env.reset()), then build the collector."
        )
    kwargs_list = [dict(k or {}) for k in per_collector(collector_kwargs, "collector_kwargs", n)]
    for kwargs in kwargs_list:
        clash = [k for k in _SET_HERE if k in kwargs]
        if clash:
            raise ValueError(
                f"RayCollector: collector_kwargs sets {clash}, which RayCollector sets itself: pass them to "
                "RayCollector (frames_per_batch, total_frames and postproc apply to the batches it hands out)."
            )
    remote = [
        dict(DEFAULT_REMOTE_CONFIG if c is None else c) for c in per_collector(remote_configs, "remote_configs", n)
    ]
    factories = per_collector(policy_factory, "policy_factory", n)
    devices = {name: per_collector(value, name, n) for name, value in zip(_DEVICE_ARGS, device_args)}
    no_limit = max_frames_per_traj is None or max_frames_per_traj < 0
    random_frames = max(0, int(init_random_frames or 0))
    for i, kwargs in enumerate(kwargs_list):
        for name in _DEVICE_ARGS:
            if devices[name][i] is not None:
                kwargs[name] = devices[name][i]
        kwargs.update(
            frames_per_batch=per_actor,
            max_frames_per_traj=None if no_limit else max_frames_per_traj,
            init_random_frames=random_frames // n,
            reset_at_each_iter=reset_at_each_iter,
            exploration_type=exploration_type,
        )
    return ActorPlan(
        collector_class=collector_class,
        env_fns=[[fn] * workers if multi else fn for fn in fns],
        policy_factories=factories,
        collector_kwargs=kwargs_list,
        remote_configs=remote,
    )


def buffer_client(replay_buffer: Any, split_trajs: bool) -> Any:
    """The picklable client the actors write through, or None; refuses a buffer the actors cannot share."""
    if replay_buffer is None:
        return None
    from tdrl.data.replay_buffers.ray_buffer import RayReplayBufferClient

    if not isinstance(replay_buffer, RayReplayBufferClient):
        raise TypeError(
            f"RayCollector: replay_buffer must be a RayReplayBuffer (or its client()), got "
            f"{type(replay_buffer).__name__}. Each actor would write into its own copy of an in-process buffer; "
            "build the buffer with tdrl.data.RayReplayBuffer(...) so that every actor writes into the same one."
        )
    if split_trajs:
        raise ValueError(
            "RayCollector: split_trajs=True pads batches per trajectory, which a replay buffer would store as "
            "padding; leave split_trajs out with replay_buffer (sample trajectories with a SliceSampler)."
        )
    client = getattr(replay_buffer, "client", None)
    return client() if callable(client) else replay_buffer
