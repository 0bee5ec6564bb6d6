"""Exploration: epsilon-greedy, Gaussian and OU noise for deterministic and greedy policies; a random policy.

Each module is appended after a policy (``TensorDictSequential(actor, noise)``) and changes
the action it wrote. Noise is applied under ``ExplorationType.RANDOM`` (and when no
exploration type is set, as in TorchRL); under ``MEAN``/``MODE``/``DETERMINISTIC`` the
modules pass the action through untouched. ``step(frames)`` anneals the noise level; a
collector or the training loop calls it with the number of frames collected.

The checks the modules share are in ``_exploration_checks.py``; how ``EGreedyModule``
draws its random actions in ``_egreedy_draws.py``.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.envs.utils import ExplorationType, set_exploration_type
    >>> from tdrl.specs import Bounded
    >>> noise = AdditiveGaussianModule(Bounded(-1.0, 1.0, shape=(2,)), sigma_init=0.5, sigma_end=0.5)
    >>> td = TensorDict(action=torch.zeros(2))
    >>> with set_exploration_type(ExplorationType.MEAN):
    ...     noise(td)["action"]
    tensor([0., 0.])
"""

from __future__ import annotations

import math
import warnings
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn

from tdrl._compat import module_buffers, td_read, td_write
from tdrl.modules._egreedy_draws import one_coin_plan, random_action
from tdrl.modules._exploration_checks import _check_annealing, _exploring, _lead_dims, _leaf_spec, _project_in_place
from tdrl.modules._lean import missing_key_error
from tdrl.specs import Categorical, Composite, MultiCategorical, MultiOneHot, NestedKey, OneHot, TensorSpec
from tdrl.specs.base import one_hot

__all__ = [
    "EGreedyModule",
    "AdditiveGaussianModule",
    "OrnsteinUhlenbeckProcessModule",
    "RandomPolicy",
    "set_exploration_modules_spec_from_env",
]


_NO_IS_INIT = (
    "OrnsteinUhlenbeckProcessModule: the TensorDict has no {key!r} entry, so the noise is not reset when an "
    "episode starts and carries over from the previous one. Add the InitTracker transform to the env: "
    "TransformedEnv(env, InitTracker())."
)


class EGreedyModule(TensorDictModuleBase):
    """Epsilon-greedy: replace the action by a uniform random one with probability ``eps``.

    ``eps`` goes linearly from ``eps_init`` to ``eps_end`` over ``annealing_num_steps``
    frames of :meth:`step` (TorchRL's schedule, in one update per call rather than one per
    frame). One coin is drawn per batch element of the TensorDict holding the action (for
    a nested ``action_key`` such as ``("agents", "action")``, per agent), then the random
    actions, so a seeded draw equals TorchRL's.

    Args:
        spec: the action spec (random actions are drawn from it).
        eps_init: the initial epsilon.
        eps_end: the final epsilon.
        annealing_num_steps: frames over which epsilon anneals.

    Keyword Args:
        action_key: the action entry (default ``"action"``).
        action_mask_key: a bool entry ``[..., n]``; random actions respect it.
        device: where the epsilon buffers live.

    Raises:
        ValueError: ``eps_end > eps_init``, a non-positive annealing length, or (on a call)
            an action whose shape does not end with the spec's.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Categorical
        >>> explore = EGreedyModule(Categorical(4), eps_init=1.0, eps_end=0.0, annealing_num_steps=10)
        >>> explore.step(5)
        >>> round(explore.eps.item(), 3)
        0.5
    """

    # buffers (registered in __init__)
    eps_init: torch.Tensor
    eps_end: torch.Tensor
    eps: torch.Tensor

    def __init__(
        self,
        spec: TensorSpec | Composite,
        eps_init: float = 1.0,
        eps_end: float = 0.1,
        annealing_num_steps: int = 1000,
        *,
        action_key: NestedKey = "action",
        action_mask_key: NestedKey | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        _check_annealing(eps_init, eps_end, annealing_num_steps, "EGreedyModule", "eps")
        if spec is None:
            raise ValueError("EGreedyModule needs the action spec to draw random actions: pass env.action_spec.")
        self.action_key = action_key
        self.action_mask_key = action_mask_key
        # a nested action (("agents", "action")) gets one coin per element of its own TensorDict
        self._parent_key = action_key[:-1] if isinstance(action_key, tuple) and len(action_key) > 1 else None
        self.in_keys = [action_key] + ([action_mask_key] if action_mask_key is not None else [])
        self.out_keys = [action_key]
        self._action_spec = _leaf_spec(spec, action_key, "EGreedyModule")
        self._spec = spec if isinstance(spec, Composite) else Composite({action_key: spec})
        self.register_buffer("eps_init", torch.tensor(float(eps_init), device=device))
        self.register_buffer("eps_end", torch.tensor(float(eps_end), device=device))
        self.register_buffer("eps", torch.tensor(float(eps_init), device=device))
        self.annealing_num_steps = int(annealing_num_steps)
        self._layout: tuple | None = None  # (action shape, holder batch size) last checked
        self._shapes: tuple = ()
        self._one_coin: tuple | None = None

    @property
    def spec(self) -> Composite:
        return self._spec

    def step(self, frames: int = 1) -> None:
        """Anneal epsilon by ``frames`` frames (it stops at ``eps_end``)."""
        delta = (self.eps_init - self.eps_end) * (frames / self.annealing_num_steps)
        self.eps.copy_(torch.maximum(self.eps_end, self.eps - delta))

    def _one_coin_step(self, tensordict: TensorDictBase, action: torch.Tensor) -> TensorDictBase:
        n, full, dtype, one_hot_dtype, discard, coin = cast(tuple, self._one_coin)  # set by forward before this call
        if coin.dtype is not torch.get_default_dtype():  # torch.rand(()) draws in the default dtype
            coin = torch.empty(())
            self._one_coin = (n, full, dtype, one_hot_dtype, discard, coin)
        # float32 draws and a float32 eps compare the same as Python floats (both exact in a double)
        if coin.uniform_().item() < module_buffers(self)["eps"].item():  # type: ignore[union-attr]
            random = torch.randint(0, n, full, dtype=dtype)
            td_write(
                tensordict, self.action_key, random if one_hot_dtype is None else one_hot(random, n, one_hot_dtype)
            )
        else:  # the random action is still drawn (the random stream stays TorchRL's), into a scratch buffer
            discard.random_(0, n)
            td_write(tensordict, self.action_key, action.clone())
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not _exploring():
            return tensordict
        action = td_read(tensordict, self.action_key)
        if action is None:
            raise missing_key_error("EGreedyModule", self.action_key, tensordict)
        holder = tensordict if self._parent_key is None else tensordict.get(self._parent_key)
        layout = (action.shape, holder.batch_size, action.dtype, action.device)
        if layout != self._layout:  # checked once per layout (the same at every step of a collector)
            lead = _lead_dims(action, self._action_spec, "EGreedyModule")
            coin_shape = holder.batch_size if len(holder.batch_size) <= action.ndim else lead
            self._layout = layout
            self._shapes = (lead, coin_shape, (*coin_shape, *([1] * (action.ndim - len(coin_shape)))))
            self._one_coin = one_coin_plan(self._action_spec, self.action_mask_key, self.eps, action, lead, coin_shape)
        # the one-coin step reads its coin as a Python number: a graph capture (torch.export,
        # torch.compile) cannot, so it takes the torch.where path, which draws the same numbers
        if self._one_coin is not None and not torch.compiler.is_compiling():
            return self._one_coin_step(tensordict, action)
        lead, coin_shape, coin_view = self._shapes
        eps = self.eps
        if eps.device != action.device:
            eps = eps.to(action.device)
        cond = (torch.rand(coin_shape, device=action.device) < eps).reshape(coin_view)
        random = random_action(self._action_spec, self.action_mask_key, tensordict, lead, action)
        td_write(tensordict, self.action_key, torch.where(cond, random, action))
        return tensordict


class AdditiveGaussianModule(TensorDictModuleBase):
    """Add ``sigma * N(mean, std)`` to a continuous action, then project it onto the spec.

    ``sigma`` anneals linearly from ``sigma_init`` to ``sigma_end`` over
    ``annealing_num_steps`` frames of :meth:`step`.

    Args:
        spec: the action spec (``Bounded`` keeps noisy actions in bounds).
        sigma_init: the initial noise scale.
        sigma_end: the final noise scale.
        annealing_num_steps: frames over which sigma anneals.
        mean: mean of the unit noise.
        std: standard deviation of the unit noise.

    Keyword Args:
        action_key: the action entry.
        safe: also project the action onto the spec when not exploring (as TorchRL's
            ``safe=True``); while exploring, the noisy action is always projected when a spec is given.
        device: where the buffers live.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> noise = AdditiveGaussianModule(Bounded(-1.0, 1.0, shape=(3,)), sigma_init=10.0, sigma_end=10.0)
        >>> bool(noise(TensorDict(action=torch.zeros(3)))["action"].abs().max() <= 1)
        True
    """

    # buffers (registered in __init__)
    sigma_init: torch.Tensor
    sigma_end: torch.Tensor
    sigma: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        spec: TensorSpec | Composite | None = None,
        sigma_init: float = 1.0,
        sigma_end: float = 0.1,
        annealing_num_steps: int = 1000,
        mean: float = 0.0,
        std: float = 1.0,
        *,
        action_key: NestedKey = "action",
        safe: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        _check_annealing(sigma_init, sigma_end, annealing_num_steps, "AdditiveGaussianModule", "sigma")
        self.action_key = action_key
        self.in_keys = [action_key]
        self.out_keys = [action_key]
        self._action_spec = _leaf_spec(spec, action_key, "AdditiveGaussianModule")
        self._spec = None if spec is None else spec if isinstance(spec, Composite) else Composite({action_key: spec})
        self.safe = safe
        self.register_buffer("sigma_init", torch.tensor(float(sigma_init), device=device))
        self.register_buffer("sigma_end", torch.tensor(float(sigma_end), device=device))
        self.register_buffer("sigma", torch.tensor(float(sigma_init), device=device))
        self.register_buffer("mean", torch.tensor(float(mean), device=device))
        self.register_buffer("std", torch.tensor(float(std), device=device))
        self.annealing_num_steps = int(annealing_num_steps)

    @property
    def spec(self) -> Composite | None:
        return self._spec

    @spec.setter
    def spec(self, value: TensorSpec | Composite) -> None:
        self._action_spec = _leaf_spec(value, self.action_key, "AdditiveGaussianModule")
        self._spec = value if isinstance(value, Composite) else Composite({self.action_key: value})

    def step(self, frames: int = 1) -> None:
        """Anneal sigma by ``frames`` frames (it stops at ``sigma_end``)."""
        delta = (self.sigma_init - self.sigma_end) * (frames / self.annealing_num_steps)
        self.sigma.copy_(torch.maximum(self.sigma_end, self.sigma - delta))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not _exploring():
            if self.safe and self._action_spec is not None:
                _project_in_place(tensordict, self.action_key, self._action_spec)
            return tensordict
        action = tensordict.get(self.action_key, None)
        if action is None:
            raise missing_key_error("AdditiveGaussianModule", self.action_key, tensordict)
        noise = torch.randn_like(action) * self.std + self.mean
        action = action + self.sigma * noise
        if self._action_spec is not None:
            action = self._action_spec.project(action)
        tensordict.set(self.action_key, action)
        return tensordict


def set_exploration_modules_spec_from_env(policy: nn.Module, env: Any) -> None:
    """Give every exploration module of ``policy`` built without a spec the env's action spec.

    An :class:`AdditiveGaussianModule` may be built with ``spec=None`` before the env is
    known; it then adds unbounded noise. This sets the spec of each such module found in
    ``policy`` (``policy.modules()``) to ``env.action_spec_unbatched`` (``env.action_spec``
    for an env without it), so that noisy actions are projected back into bounds. Modules
    that have a spec keep it. The collectors call it on the policy they are given, as
    TorchRL's do.

    Args:
        policy: the policy (any ``nn.Module``; its submodules are searched).
        env: the env whose action spec to use.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictSequential
        >>> from tdrl.testing import ContinuousActionMock
        >>> env = ContinuousActionMock()
        >>> noise = AdditiveGaussianModule(sigma_init=100.0, sigma_end=100.0)
        >>> policy = TensorDictSequential(noise)
        >>> set_exploration_modules_spec_from_env(policy, env)
        >>> noise.spec["action"] is not None
        True
        >>> bool(policy(TensorDict(action=torch.zeros(2)))["action"].abs().max() <= 1)
        True
    """
    spec = env.action_spec_unbatched if hasattr(env, "action_spec_unbatched") else env.action_spec
    for module in policy.modules():
        if isinstance(module, AdditiveGaussianModule) and module.spec is None:
            module.spec = spec


class OrnsteinUhlenbeckProcessModule(TensorDictModuleBase):
    """Temporally correlated (Ornstein-Uhlenbeck) noise for a continuous action (DDPG).

    Each step, ``noise <- noise + theta (mu - noise) dt + sigma_t sqrt(dt) N(0, 1)`` and the
    action becomes ``action + eps * noise``. The noise and a step counter live in the
    TensorDict (``"_ou_prev_noise"``, ``"_ou_steps"``), so they follow each env through a
    rollout; where ``is_init_key`` (written by an ``InitTracker`` transform) is True they are
    reset. ``sigma_t`` goes linearly from ``sigma`` to ``sigma_min`` over
    ``n_steps_annealing`` steps of a trajectory; ``eps`` anneals over frames of :meth:`step`.

    Args:
        spec: the action spec (the noisy action is projected onto it when ``safe``).
        eps_init: the initial noise multiplier.
        eps_end: the final noise multiplier.
        annealing_num_steps: frames over which eps anneals.
        theta: mean-reversion rate.
        mu: long-run mean of the noise.
        sigma: noise scale at the start of a trajectory.
        dt: time step.
        x0: offset of the noise's starting point.
        sigma_min: noise scale after ``n_steps_annealing`` steps (default: ``sigma``).
        n_steps_annealing: steps over which sigma anneals within a trajectory.

    Keyword Args:
        action_key: the action entry.
        is_init_key: the entry marking a trajectory's first step (written by the
            ``InitTracker`` transform). Without it the noise runs on across episodes, and the
            first call warns.
        safe: project the action onto the spec, noisy or not (as TorchRL).
        device: where the buffers live.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> ou = OrnsteinUhlenbeckProcessModule(Bounded(-1.0, 1.0, shape=(2,)))
        >>> td = ou(TensorDict(action=torch.zeros(2), is_init=torch.ones(1, dtype=torch.bool)))
        >>> td["_ou_steps"]
        tensor(1)
    """

    # buffers (registered in __init__)
    x0: torch.Tensor
    eps_init: torch.Tensor
    eps_end: torch.Tensor
    eps: torch.Tensor

    noise_key = "_ou_prev_noise"
    steps_key = "_ou_steps"

    def __init__(
        self,
        spec: TensorSpec | Composite,
        eps_init: float = 1.0,
        eps_end: float = 0.1,
        annealing_num_steps: int = 1000,
        theta: float = 0.15,
        mu: float = 0.0,
        sigma: float = 0.2,
        dt: float = 1e-2,
        x0: torch.Tensor | float | None = None,
        sigma_min: float | None = None,
        n_steps_annealing: int = 1000,
        *,
        action_key: NestedKey = "action",
        is_init_key: NestedKey = "is_init",
        safe: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        _check_annealing(eps_init, eps_end, annealing_num_steps, "OrnsteinUhlenbeckProcessModule", "eps")
        if spec is None:
            raise ValueError("OrnsteinUhlenbeckProcessModule needs the action spec: pass env.action_spec.")
        self.action_key = action_key
        self.is_init_key = is_init_key
        self.in_keys = [action_key]  # is_init is read when present, as in TorchRL (a missing one warns)
        self.out_keys = [action_key, self.noise_key, self.steps_key]
        self._action_spec = _leaf_spec(spec, action_key, "OrnsteinUhlenbeckProcessModule")
        self._spec = spec if isinstance(spec, Composite) else Composite({action_key: spec})
        self.safe = safe
        self.theta, self.mu, self.sigma, self.dt = float(theta), float(mu), float(sigma), float(dt)
        self.sigma_min = float(sigma if sigma_min is None else sigma_min)
        self._sigma_slope = -(self.sigma - self.sigma_min) / float(n_steps_annealing)
        self.register_buffer("x0", torch.as_tensor(0.0 if x0 is None else x0, dtype=torch.float32, device=device))
        self.register_buffer("eps_init", torch.tensor(float(eps_init), device=device))
        self.register_buffer("eps_end", torch.tensor(float(eps_end), device=device))
        self.register_buffer("eps", torch.tensor(float(eps_init), device=device))
        self.annealing_num_steps = int(annealing_num_steps)
        self._warned_no_is_init = False

    @property
    def spec(self) -> Composite:
        return self._spec

    def step(self, frames: int = 1) -> None:
        """Anneal eps by ``frames`` frames (it stops at ``eps_end``)."""
        delta = (self.eps_init - self.eps_end) * (frames / self.annealing_num_steps)
        self.eps.copy_(torch.maximum(self.eps_end, self.eps - delta))

    def current_sigma(self, n_steps: torch.Tensor) -> torch.Tensor:
        """The noise scale after ``n_steps`` steps of a trajectory."""
        return (self._sigma_slope * n_steps + self.sigma).clamp_min(self.sigma_min)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if not _exploring():
            if self.safe:
                _project_in_place(tensordict, self.action_key, self._action_spec)
            return tensordict
        action = tensordict.get(self.action_key, None)
        if action is None:
            raise missing_key_error("OrnsteinUhlenbeckProcessModule", self.action_key, tensordict)
        lead = _lead_dims(action, self._action_spec, "OrnsteinUhlenbeckProcessModule")
        prev = tensordict.get(self.noise_key, None)
        steps = tensordict.get(self.steps_key, None)
        if prev is None or steps is None:
            prev = torch.zeros_like(action)
            steps = torch.zeros(lead, dtype=torch.long, device=action.device)
        is_init = tensordict.get(self.is_init_key, None)
        if is_init is None and not self._warned_no_is_init:
            self._warned_no_is_init = True
            warnings.warn(
                _NO_IS_INIT.format(key=self.is_init_key), UserWarning, stacklevel=4
            )  # the caller of module(td)
        if is_init is not None:
            # is_init has the done shape ([*B, 1]); bring it to the action's leading dims
            init = is_init.reshape(lead) if is_init.numel() == lead.numel() else is_init.reshape(*lead, -1).any(-1)
            steps = steps.masked_fill(init, 0)
            init_a = init.reshape(*init.shape, *([1] * (action.ndim - init.ndim)))
            prev = prev.masked_fill(init_a, 0.0)
        x = prev + self.x0
        sigma_t = self.current_sigma(steps.to(action.dtype)).reshape(*steps.shape, *([1] * (action.ndim - steps.ndim)))
        noise = x + self.theta * (self.mu - x) * self.dt + sigma_t * math.sqrt(self.dt) * torch.randn_like(x)
        action = action + self.eps * noise
        if self.safe:
            action = self._action_spec.project(action)
        tensordict.set(self.action_key, action)
        tensordict.set(self.noise_key, noise - self.x0)
        tensordict.set(self.steps_key, steps + 1)
        return tensordict


def _mask_key(action_key: NestedKey) -> NestedKey:
    """Where the mask of ``action_key`` is read: ``"action_mask"`` beside it."""
    if isinstance(action_key, tuple) and len(action_key) > 1:
        return (*action_key[:-1], "action_mask")
    return "action_mask"


_NO_SPEC = (
    "RandomPolicy has no action spec yet: pass one (RandomPolicy(env.action_spec)), set "
    "policy.action_spec = ..., or hand the policy to a collector with its env, which fills it in."
)


class RandomPolicy:
    """A policy that ignores its input and writes actions drawn uniformly from an action spec.

    The spec can be left out and filled in later: a collector given ``RandomPolicy()`` with
    an env calls :meth:`set_action_spec_from_env`, as in TorchRL.

    Action masks: when the input holds an ``"action_mask"`` next to a discrete action key
    (``"action_mask"`` for ``"action"``, ``(group, "action_mask")`` for ``(group, "action")``,
    as ``PettingZooWrapper`` and the ``ActionMask`` convention write them), that action is
    drawn among the allowed values only. TorchRL's ``RandomPolicy`` draws from a copy of the
    spec taken at construction and so ignores masks that change at every step (a tic-tac-toe
    board). Without a mask in the input, draws follow the mask that the spec the policy was given
    holds at the time of the call: ``RandomPolicy(env.action_spec)`` on an env with an
    :class:`~tdrl.envs.ActionMask` (whatever its ``mask_key``) draws legal actions. A collector's
    random frames (``init_random_frames``, or no policy) go through this
    policy step by step when masks are present, so they are legal moves too (in TorchRL,
    ``init_random_frames`` asks the env, whose live spec holds the mask).

    Args:
        action_spec: a leaf spec (its action is written under ``action_key``) or a
            ``Composite`` (each leaf written under its own key). The policy keeps a copy
            (and reads the given spec's mask at each call). ``None`` until set (see above).
        action_key: where a leaf spec's action goes (default ``"action"``).

    Raises:
        RuntimeError: when called before it has a spec.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> policy = RandomPolicy(Bounded(-1.0, 1.0, shape=(2,)))
        >>> action = policy(TensorDict())["action"]
        >>> action.shape, bool(action.abs().max() <= 1)
        (torch.Size([2]), True)
        >>> from tdrl.testing import CountingEnv
        >>> lazy = RandomPolicy()
        >>> lazy.set_action_spec_from_env(CountingEnv())
        >>> sorted(lazy(TensorDict()).keys())
        ['action']
        >>> from tdrl.specs import Categorical
        >>> masked = RandomPolicy(Categorical(4))
        >>> draws = {int(masked(TensorDict(action_mask=torch.tensor([False, True, False, True])))["action"])
        ...          for _ in range(50)}
        >>> sorted(draws)
        [1, 3]
    """

    def __init__(self, action_spec: TensorSpec | Composite | None = None, action_key: NestedKey = "action") -> None:
        self.action_key = action_key
        self.action_spec = action_spec

    @property
    def action_spec(self) -> TensorSpec | Composite | None:
        """The spec actions are drawn from (``None`` until set)."""
        return self._action_spec

    @action_spec.setter
    def action_spec(self, spec: TensorSpec | Composite | None) -> None:
        if spec is not None and not isinstance(spec, (TensorSpec, Composite)):
            raise TypeError(
                f"RandomPolicy: action_spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}; "
                f"pass env.action_spec."
            )
        self._action_spec = None if spec is None else spec.clone()
        self._leaves: list[tuple[NestedKey, TensorSpec]]
        if spec is None:
            self._leaves = []
        elif isinstance(self._action_spec, Composite):
            self._leaves = [(k, cast(TensorSpec, self._action_spec[k])) for k in self._action_spec.keys(True, True)]
        else:
            self._leaves = [(self.action_key, cast(TensorSpec, self._action_spec))]
        # discrete leaves: (leaf, where its mask would be in the input, the given spec's leaf). The given
        # leaf is kept, not copied: an env's ActionMask updates its mask at every step, and draws follow it.
        given = [] if spec is None else ([spec[k] for k, _ in self._leaves] if isinstance(spec, Composite) else [spec])
        self._maskable: list[tuple[int, NestedKey, Categorical | OneHot]] = [
            (i, _mask_key(key), cast("Categorical | OneHot", given[i]))
            for i, (key, spec_) in enumerate(self._leaves)
            if isinstance(spec_, (Categorical, OneHot, MultiCategorical, MultiOneHot))
        ]

    def reads_masks(self, tensordict: TensorDictBase) -> bool:
        """Whether ``tensordict`` holds an action mask that this policy's draws follow (collectors ask it).

        Args:
            tensordict: the input the policy would be called on.

        Returns:
            True when an ``"action_mask"`` sits beside one of the policy's discrete action keys, or
            when the spec the policy was given carries a mask (which an ``ActionMask`` may change).

        Examples:
            >>> import torch
            >>> from tensordict import TensorDict
            >>> from tdrl.specs import Categorical
            >>> policy = RandomPolicy(Categorical(3))
            >>> policy.reads_masks(TensorDict(action_mask=torch.tensor([True, False, True])))
            True
            >>> policy.reads_masks(TensorDict(observation=torch.zeros(2)))
            False
        """
        return any(
            td_read(tensordict, mask_key) is not None or live.mask is not None for _, mask_key, live in self._maskable
        )

    def set_action_spec_from_env(self, env: Any) -> None:
        """Take ``env.full_action_spec`` as the spec, unless one is set already (collectors call it)."""
        if self._action_spec is None:
            self.action_spec = env.full_action_spec

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._action_spec is None:
            raise RuntimeError(_NO_SPEC)
        for i, mask_key, live in self._maskable:
            mask = td_read(tensordict, mask_key)
            cast(Categorical, self._leaves[i][1]).update_mask(live.mask if mask is None else mask)
        for key, spec in self._leaves:
            tensordict.set(key, spec.rand())
        return tensordict

    def draw(self, steps: int) -> list[tuple[NestedKey, torch.Tensor]]:
        """``steps`` random actions per key at once, stacked along a new first dim (for collectors).

        The draws follow the spec's own masks only: with masks that change per step (see
        :meth:`reads_masks`), call the policy at each step instead.
        """
        if self._action_spec is None:
            raise RuntimeError(_NO_SPEC)
        return [(key, spec.rand((steps,))) for key, spec in self._leaves]
