"""RayCollector's actors seen from the driver: building them, asking them, rebuilding the ones that die.

:class:`ActorPool` holds one Ray actor (a :class:`~tdrl.collectors.distributed._actor.CollectorWorker`)
per collector, the request each has in flight, and what a rebuilt actor must be given again:
the newest weights pushed, a seed of its own, and a new base for its trajectory ids. It knows
nothing of frame budgets or batch schedules, which :class:`~tdrl.collectors.distributed.RayCollector`
decides.

The fault policy lives here:

- an exception raised by the user's code in an actor (:func:`is_user_error`) is raised at once,
  not retried (it would raise again), after the collector was closed;
- an actor that dies (a crash, a kill, a lost node or object) is killed and built again, up
  to ``max_restarts`` times per collector; the request it owed is asked of the new actor;
  beyond that the collector is closed and ``RuntimeError`` names the collector and the cause;
- every wait has a ``timeout``; a ``TimeoutError`` leaves the requests in flight.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, cast

from tensordict import TensorDictBase

__all__ = ["ActorPool", "check_resources", "is_user_error", "summary"]

TRAJ = ("collector", "traj_ids")
RESOURCE_GRACE_S = 10.0  # how long a new collector waits for resources that killed actors still hold
RESEED_STRIDE = 1_000_003  # a restarted actor's seed: its collector's seed + generation * stride


def summary(err: BaseException) -> str:
    """One line for a Ray error: the raised exception for a task error, the first line for a death.

    Examples:
        >>> summary(ValueError("bad action\\n  shape (3,)"))
        'ValueError: bad action'
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    cause = getattr(err, "cause", None)
    return f"{type(err).__name__}: {lines[-1] if isinstance(cause, BaseException) else lines[0]}"


def is_user_error(ray: ModuleType, err: BaseException | None) -> bool:
    """Whether ``err`` is an exception the user's code raised in an actor (deterministic: not retried).

    A dead actor, a lost node or object, an out-of-memory kill: Ray's own errors, worth a new actor.
    A task error whose cause is one of those (the actor's code waited on a lost object) is too.
    """
    if not isinstance(err, ray.exceptions.RayTaskError):
        return False
    return not isinstance(getattr(err, "cause", None), ray.exceptions.RayError)


def check_resources(ray: ModuleType, remote_configs: Sequence[dict[str, Any]], timeout: float, strict: bool) -> None:
    """Check that the cluster has the CPUs and GPUs ``remote_configs`` ask for, in all.

    Waits a little (at most ``RESOURCE_GRACE_S``) for actors killed just before to give theirs
    back. Short: ``ValueError`` if ``strict`` (a local cluster the collector started, which
    will not grow), else a warning (the actors wait for the resources, up to ``timeout``).
    """
    needs = {
        key: sum(float(config.get(option) or 0) for config in remote_configs)
        for key, option in (("CPU", "num_cpus"), ("GPU", "num_gpus"))
    }
    # what other actors (a RayReplayBuffer...) hold is not free; actors killed just before
    # (a previous collector's shutdown) give theirs back within moments, so wait a little
    deadline = time.monotonic() + min(timeout, RESOURCE_GRACE_S)
    free = ray.available_resources()
    while any(needs[key] > free.get(key, 0.0) for key in needs) and time.monotonic() < deadline:
        time.sleep(0.2)
        free = ray.available_resources()
    for key, option in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        need = needs[key]
        if need > free.get(key, 0.0):
            msg = (
                f"RayCollector: the {len(remote_configs)} collectors ask for {need:g} {key}s in all "
                f"(remote_configs {option}) but the Ray cluster has {free.get(key, 0.0):g} free. Ask for less "
                f"per collector (fractions such as {option}=0.5 are allowed), use fewer collectors, free what "
                f"other actors hold (e.g. RayReplayBuffer(remote_config={{'{option}': 0}})), or give the "
                f"cluster more (ray_init_config={{'{option}': ...}} for a local one)."
            )
            if strict:
                raise ValueError(msg)
            warnings.warn(msg + " The actors wait for the resources (up to timeout).", stacklevel=3)


class ActorPool:
    """One Ray actor per collector, rebuilt when it dies, and the requests in flight.

    Args:
        ray: the ``ray`` module (initialized).
        remote_configs: each actor's ``ray.remote`` options.
        name: the actors' name prefix (actor ``i`` of generation ``g`` is ``f"{name}-{i}.{g}"``).
        timeout: seconds each wait may take before ``TimeoutError``.
        max_restarts: rebuilds allowed per collector before ``RuntimeError``.
        close: called with the reason before a fatal error is raised; it must kill the actors
            (:meth:`kill_all`) and refuse further use of the collector.

    Nothing starts before :meth:`start`.
    """

    def __init__(
        self,
        ray: ModuleType,
        remote_configs: list[dict[str, Any]],
        *,
        name: str,
        timeout: float,
        max_restarts: int,
        close: Callable[[str], None],
    ) -> None:
        n = self.num_collectors = len(remote_configs)
        self.ray = ray
        self.remote_configs = remote_configs
        self.name = name
        self.timeout = timeout
        self.max_restarts = max_restarts
        self._close = close
        self.actor_class: Any = None
        self.specs: list[tuple] = []
        self.actors: list[Any] = []
        self.pending: dict[int, Any] = {}  # collector -> its collect request in flight
        self.acks: dict[int, list] = {}  # collector -> weight loads it had not done when they were sent
        self.weights_ref: Any = None  # the newest weights pushed to all collectors (given to a rebuilt actor)
        self.restarts = [0] * n
        self.generation = [0] * n
        self.seeds: list[int | None] = [None] * n
        self.id_base = [0] * n  # added to a collector's trajectory ids (moved on when its actor is rebuilt)
        self.next_id = [0] * n  # the first (shifted) id the collector has not handed out

    def start(self, actor_class: Any, specs: list[tuple]) -> None:
        """Build every actor (``actor_class.remote(*specs[i])``) and wait until each is ready."""
        self.actor_class = actor_class
        self.specs = specs
        self.actors = [self._create(i) for i in range(self.num_collectors)]
        for i in range(self.num_collectors):
            self._ready(i)

    def _create(self, i: int) -> Any:
        options = dict(self.remote_configs[i], name=f"{self.name}-{i}.{self.generation[i]}", max_restarts=0)
        return self.actor_class.options(**options).remote(*self.specs[i])

    def _ready(self, i: int) -> None:
        """Wait for actor ``i`` to be built; RuntimeError if it failed, TimeoutError if it did not start."""
        ray = self.ray
        try:
            ray.get(self.actors[i].ready.remote(), timeout=self.timeout)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"RayCollector: collector {i}'s actor did not start within timeout={self.timeout:g}s; the cluster "
                f"may lack the resources it asks for (remote_configs {self.remote_configs[i]})."
            ) from None
        except ray.exceptions.RayError as err:
            raise RuntimeError(f"RayCollector: collector {i}'s actor could not be built: {summary(err)}") from err

    def restart(self, i: int, err: BaseException) -> None:
        """Rebuild collector ``i``'s actor after ``err``; give it the newest weights and ask again what it owed."""
        ray = self.ray
        while True:
            self.restarts[i] += 1
            if self.restarts[i] > self.max_restarts:
                msg = (
                    f"RayCollector: collector {i} failed {self.restarts[i]} times (max_restarts={self.max_restarts}); "
                    f"last failure: {summary(err)}"
                )
                self._close(msg)
                raise RuntimeError(msg) from err
            try:
                ray.kill(self.actors[i], no_restart=True)
            except Exception:
                pass
            self.generation[i] += 1
            self.actors[i] = self._create(i)
            try:
                self._ready(i)
                break
            except RuntimeError as failed:
                if is_user_error(ray, failed.__cause__):  # the rebuilt actor's create_env_fn raised: it would again
                    self.raise_user_error(i, cast(BaseException, failed.__cause__))
                err = failed
        self.acks.pop(i, None)
        self.id_base[i] = self.next_id[i]  # the new actor numbers its trajectories from 0 again
        actor = self.actors[i]
        if self.weights_ref is not None:
            self.acks[i] = [actor.load_weights.remote(self.weights_ref)]
        seed = self.seeds[i]
        if seed is not None:
            actor.set_seed.remote(seed + RESEED_STRIDE * self.generation[i])
        if i in self.pending:
            self.pending[i] = self.ask(i)

    def raise_user_error(self, i: int, err: BaseException) -> None:
        """Close the collector and raise ``err``, which the user's code raised in collector ``i``'s actor.

        Raised as Ray gives it: an instance of the remote exception's class too, with the
        remote traceback in its message; a note names the collector.
        """
        reason = summary(err)
        self._close(f"RayCollector was shut down after collector {i}'s env or policy raised: {reason}")
        if hasattr(err, "add_note"):  # Python >= 3.11
            err.add_note(
                f"RayCollector: raised by collector {i}'s env or policy code in its actor; not retried "
                "(max_restarts is for dead actors and lost nodes). The collector was shut down."
            )
        raise err

    # --- batches ------------------------------------------------------------------------------
    def ask(self, i: int) -> Any:
        """Ask collector ``i`` for its next batch (the request's object ref)."""
        return self.actors[i].collect.remote(self.id_base[i])

    def wait_one(self) -> int:
        """The collector whose pending request finished first (TimeoutError after ``timeout`` seconds)."""
        by_ref = {ref: i for i, ref in self.pending.items()}
        ready, _ = self.ray.wait(list(by_ref), num_returns=1, timeout=self.timeout)
        if not ready:
            raise TimeoutError(
                f"RayCollector: no batch from collectors {sorted(self.pending)} within timeout={self.timeout:g}s. "
                "The requests stay in flight: the next next() waits for them again."
            )
        return by_ref[ready[0]]

    def take(self, i: int) -> Any:
        """Collector ``i``'s finished batch (ids made unique), or None if it failed and was asked again.

        Actor ``i``'s trajectory id ``k`` becomes ``(k + id_base[i]) * num_collectors + i``. With a
        replay buffer, the actor wrote the batch itself and this is its summary
        (``{"frames": n, "next_id": k}``).
        """
        ray = self.ray
        try:
            batch = ray.get(self.pending[i], timeout=self.timeout)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"RayCollector: collector {i}'s batch was unreadable for {self.timeout:g}s.") from None
        except ray.exceptions.RayError as err:
            if is_user_error(ray, err):
                self.raise_user_error(i, err)
            self.restart(i, err)
            return None
        del self.pending[i]
        for ack in self.acks.pop(i, []):  # loaded before that batch: a failed load raises here
            ray.get(ack, timeout=self.timeout)
        if isinstance(batch, dict):  # written into the replay buffer by the actor
            self.next_id[i] = max(self.next_id[i], batch["next_id"])
            return batch
        ids = batch.get(TRAJ, None)
        if ids is not None:
            ids = ids + self.id_base[i]
            if ids.numel():
                self.next_id[i] = max(self.next_id[i], int(ids.max()) + 1)
            batch.set(TRAJ, ids * self.num_collectors + i)
        return cast(TensorDictBase, batch)

    def drain(self) -> None:
        """Wait for the batches in flight and drop them (before a reset or a state load)."""
        ray = self.ray
        while self.pending:
            i = self.wait_one()
            ref = self.pending.pop(i)
            try:
                ray.get(ref, timeout=self.timeout)
            except ray.exceptions.RayError as err:
                if is_user_error(ray, err):
                    self.raise_user_error(i, err)
                self.restart(i, err)

    # --- control ------------------------------------------------------------------------------
    def call(self, i: int, method: str, *args: Any) -> Any:
        """Call ``method`` on collector ``i``'s actor and wait (rebuilding it once if it died)."""
        ray = self.ray
        for attempt in range(2):
            try:
                return ray.get(getattr(self.actors[i], method).remote(*args), timeout=self.timeout)
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"RayCollector: collector {i} gave no {method} in {self.timeout:g}s.") from None
            except ray.exceptions.RayActorError as err:
                if attempt:
                    raise
                self.restart(i, err)
        return None  # pragma: no cover - the loop returns or raises

    def send_weights(self, payload: Any, ids: Sequence[int]) -> list[tuple[int, Any]]:
        """One ``ray.put`` of ``payload``, loaded by every actor in ``ids``; the idle ones' pending loads.

        A busy actor (a batch in flight) loads the weights before its next batch; :meth:`take`
        waits for that load. A rebuilt actor loads the newest weights sent before anything else.
        """
        ref = self.weights_ref = self.ray.put(payload)
        idle = []
        for i in ids:
            ack = self.actors[i].load_weights.remote(ref)
            if i in self.pending:
                self.acks.setdefault(i, []).append(ack)
            else:
                idle.append((i, ack))
        return idle

    def wait_loaded(self, idle: list[tuple[int, Any]]) -> None:
        """Wait for the loads :meth:`send_weights` returned (a dead actor is rebuilt, and loads them first)."""
        ray = self.ray
        for i, ack in idle:
            try:
                ray.get(ack, timeout=self.timeout)
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"RayCollector: collector {i} did not load weights in {self.timeout:g}s.") from None
            except ray.exceptions.RayActorError as err:
                self.restart(i, err)  # the rebuilt actor loads them first

    def kill_all(self) -> None:
        """Kill every actor and forget the requests in flight (idempotent)."""
        ray = self.ray
        actors, self.actors = list(self.actors), []
        if ray.is_initialized():
            for actor in actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
        self.pending.clear()
        self.acks.clear()
