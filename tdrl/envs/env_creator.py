"""EnvCreator: a picklable env factory, checked once when it is made."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any

from tdrl.envs.common import EnvBase
from tdrl.specs import Composite

__all__ = ["EnvCreator"]

_NOT_AN_ENV = (
    "EnvCreator: create_env_fn returned a {kind}, not an EnvBase. Fix: pass a callable that builds "
    "the env (e.g. EnvCreator(lambda: GymEnv('Pendulum-v1')))."
)


def _shareable_transforms(env: Any) -> Iterator[Any]:
    """The transforms of ``env``'s chain (outermost first, then the base env's) that can share their state."""
    from tdrl.envs.transforms import Compose, TransformedEnv

    def walk(transform: Any) -> Iterator[Any]:
        if isinstance(transform, Compose):
            for member in transform:
                yield from walk(member)
        elif hasattr(transform, "_share_state"):
            yield transform

    while isinstance(env, TransformedEnv):
        yield from walk(env.transform)
        env = env.base_env


def _dumps(fn: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - gymnasium depends on cloudpickle
        return pickle.dumps(fn)
    return cloudpickle.dumps(fn)


class EnvCreator:
    """Wraps an env factory so that it can be sent to worker processes, and checks it.

    The factory is called once when the creator is made: a factory that fails, or returns
    something other than an env, raises here rather than in a worker. That env's specs are
    kept (``creator.observation_spec``, ...; ``creator.meta_data``) and the env is closed.
    Each call builds a new env. The creator pickles with plain ``pickle`` even when the
    factory is a lambda or a local function (the factory travels as cloudpickle bytes),
    so it can be handed to :class:`~tdrl.envs.ParallelEnv` and to the multi-process
    collectors under any start method.

    Args:
        create_env_fn: a callable returning an :class:`~tdrl.envs.EnvBase`.
        create_env_kwargs: keyword arguments for each call (a call's own keyword arguments
            override them).
        share_memory: share the running statistics of the env's :class:`~tdrl.envs.VecNorm`
            and :class:`~tdrl.envs.VecNormV2` transforms (stateful ones) among every env
            the creator builds, in this process and in worker processes (shared memory,
            and a lock that keeps concurrent updates whole), as TorchRL's creator does. The
            statistics are those of the env built when the creator is made: an env built
            here in the parent process (``creator()``) reads what the workers update.

    Raises:
        TypeError: when ``create_env_fn`` is not callable, is an env instance, or builds
            something that is not an env.

    Examples:
        >>> from tdrl.envs import EnvCreator, ParallelEnv
        >>> from tdrl.testing import CountingEnv
        >>> creator = EnvCreator(lambda: CountingEnv(max_steps=3))
        >>> creator.observation_spec["observation"].shape
        torch.Size([1])
        >>> creator().rollout(5)["next", "observation"].squeeze(-1)
        tensor([1., 2., 3.])
        >>> penv = ParallelEnv(2, creator)
        >>> penv.batch_size
        torch.Size([2])
        >>> penv.close()

        Workers share one VecNorm's statistics:

        >>> from tdrl.envs import TransformedEnv, VecNorm
        >>> vec_norm = lambda: VecNorm(new_api=True, in_keys=["observation"])
        >>> creator = EnvCreator(lambda: TransformedEnv(CountingEnv(max_steps=9), vec_norm()))
        >>> local = creator()
        >>> penv = ParallelEnv(2, creator)
        >>> _ = penv.rollout(3)
        >>> penv.close()
        >>> int(local.transform.shared_data["count", "observation"])  # 2 workers x (1 reset + 3 steps)
        8
    """

    def __init__(
        self,
        create_env_fn: Callable[..., EnvBase],
        create_env_kwargs: dict | None = None,
        share_memory: bool = True,
        **kwargs: Any,
    ) -> None:
        if isinstance(create_env_fn, EnvBase) or not callable(create_env_fn):
            raise TypeError(
                f"EnvCreator: create_env_fn must be a callable that builds an env, got a "
                f"{type(create_env_fn).__name__}. Fix: pass the class or a function, e.g. "
                "EnvCreator(lambda: GymEnv('Pendulum-v1'))."
            )
        self.create_env_fn = create_env_fn
        self.create_env_kwargs = {**(create_env_kwargs or {}), **kwargs}
        self.share_memory = share_memory
        env = self._build({})
        try:
            self.batch_size = env.batch_size
            self.device = env.device
            self.output_spec: Composite = env.output_spec.clone()
            self.input_spec: Composite = env.input_spec.clone()
            names = ("observation_spec", "action_spec", "reward_spec", "done_spec")
            self._specs = {name: getattr(env, name).clone() for name in names}
            self._shared_states: list = []
            if share_memory:
                self._shared_states = [t._share_state() for t in _shareable_transforms(env)]
        finally:
            env.close()

    def _build(self, kwargs: dict) -> EnvBase:
        env = self.create_env_fn(**{**self.create_env_kwargs, **kwargs})
        if not isinstance(env, EnvBase):
            raise TypeError(_NOT_AN_ENV.format(kind=type(env).__name__))
        return env

    def __call__(self, **kwargs: Any) -> EnvBase:
        """A new env (``kwargs`` override the creator's ``create_env_kwargs``), sharing the creator's statistics."""
        env = self._build(kwargs)
        if self._shared_states:
            for transform, (stats, lock) in zip(_shareable_transforms(env), self._shared_states):
                transform._use_shared_state(stats, lock)
        return env

    def make_variant(self, **kwargs: Any) -> EnvCreator:
        """A creator with other keyword arguments that shares this one's statistics and specs.

        Examples:
            >>> from tdrl.testing import CountingEnv
            >>> creator = EnvCreator(CountingEnv, max_steps=3)
            >>> creator.make_variant(max_steps=5)().max_steps
            5
        """
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.create_env_kwargs = {**self.create_env_kwargs, **kwargs}
        return out

    @property
    def observation_spec(self) -> Any:
        """The observation spec of the envs this creator builds (as ``env.observation_spec``)."""
        return self._specs["observation_spec"]

    @property
    def action_spec(self) -> Any:
        """The action spec of the envs this creator builds (as ``env.action_spec``)."""
        return self._specs["action_spec"]

    @property
    def reward_spec(self) -> Any:
        """The reward spec of the envs this creator builds (as ``env.reward_spec``)."""
        return self._specs["reward_spec"]

    @property
    def done_spec(self) -> Any:
        """The done spec of the envs this creator builds (as ``env.done_spec``)."""
        return self._specs["done_spec"]

    @property
    def meta_data(self) -> dict:
        """Batch size, device and specs of the envs this creator builds."""
        return {
            "batch_size": self.batch_size,
            "device": self.device,
            "input_spec": self.input_spec,
            "output_spec": self.output_spec,
        }

    def __getstate__(self) -> dict:
        state = dict(self.__dict__, create_env_fn=_dumps(self.create_env_fn))
        # the shared statistics travel as shared-memory handles, whatever pickler the caller uses
        state["_shared_states"] = bytes(ForkingPickler.dumps(self.__dict__.get("_shared_states", [])))
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state["create_env_fn"] = pickle.loads(state["create_env_fn"])
        state["_shared_states"] = pickle.loads(state.get("_shared_states", pickle.dumps([])))
        self.__dict__.update(state)

    def __repr__(self) -> str:
        name = getattr(self.create_env_fn, "__name__", type(self.create_env_fn).__name__)
        return f"EnvCreator({name}, batch_size={list(self.batch_size)})"
