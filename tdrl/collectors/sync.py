"""SyncDataCollector: run a policy in an env and hand out batches of a fixed number of frames.

A batch of ``frames_per_batch`` frames from an env of batch size ``B`` has shape
``[*B, T]`` with ``T = frames_per_batch / B.numel()``: one tensor per key, time last.
It holds the root entries of each step (observation, done flags, the action and every
other output of the policy, e.g. ``"sample_log_prob"``), the step's results under
``"next"``, and ``("collector", "traj_ids")``.

How a step is run (chosen once, when the first step is validated):

- the policy reads the current root and writes the action;
- the env steps: through a backend's fast path when it has one (see
  :mod:`tdrl.collectors._fast`), else through ``env._step`` directly (``env.step``'s
  checks ran once, on the first step), else through ``env.step_and_maybe_reset`` for
  envs that reset inside their step (:class:`~tdrl.envs.SerialEnv`, :class:`~tdrl.envs.ParallelEnv`);
- each entry of the step is kept by reference and the batch is stacked once, at its
  end (one ``torch.stack`` per key): nothing is copied per step;
- finished episodes are reset, and whatever the policy carries under ``"next"``
  (a recurrent state) is zeroed for the envs that were reset.

Examples:
    >>> from tdrl.testing import CountingEnv
    >>> collector = SyncDataCollector(CountingEnv(max_steps=3), None, frames_per_batch=4, total_frames=8)
    >>> for batch in collector:
    ...     print(batch["next", "observation"].squeeze(-1), batch["collector", "traj_ids"])
    tensor([1., 2., 3., 1.]) tensor([0, 0, 0, 1])
    tensor([2., 3., 1., 2.]) tensor([1, 1, 2, 2])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase
from torch import nn

from tdrl.collectors._compact import compact_next_keys
from tdrl.collectors._episodes import EpisodeAssembler, check_episode_args
from tdrl.collectors._loop import StepLoop
from tdrl.collectors._policy_transforms import (
    check_auto_register_flag,
    missing_policy_transforms,
    register_policy_transforms,
)
from tdrl.collectors.utils import RandomPolicy, split_trajectories, traj_ids_from_resets
from tdrl.collectors.weight_update import WeightUpdaterBase
from tdrl.envs.common import EnvBase
from tdrl.envs.transforms import InitTracker
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules.exploration import set_exploration_modules_spec_from_env
from tdrl.specs import NestedKey

__all__ = ["SyncDataCollector", "Collector", "DataCollectorBase", "BaseCollector"]


def _env_from(create_env_fn: Any, kwargs: dict | None, cls: str) -> tuple[EnvBase, bool]:
    if isinstance(create_env_fn, EnvBase):
        if kwargs:
            raise ValueError(f"{cls}: create_env_kwargs is only used with a create_env_fn callable, not an env.")
        return create_env_fn, False
    if not callable(create_env_fn):
        raise TypeError(
            f"{cls}: create_env_fn must be an env or a callable returning one, got {type(create_env_fn).__name__}."
        )
    try:
        env = create_env_fn(**(kwargs or {}))
    except Exception as err:
        err.add_note(f"(raised by the create_env_fn given to {cls}: {create_env_fn!r})")
        raise
    if not isinstance(env, EnvBase):
        raise TypeError(f"{cls}: create_env_fn returned a {type(env).__name__}, not a tdrl EnvBase.")
    return env, True


def _materialize_lazy_layers(policy: Any, env: EnvBase) -> None:
    """Run a policy with lazy layers (``MLP`` without ``in_features``) once on a zero input, as TorchRL does.

    Their sizes are then set when the collector is built, so that a loss or an optimizer
    made afterwards (e.g. a DQN loss copying target parameters) sees real parameters.
    """
    if isinstance(policy, nn.Module) and any(nn.parameter.is_lazy(p) for p in policy.parameters()):
        with torch.no_grad():
            policy(env.fake_tensordict().exclude("next"))


def _as_policy(policy: Any, env: EnvBase) -> Callable[[TensorDictBase], TensorDictBase]:
    """Accept a TensorDict module, a callable on TensorDicts, or a plain module on tensors."""
    _materialize_lazy_layers(policy, env)
    if policy is None:
        return RandomPolicy(env.full_action_spec)
    if isinstance(policy, RandomPolicy):
        policy.set_action_spec_from_env(env)  # RandomPolicy() without a spec takes the env's
    if isinstance(policy, nn.Module):
        set_exploration_modules_spec_from_env(policy, env)  # AdditiveGaussianModule() without a spec too
    if isinstance(policy, TensorDictModuleBase) or not isinstance(policy, nn.Module):
        if not callable(policy):
            raise TypeError(
                f"policy must be callable (a module or a function of a TensorDict), got {type(policy).__name__}"
            )
        return policy
    names: list[NestedKey] = [p for p in inspect.signature(policy.forward).parameters if p not in ("args", "kwargs")]
    obs = [k for k in env.observation_keys if isinstance(k, str)]
    if names and all(n in obs for n in names):
        return TensorDictModule(policy, in_keys=names, out_keys=list(env.action_keys))
    if names == ["tensordict"] or names == ["td"]:
        return policy
    raise TypeError(
        f"policy {type(policy).__name__} is a plain nn.Module whose forward takes {names}, which are not "
        f"observation keys of the env ({obs}). Wrap it: TensorDictModule(policy, in_keys=[...], out_keys=['action'])."
    )


def _policy_device(policy: Any) -> torch.device | None:
    if isinstance(policy, nn.Module):
        for p in policy.parameters():
            return p.device
    return None


class DataCollectorBase:
    """What every collector offers: iteration, frame counting, and ``total_frames``.

    The common base of tdrl's collectors, also exported as :data:`BaseCollector` (TorchRL's
    current name), so ``isinstance(collector, BaseCollector)`` holds for each of them.

    Examples:
        >>> from tdrl.collectors import BaseCollector, SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> isinstance(SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=8), BaseCollector)
        True
    """

    total_frames: int
    frames_per_batch: int
    _iterator: Iterator[TensorDictBase] | None  # what next() iterates; set by next() or a subclass

    if TYPE_CHECKING:  # every collector defines it; the base only declares it, so iter(base) stays a TypeError

        def __iter__(self) -> Iterator[TensorDictBase]: ...

    def __len__(self) -> int:
        if self.total_frames < 0:
            raise TypeError(f"{type(self).__name__} with total_frames=-1 runs forever and has no len().")
        return -(-self.total_frames // self.frames_per_batch)

    def next(self) -> TensorDictBase:
        """The next batch (starting a new iteration if needed)."""
        iterator = getattr(self, "_iterator", None)
        if iterator is None:
            iterator = self._iterator = iter(self)
        try:
            return next(iterator)
        except StopIteration:
            self._iterator = None
            raise

    _weight_updater: WeightUpdaterBase | None = None

    @property
    def weight_updater(self) -> WeightUpdaterBase | None:
        """The :class:`~tdrl.collectors.WeightUpdaterBase` that ``update_policy_weights_`` delegates to, if any."""
        return self._weight_updater

    @weight_updater.setter
    def weight_updater(self, value: WeightUpdaterBase | Callable[[], WeightUpdaterBase] | None) -> None:
        if value is not None and not isinstance(value, WeightUpdaterBase):
            value = value() if callable(value) else value  # a factory, as TorchRL accepts
            if not isinstance(value, WeightUpdaterBase):
                raise TypeError(
                    f"{type(self).__name__}: weight_updater must be a WeightUpdaterBase (or a callable returning "
                    f"one), got {type(value).__name__}."
                )
        if value is not None:
            value.register_collector(self)
        self._weight_updater = value

    def _push_with_updater(self, policy_or_weights: Any, worker_ids: Any) -> bool:
        """Hands the push to the weight updater; False when there is none (the collector pushes itself)."""
        if self._weight_updater is None:
            if worker_ids is not None:
                raise TypeError(
                    f"{type(self).__name__}.update_policy_weights_: worker_ids= needs a weight_updater "
                    "(build the collector with weight_updater=...); without one every worker is updated."
                )
            return False
        self._weight_updater(policy_or_weights, worker_ids)
        return True

    def _progress(self, enabled: bool):
        if not enabled:
            return None
        from tqdm import tqdm

        return tqdm(total=None if self.total_frames < 0 else self.total_frames, unit="frames")


class SyncDataCollector(DataCollectorBase):
    """Collect batches of ``frames_per_batch`` frames from one env (possibly batched) with a policy.

    Args:
        create_env_fn: an env, or a callable returning one (called with ``create_env_kwargs``).
        policy: a TensorDict module (reads the root, writes the action), a plain
            ``nn.Module`` whose ``forward`` arguments are observation keys, or ``None``
            for random actions drawn from the action spec.
        frames_per_batch: frames in each batch; a multiple of the env's batch numel.
        total_frames: stop after this many frames (rounded up to whole batches); ``-1``
            runs forever.
        device: default for ``env_device``, ``policy_device`` and ``storing_device``.
        storing_device: where batches are returned.
        policy_device: where the policy runs (its inputs are moved there).
        env_device: where the env's outputs live (default: the env's device).
        create_env_kwargs: keyword arguments for ``create_env_fn``.
        max_frames_per_traj: truncate (and reset) an episode after this many steps; None, 0 or -1:
            no limit (TorchRL's convention).
        init_random_frames: collect the first frames (whole batches) with random actions.
        reset_at_each_iter: reset every env at the start of each batch.
        postproc: a callable applied to each batch before it is returned.
        split_trajs: return batches padded per trajectory (shape ``[num_trajs, max_len]``)
            with a ``("collector", "mask")`` entry.
        exploration_type: the exploration mode the policy runs under.
        reset_when_done: reset envs whose episode ended (else the env must handle it).
        progress_bar: show a tqdm bar over ``total_frames``.
        return_same_td: kept for TorchRL compatibility (each batch is a new TensorDict).
        trajs_per_batch: yield batches of this many *whole* episodes instead of
            ``frames_per_batch`` frames (Tianshou's ``collect(n_episode=)``, SB3's
            ``train_freq=(n, "episode")``). Each episode runs from a reset to a
            ``("next", "done")`` step, however many internal batches it spans (an episode
            still running is held back); ``frames_per_batch`` then only sets how many
            steps are collected at a time, and ``total_frames`` still bounds the frames
            collected. With a batched env, every sub-env's episodes count.
        traj_format: with ``trajs_per_batch``: ``"padded"`` (default) stacks the episodes
            as ``[trajs_per_batch, longest]`` with zeros after each episode and a
            ``("collector", "mask")`` entry marking its steps; ``"cat"`` concatenates them
            along time (``[total steps]``), delimited by ``("next", "done")`` and
            ``("collector", "traj_ids")``.
        replay_buffer: if given, each batch (after ``postproc``) is written into it with
            ``replay_buffer.extend(batch)`` and the iterator yields ``None`` (TorchRL's
            contract): the training loop samples from the buffer.
        weight_updater: a :class:`~tdrl.collectors.WeightUpdaterBase` (or a callable
            returning one) that :meth:`update_policy_weights_` delegates to.
        auto_register_policy_transforms: ``True``: when the policy (an ``nn.Module``)
            needs env transforms the env lacks, judged from the env's specs, append
            them to the env before the first step: an :class:`~tdrl.envs.InitTracker`
            when there is no ``is_init``, and the :class:`~tdrl.envs.TensorDictPrimer`
            of each recurrent submodule (``LSTMModule``, ``GRUModule``, anything with
            ``make_tensordict_primer()``) whose states are not declared. ``self.env``
            is then the wrapped env. ``False`` or ``None`` (default): the env is left
            as it is (a recurrent policy without its primer is refused at the first
            batch, with this option named as a fix). TorchRL 0.14.1 warns on ``None``
            that its default will change; tdrl does not warn.
        compact_obs: leave the observation and state entries (every leaf of the env's
            observation and state specs, e.g. ``("next", "observation")``, recurrent
            states, ``("next", "is_init")``) out of ``"next"`` in the batches: within a
            trajectory they are the root entries of the following step. Reward and
            done flags stay. Rebuild them when sampling with
            :class:`~tdrl.envs.transforms.NextStateReconstructor` (NaN at trajectory
            ends, which tdrl's value estimators replace by the root observation).

    Raises:
        TypeError: ``replay_buffer`` has no ``extend`` method.
        ValueError: ``frames_per_batch`` is not a positive multiple of the env's batch numel,
            ``total_frames`` is neither -1 nor positive, or ``trajs_per_batch`` /
            ``traj_format`` is invalid (or combined with ``split_trajs``).
        KeyError: on the first batch, when the policy does not write the action.
        ValueError: on the first batch, when the policy writes the action with the wrong shape.

    Examples:
        >>> from tdrl.testing import ContinuousActionMock
        >>> env = ContinuousActionMock(batch_size=[2])
        >>> collector = SyncDataCollector(env, None, frames_per_batch=10, total_frames=20)
        >>> batch = next(iter(collector))
        >>> batch.batch_size
        torch.Size([2, 5])
        >>> len(collector)
        2
    """

    def __init__(
        self,
        create_env_fn: EnvBase | Callable[..., EnvBase],
        policy: Callable[[TensorDictBase], TensorDictBase] | nn.Module | None = None,
        *,
        frames_per_batch: int,
        total_frames: int = -1,
        device: Any = None,
        storing_device: Any = None,
        policy_device: Any = None,
        env_device: Any = None,
        create_env_kwargs: dict | None = None,
        max_frames_per_traj: int | None = None,
        init_random_frames: int | None = None,
        reset_at_each_iter: bool = False,
        postproc: Callable[[TensorDictBase], TensorDictBase] | None = None,
        split_trajs: bool = False,
        exploration_type: ExplorationType = ExplorationType.RANDOM,
        reset_when_done: bool = True,
        progress_bar: bool = False,
        return_same_td: bool = False,
        trajs_per_batch: int | None = None,
        traj_format: str | None = None,
        replay_buffer: Any = None,
        weight_updater: WeightUpdaterBase | Callable[[], WeightUpdaterBase] | None = None,
        auto_register_policy_transforms: bool | None = None,
        compact_obs: bool = False,
    ) -> None:
        cls = type(self).__name__
        self._auto_register_policy_transforms = check_auto_register_flag(auto_register_policy_transforms, cls)
        if not isinstance(compact_obs, bool):
            raise TypeError(
                f"{cls}: compact_obs must be True or False, got {compact_obs!r} ({type(compact_obs).__name__})."
            )
        if replay_buffer is not None and not callable(getattr(replay_buffer, "extend", None)):
            raise TypeError(
                f"{cls}: replay_buffer must have an extend(batch) method (a tdrl ReplayBuffer), "
                f"got {type(replay_buffer).__name__}."
            )
        self.replay_buffer = replay_buffer
        self.traj_format = check_episode_args(cls, trajs_per_batch, traj_format, split_trajs)
        self.trajs_per_batch = trajs_per_batch
        self.env, self._owns_env = _env_from(create_env_fn, create_env_kwargs, cls)
        if self._auto_register_policy_transforms:  # before the policy's lazy layers run on the env's specs
            self.env = register_policy_transforms(self.env, policy)
        env = self.env
        self.compact_obs = compact_obs
        self._compact_next_keys = compact_next_keys(env) if compact_obs else ()
        numel = env.batch_size.numel()
        if isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1:
            raise ValueError(f"{cls}: frames_per_batch must be a positive int, got {frames_per_batch!r}.")
        if frames_per_batch % numel:
            lo = max(numel, frames_per_batch - frames_per_batch % numel)
            raise ValueError(
                f"{cls}: frames_per_batch={frames_per_batch} is not a multiple of the env's batch numel "
                f"{numel} (batch_size {tuple(env.batch_size)}): every batch holds whole steps of all envs. "
                f"Use {lo} or {lo + numel}."
            )
        if not isinstance(total_frames, int) or (total_frames < 1 and total_frames != -1):
            raise ValueError(f"{cls}: total_frames must be -1 (run forever) or a positive int, got {total_frames!r}.")
        if isinstance(max_frames_per_traj, bool) or not isinstance(max_frames_per_traj, (int, type(None))):
            raise ValueError(f"{cls}: max_frames_per_traj must be None or an int, got {max_frames_per_traj!r}.")
        if max_frames_per_traj is not None and max_frames_per_traj < 1:
            max_frames_per_traj = None  # TorchRL's convention: 0 or -1 means no limit, as None does
        self.frames_per_batch = frames_per_batch
        self.total_frames = total_frames
        self.max_frames_per_traj = max_frames_per_traj
        self.init_random_frames = init_random_frames or 0
        self.reset_at_each_iter = reset_at_each_iter
        self.postproc = postproc
        self.split_trajs = split_trajs
        self.exploration_type = exploration_type
        self.reset_when_done = reset_when_done
        self.progress_bar = progress_bar
        self.return_same_td = return_same_td

        self.env_device = (
            torch.device(env_device)
            if env_device is not None
            else (torch.device(device) if device is not None else env.device)
        )
        self.storing_device = (
            torch.device(storing_device)
            if storing_device is not None
            else (torch.device(device) if device is not None else self.env_device)
        )
        self.policy = policy
        self._policy = _as_policy(policy, env)
        own = _policy_device(self._policy)
        self.policy_device = (
            torch.device(policy_device)
            if policy_device is not None
            else (torch.device(device) if device is not None else (own or self.env_device))
        )
        if isinstance(self._policy, nn.Module) and own is not None and own != self.policy_device:
            self._policy = self._policy.to(self.policy_device)
        self._random = RandomPolicy(env.full_action_spec)

        self._batch = env.batch_size
        self._steps = frames_per_batch // numel
        self._time_dim = len(self._batch)
        self._frames = 0
        self._iter = 0
        self._root: TensorDictBase | None = None
        self._traj_cur = torch.arange(numel)
        self._traj_fresh = torch.ones(numel, dtype=torch.bool)  # no frame recorded yet in that trajectory
        self._next_id = numel
        self._traj_steps = torch.zeros((*self._batch, 1), dtype=torch.int64)
        self._loop: StepLoop | None = None
        self._iterator = None
        self.weight_updater = weight_updater

    # --- one batch ---------------------------------------------------------------------------
    def _reset_all(self) -> TensorDictBase:
        root = self.env.reset()
        self._traj_steps.zero_()
        return root

    def _renew_ids(self) -> None:
        """New trajectory ids for the envs whose trajectory already holds frames (after a reset)."""
        stale = ~self._traj_fresh
        n = int(stale.sum())
        if n:
            self._traj_cur[stale] = torch.arange(self._next_id, self._next_id + n)
            self._next_id += n
        self._traj_fresh.fill_(True)

    @torch.no_grad()
    def rollout(self) -> TensorDictBase:
        """Collect one batch (``frames_per_batch`` frames), continuing from where the env is."""
        numel = self._batch.numel()
        with set_exploration_type(self.exploration_type):
            if self._loop is None:
                loop = StepLoop(self)
                try:
                    loop.setup(self._root if self._root is not None else self.env.reset())
                except ValueError as err:
                    self._note_missing_transforms(err)
                    raise
                self._loop = loop
                self._root = None  # the validation step moved the env: start from a reset
            if self._root is None or self.reset_at_each_iter:
                self._root = self._reset_all()
                self._renew_ids()
            random_batch = self.policy is None or self._frames < self.init_random_frames
            out, self._root = self._loop.run(self._root, self._steps, random_batch)
        resets = out.get(("next", "done")).reshape(numel, self._steps)
        if not self.reset_when_done:  # only the collector's own truncations reset envs
            truncations = self._loop.truncations if self.max_frames_per_traj is not None else torch.zeros_like(resets)
            resets = truncations.reshape(numel, self._steps)
        ids, self._traj_cur, self._next_id = traj_ids_from_resets(resets, self._traj_cur, self._next_id)
        self._traj_fresh = resets[:, -1].clone()
        out.set(("collector", "traj_ids"), ids.reshape(*self._batch, self._steps))
        if self.storing_device != self.env_device:
            out = out.to(self.storing_device)
        return out

    def _note_missing_transforms(self, err: ValueError) -> None:
        if self._auto_register_policy_transforms is True:
            return
        missing = missing_policy_transforms(self.env, self.policy)
        if any(not isinstance(t, InitTracker) for t in missing):  # a primer is missing
            names = ", ".join(type(t).__name__ for t in missing)
            err.add_note(
                f"{type(self).__name__}(..., auto_register_policy_transforms=True) appends what the policy needs "
                f"to the env ({names})."
            )

    def _deliver(self, batch: TensorDictBase) -> TensorDictBase:
        """The batch to yield; with ``replay_buffer``, it goes into the buffer and None is yielded (TorchRL)."""
        if self.replay_buffer is None:
            return batch
        self.replay_buffer.extend(batch)
        return None  # type: ignore[return-value]

    def __iter__(self) -> Iterator[TensorDictBase]:
        bar = self._progress(self.progress_bar)
        episodes = EpisodeAssembler() if self.trajs_per_batch is not None else None
        try:
            while self.total_frames < 0 or self._frames < self.total_frames:
                batch = self.rollout()
                self._frames += batch.numel()
                self._iter += 1
                if bar is not None:
                    bar.update(batch.numel())
                if episodes is not None:
                    if self.reset_at_each_iter:  # the episodes cut by the reset never end
                        episodes.drop_partial()
                    episodes.ingest(batch)
                    while (whole := episodes.emit(cast(int, self.trajs_per_batch), self.traj_format)) is not None:
                        yield self._deliver(self.postproc(whole) if self.postproc is not None else whole)
                    continue
                if self.split_trajs:
                    batch = split_trajectories(batch)
                if self.postproc is not None:
                    batch = self.postproc(batch)
                yield self._deliver(batch)
        finally:
            if bar is not None:
                bar.close()

    # --- control -----------------------------------------------------------------------------
    def set_seed(self, seed: int, static_seed: bool = False) -> int | None:
        """Seed the env; returns the next seed (for another env)."""
        return self.env.set_seed(seed, static_seed=static_seed)

    def update_policy_weights_(self, policy_or_weights: Any = None, *, worker_ids: Any = None) -> None:
        """Load new weights into the policy the collector runs.

        With no argument, copies the weights of the policy given at construction into the
        collector's copy (a no-op when the collector runs that very module). A
        ``TensorDict`` of parameters, a ``state_dict`` or a module can be passed instead.
        A collector built with ``weight_updater=`` hands the call (and ``worker_ids``) to it.

        Raises:
            TypeError: ``worker_ids`` without a ``weight_updater``.
        """
        if self._push_with_updater(policy_or_weights, worker_ids):
            return
        target = self._policy
        if not isinstance(target, nn.Module):
            return
        if policy_or_weights is None:
            if target is self.policy or not isinstance(self.policy, nn.Module):
                return
            policy_or_weights = self.policy
        if isinstance(policy_or_weights, nn.Module):
            policy_or_weights = policy_or_weights.state_dict()
        if isinstance(policy_or_weights, TensorDictBase):
            policy_or_weights.to_module(target)
        else:
            target.load_state_dict(policy_or_weights)

    def state_dict(self) -> dict:
        """Counters, trajectory ids, the torch RNG state, and the env's and policy's state_dicts.

        A simulator's internal state cannot be saved in general: a collector that loads
        this state resets its env at the next batch, so the stream it resumes is
        identical to the original one when that one starts each batch from a reset
        (``reset_at_each_iter=True``, or episodes that end on batch boundaries).
        """
        out = {
            "frames": self._frames,
            "iter": self._iter,
            "next_traj_id": self._next_id,
            "traj_ids": self._traj_cur.clone(),
            "traj_fresh": self._traj_fresh.clone(),
            "rng_state": torch.get_rng_state(),
        }
        if isinstance(self.env, nn.Module):
            out["env_state_dict"] = self.env.state_dict()
        if isinstance(self._policy, nn.Module):
            out["policy_state_dict"] = self._policy.state_dict()
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume from :meth:`state_dict`: counters, trajectory ids, RNG, env and policy states."""
        missing = [k for k in ("frames", "iter", "next_traj_id", "traj_ids") if k not in state_dict]
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}; keys are {sorted(state_dict)}.")
        self._frames = int(state_dict["frames"])
        self._iter = int(state_dict["iter"])
        self._next_id = int(state_dict["next_traj_id"])
        self._traj_cur = state_dict["traj_ids"].clone()
        self._traj_fresh = state_dict.get("traj_fresh", torch.zeros_like(self._traj_cur, dtype=torch.bool)).clone()
        if "rng_state" in state_dict:
            torch.set_rng_state(state_dict["rng_state"])
        if "env_state_dict" in state_dict and isinstance(self.env, nn.Module):
            self.env.load_state_dict(state_dict["env_state_dict"])
        if "policy_state_dict" in state_dict and isinstance(self._policy, nn.Module):
            self._policy.load_state_dict(state_dict["policy_state_dict"])
        self._root = None  # the simulator state is not in the state_dict: start from a reset

    def shutdown(self) -> None:
        """Close the env if the collector built it."""
        if self._owns_env:
            self.env.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(env={type(self.env).__name__}, frames_per_batch={self.frames_per_batch}, "
            f"total_frames={self.total_frames}, batch_size={tuple(self._batch)})"
        )


Collector = SyncDataCollector

BaseCollector = DataCollectorBase
"""TorchRL's current name for :class:`DataCollectorBase`, the base of every tdrl collector."""
