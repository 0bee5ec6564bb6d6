"""Policies and value functions that read and write TensorDicts.

- :class:`ProbabilisticActor`: a network that outputs distribution parameters, followed by
  a distribution that is sampled (``ExplorationType.RANDOM``) or read deterministically
  (``DETERMINISTIC``/``MODE``: its deterministic sample; ``MEAN``: the mean of a continuous
  distribution, the mode of a discrete one). Writes ``"action"`` and, with
  ``return_log_prob=True``, ``"sample_log_prob"`` (also written as ``"action_log_prob"``).
- :class:`Actor`: a deterministic policy, ``"observation" -> "action"``.
- :class:`TanhModule`: squashes a network's output onto the action bounds (deterministic
  bounded actors, TD3 and DDPG).
- :class:`ValueOperator`: ``"observation" -> "state_value"``, or
  ``("observation", "action") -> "state_action_value"``.

They are ``tensordict.nn`` modules (``ProbabilisticTensorDictSequential`` and
``TensorDictModule`` subclasses) with a lean per-step path that gives the same result
at a fraction of the dispatch cost (see ``tdrl/modules/_lean.py``).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from tdrl.modules import NormalParamExtractor, TanhNormal
    >>> from tdrl.specs import Bounded
    >>> net = nn.Sequential(nn.Linear(3, 4), NormalParamExtractor())
    >>> actor = ProbabilisticActor(
    ...     TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
    ...     in_keys=["loc", "scale"], spec=Bounded(-2.0, 2.0, shape=(2,)),
    ...     distribution_class=TanhNormal, distribution_kwargs={"low": -2.0, "high": 2.0},
    ...     return_log_prob=True)
    >>> td = actor(TensorDict(observation=torch.randn(3)))
    >>> td["action"].shape, td["sample_log_prob"].shape
    (torch.Size([2]), torch.Size([]))
    >>> value = ValueOperator(nn.Linear(3, 1), in_keys=["observation"])
    >>> value(td)["state_value"].shape
    torch.Size([1])
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictModuleBase,
)
from tensordict.nn.probabilistic import interaction_type
from torch import distributions as D
from torch import nn

from tdrl._compat import DistSampleHook, draws_with_the_default_generator, td_read, td_write, tensordict_draw
from tdrl.modules._lean import lean_steps, missing_key_error, own_lean_step, run_steps, skip_existing
from tdrl.modules.distributions._bounds import _Box
from tdrl.modules.distributions.continuous import Delta
from tdrl.specs import Composite, NestedKey, TensorSpec

if TYPE_CHECKING:
    from typing import Protocol

    from tdrl.modules._lean import LeanStep

    class _DeterministicSample(Protocol):
        """A distribution of tdrl's (or TorchRL's) that names its deterministic action."""

        @property
        def deterministic_sample(self) -> torch.Tensor: ...


__all__ = [
    "ProbabilisticActor",
    "Actor",
    "TanhModule",
    "ValueOperator",
    "LOG_PROB_KEY",
    "LOG_PROB_ALIAS",
    "get_log_prob",
]

LOG_PROB_KEY = "sample_log_prob"
"""Where a :class:`ProbabilisticActor` writes the log-probability of its action."""
LOG_PROB_ALIAS = "action_log_prob"
"""The name TorchRL >= 0.8 uses; written too (same tensor) unless ``log_prob_alias=None``."""

_DETERMINISTIC = (InteractionType.DETERMINISTIC, InteractionType.MEAN, InteractionType.MODE)


def _log_prob_keys_for(
    action_key: NestedKey, log_prob_key: NestedKey, log_prob_alias: NestedKey | None
) -> tuple[NestedKey, NestedKey | None]:
    """The log-prob keys of an actor writing ``action_key``: next to a nested action, as TorchRL.

    An action under a group (``("agents", "action")``) has one log-prob per agent, shape
    ``[*B, n_agents]``: it belongs in the group's sub-TensorDict, where TorchRL writes it
    (``("agents", "action_log_prob")``), not at the root, where the actors of two groups would
    overwrite each other's. Keys the caller chose (other than the defaults) are kept.

    Examples:
        >>> _log_prob_keys_for(("agents", "action"), LOG_PROB_KEY, LOG_PROB_ALIAS)
        (('agents', 'sample_log_prob'), ('agents', 'action_log_prob'))
        >>> _log_prob_keys_for("action", LOG_PROB_KEY, LOG_PROB_ALIAS)
        ('sample_log_prob', 'action_log_prob')
    """
    if not isinstance(action_key, tuple) or len(action_key) < 2:
        return log_prob_key, log_prob_alias
    group, leaf = action_key[:-1], action_key[-1]
    if log_prob_key == LOG_PROB_KEY:
        log_prob_key = (*group, LOG_PROB_KEY)
    if log_prob_alias == LOG_PROB_ALIAS:
        log_prob_alias = (*group, f"{leaf}_log_prob")
    return log_prob_key, log_prob_alias


def _is_discrete(dist: D.Distribution) -> bool:
    try:
        return bool(getattr(dist.support, "is_discrete", False))
    except NotImplementedError:
        return False


def _deterministic_action(dist: D.Distribution, itype: InteractionType) -> torch.Tensor | None:
    """The action of a non-random exploration type, or None to let tensordict decide.

    ``DETERMINISTIC`` and ``MODE`` give the distribution's ``deterministic_sample``.
    ``MEAN`` gives the mean of a continuous distribution (for a TanhNormal, the expectation
    of the squashed action, not the squashed location) and the ``deterministic_sample`` of a
    discrete one, whose mean (a vector of probabilities) is not an action.
    """
    if itype is InteractionType.MEAN:
        if not _is_discrete(dist):
            try:
                return dist.mean
            except NotImplementedError:
                return None  # tensordict's empirical estimate
        if not hasattr(type(dist), "deterministic_sample"):
            return getattr(dist, "mode", None)
    if hasattr(type(dist), "deterministic_sample"):
        return cast("_DeterministicSample", dist).deterministic_sample
    return None


def get_log_prob(tensordict: TensorDictBase, key: NestedKey | None = None) -> torch.Tensor:
    """The action log-probability stored in ``tensordict``, under either of its names.

    Args:
        tensordict: data written by a :class:`ProbabilisticActor` (or a collector).
        key: the key to read first (default ``"sample_log_prob"``).

    Raises:
        KeyError: when neither ``key``, ``"sample_log_prob"`` nor ``"action_log_prob"`` is present.

    Examples:
        >>> from tensordict import TensorDict
        >>> get_log_prob(TensorDict(action_log_prob=torch.zeros(2), batch_size=[2]))
        tensor([0., 0.])
    """
    for name in (key, LOG_PROB_KEY, LOG_PROB_ALIAS):
        if name is not None:
            value = tensordict.get(name, None)
            if value is not None:
                return value
    raise KeyError(
        f"no action log-probability in the TensorDict (looked for {key or LOG_PROB_KEY!r} and "
        f"{LOG_PROB_ALIAS!r}); its keys are {sorted(map(str, tensordict.keys(True, True)))}. "
        f"Collect the data with ProbabilisticActor(..., return_log_prob=True)."
    )


# --- construction-time checks -----------------------------------------------------------
def _accepted_kwargs(cls: Callable) -> set[str] | None:
    """The keyword names ``cls`` accepts, or ``None`` when it takes ``**kwargs`` we cannot list."""
    extra = set(getattr(cls, "_extra_kwarg_names", ()))
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    names = set()
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            if not extra and not getattr(cls, "_strict_kwargs", False):
                return None
        elif p.kind is not p.VAR_POSITIONAL:
            names.add(p.name)
    return names | extra


def _check_dist_kwargs(cls: Callable, dist_keys: Sequence[str], kwargs: dict) -> None:
    accepted = _accepted_kwargs(cls)
    if accepted is None:
        return
    name = getattr(cls, "__name__", repr(cls))
    for key in dist_keys:
        if key not in accepted:
            raise TypeError(
                f"ProbabilisticActor: in_key {key!r} is passed to {name} as a keyword argument, "
                f"but {name} accepts {sorted(accepted)}. Map the entries with a dict, e.g. "
                f"in_keys={{'loc': 'my_loc', 'scale': 'my_scale'}}."
            )
    for key in kwargs:
        if key not in accepted:
            raise TypeError(
                f"ProbabilisticActor: distribution_kwargs has {key!r}, which {name} does not accept; "
                f"it accepts {sorted(accepted)}."
            )
    bounds = [kwargs.get(k) for k in ("low", "min", "minimum")] + [kwargs.get(k) for k in ("high", "max", "maximum")]
    low = next((b for b in bounds[:3] if b is not None), None)
    high = next((b for b in bounds[3:] if b is not None), None)
    if low is not None and high is not None:
        ref = low if isinstance(low, torch.Tensor) else high if isinstance(high, torch.Tensor) else None
        dtype = ref.dtype if ref is not None and ref.dtype.is_floating_point else torch.get_default_dtype()
        _Box(low, high, dtype, torch.device("cpu") if ref is None else ref.device)  # raises on low >= high


def _leaf_action_spec(spec: TensorSpec | Composite | None, key: NestedKey) -> TensorSpec | None:
    if spec is None:
        return None
    if isinstance(spec, Composite):
        if key not in spec:
            raise KeyError(
                f"the action spec is a Composite without the action entry {key!r} (it has "
                f"{spec.keys(True, True)}); pass env.action_spec or a Composite holding {key!r}."
            )
        return cast(TensorSpec, spec[key])  # an action entry is a leaf
    return spec


def _as_composite(spec: TensorSpec | Composite | None, key: NestedKey) -> Composite | None:
    if spec is None or isinstance(spec, Composite):
        return spec
    if not isinstance(spec, TensorSpec):
        raise TypeError(f"spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}.")
    return Composite({key: spec})


class _DistModule(DistSampleHook):
    """The distribution head of a :class:`ProbabilisticActor`.

    Builds the distribution from the parameters in the TensorDict, draws the action the
    exploration type asks for, projects it onto the spec when ``safe``, and writes its
    log-probability under ``log_prob_key`` and ``log_prob_alias``.
    """

    def __init__(
        self,
        in_keys: Any,
        out_keys: list,
        *,
        spec: Composite | None,
        safe: bool,
        log_prob_alias: NestedKey | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_keys=in_keys, out_keys=out_keys, **kwargs)
        cls = self.distribution_class
        factory = getattr(cls, "_factory", None)
        if factory is not None:
            self._build = factory(**dict(self.distribution_kwargs))
        else:
            fixed = dict(self.distribution_kwargs)
            self._build = functools.partial(cls, **fixed) if fixed else cls
        self._pairs = [(dk[-1] if isinstance(dk, tuple) else dk, tk) for dk, tk in zip(self.dist_keys, self.in_keys)]
        self._spec = spec
        self._action_key = self.dist_sample_keys[0]
        self._action_spec = _leaf_action_spec(spec, self._action_key)
        self.safe = bool(safe)
        if self.safe and self._action_spec is None:
            raise ValueError(
                "ProbabilisticActor(safe=True) needs the action spec to project samples onto: "
                "pass spec=env.action_spec."
            )
        self.log_prob_alias = log_prob_alias
        self._lp_key = self.log_prob_keys[0]
        self._spec_checked = self._action_spec is None
        self._fast = (
            len(self.dist_sample_keys) == 1 and self.num_samples is None and draws_with_the_default_generator(self)
        )

    @property  # type: ignore[misc]  # read-only, as tensordict's own out_keys that it extends
    def out_keys(self) -> list:
        keys = super().out_keys
        if self.return_log_prob and self.log_prob_alias is not None and self.log_prob_alias not in keys:
            keys = [*keys, self.log_prob_alias]
        return keys

    def get_dist(self, tensordict: TensorDictBase) -> D.Distribution:
        kwargs = {}
        for dist_key, td_key in self._pairs:
            value = td_read(tensordict, td_key)
            if value is None:
                raise missing_key_error("ProbabilisticActor", td_key, tensordict, "distribution parameter")
            kwargs[dist_key] = value
        return self._build(**kwargs)

    build_dist_from_params = get_dist

    def deterministic_action(self, dist: D.Distribution, interaction_type: Any) -> torch.Tensor | None:
        """tdrl's action for ``MEAN``/``MODE``/``DETERMINISTIC`` (see ``_deterministic_action``), else ``None``."""
        if interaction_type in _DETERMINISTIC:
            return _deterministic_action(dist, interaction_type)
        return None

    def _check_spec(self, action: torch.Tensor, dist: D.Distribution) -> None:
        spec = self._action_spec
        n = len(dist.event_shape)
        if n and spec is not None and spec.ndim >= n and tuple(action.shape[-n:]) != tuple(spec.shape[-n:]):
            raise ValueError(
                f"ProbabilisticActor: the distribution gives actions of shape {tuple(action.shape[-n:])} "
                f"(per sample) but the action spec has shape {tuple(spec.shape)}. The network before the "
                f"distribution must output parameters of the spec's shape (for TanhNormal with "
                f"NormalParamExtractor: a last layer of 2 * {spec.shape[-1]} features)."
            )
        self._spec_checked = True

    def sample_into(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The lean forward: sample (or read) the action and write it and its log-prob."""
        dist = self.get_dist(tensordict)
        itype = interaction_type() or self.default_interaction_type
        action: torch.Tensor | None
        if itype is InteractionType.RANDOM:
            action = dist.rsample() if dist.has_rsample else dist.sample()
        else:
            action = self.deterministic_action(dist, itype)
            if action is None:
                action = tensordict_draw(self, dist, itype)
        if not self._spec_checked:
            self._check_spec(action, dist)
        if self.safe:
            action = cast(TensorSpec, self._action_spec).project(action)  # safe: __init__ required the spec
        td_write(tensordict, self._action_key, action)
        if self.return_log_prob:
            log_prob = dist.log_prob(action)
            td_write(tensordict, self._lp_key, log_prob)
            if self.log_prob_alias is not None:
                td_write(tensordict, self.log_prob_alias, log_prob)
        return tensordict

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        if self._fast and len(args) == 1 and not kwargs and isinstance(args[0], TensorDictBase) and not skip_existing():
            return self.sample_into(args[0])
        out = super().forward(*args, **kwargs)
        if self.return_log_prob and self.log_prob_alias is not None and isinstance(out, TensorDictBase):
            log_prob = out.get(self.log_prob_keys[0], None)
            if log_prob is not None:
                out.set(self.log_prob_alias, log_prob)
        return out


class ProbabilisticActor(ProbabilisticTensorDictSequential):
    """A stochastic policy: a parameter network followed by a distribution.

    ``module`` writes the distribution's parameters (e.g. ``"loc"``/``"scale"``); the
    actor builds ``distribution_class(**params, **distribution_kwargs)`` and writes an
    action under ``out_keys[0]``: a sample under ``ExplorationType.RANDOM``, the
    distribution's ``deterministic_sample`` under ``DETERMINISTIC``/``MODE``, and under
    ``MEAN`` the mean of a continuous distribution (the mode of a discrete one), as TorchRL
    (``default_interaction_type`` outside any ``set_exploration_type`` block).

    Args:
        module: a ``TensorDictModule`` (or sequence) writing the distribution parameters.
        in_keys: the parameter keys, passed to the distribution under the same names; or a
            dict ``{distribution_kwarg: tensordict_key}``.
        out_keys: where the action goes (default ``["action"]``).

    Keyword Args:
        spec: the action spec (a leaf spec, or a ``Composite`` holding ``out_keys[0]``).
        safe: project each action onto ``spec`` (``spec.project``) before writing it.
        distribution_class: a ``torch.distributions.Distribution`` class (default :class:`Delta`).
        distribution_kwargs: fixed keyword arguments of the distribution (e.g. ``low``/``high``,
            or TorchRL's older ``min``/``max``).
        return_log_prob: also write the action's log-probability.
        log_prob_key: where to write it (default ``"sample_log_prob"``; for an action under a
            group, e.g. ``("agents", "action")``, in the group: ``("agents", "sample_log_prob")``).
        log_prob_alias: a second key holding the same tensor (default ``"action_log_prob"``,
            the name today's TorchRL uses, or ``("agents", "action_log_prob")`` for a grouped
            action as TorchRL writes it; ``None`` writes only ``log_prob_key``).
        default_interaction_type: the exploration type used outside any
            ``set_exploration_type`` block (default ``DETERMINISTIC``, as TorchRL; collectors
            set ``RANDOM``).
        cache_dist, n_empirical_estimate, num_samples: as in
            ``tensordict.nn.ProbabilisticTensorDictModule``.

    Raises:
        TypeError: when an in_key or a ``distribution_kwargs`` name is not a keyword of
            ``distribution_class``, or ``module`` is not a TensorDict module.
        ValueError: when ``low >= high``, ``safe=True`` without a spec, or (on the first
            call) the actions do not have the spec's shape.
        KeyError: on a call, when an input entry is missing (the message lists the keys present).

    Examples:
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import NormalParamExtractor, TanhNormal
        >>> from tdrl.envs.utils import ExplorationType, set_exploration_type
        >>> net = nn.Sequential(nn.LazyLinear(2), NormalParamExtractor())
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=TanhNormal,
        ...     distribution_kwargs={"min": -1.0, "max": 1.0}, return_log_prob=True)
        >>> td = TensorDict(observation=torch.randn(5, 3), batch_size=[5])
        >>> with set_exploration_type(ExplorationType.MEAN):
        ...     a1 = actor(td.clone())["action"]
        ...     a2 = actor(td.clone())["action"]
        >>> torch.equal(a1, a2)
        True
        >>> actor.get_dist(td).log_prob(a1).shape
        torch.Size([5])
    """

    def __init__(
        self,
        module: TensorDictModuleBase,
        in_keys: NestedKey | Sequence[NestedKey] | dict[str, NestedKey],
        out_keys: Sequence[NestedKey] | None = None,
        *,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
        distribution_class: type = Delta,
        distribution_kwargs: dict | None = None,
        return_log_prob: bool = False,
        log_prob_key: NestedKey = LOG_PROB_KEY,
        log_prob_alias: NestedKey | None = LOG_PROB_ALIAS,
        default_interaction_type: InteractionType = InteractionType.DETERMINISTIC,
        cache_dist: bool = False,
        n_empirical_estimate: int = 1000,
        num_samples: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(
                f"ProbabilisticActor got unexpected keyword arguments {sorted(kwargs)}; distribution "
                f"options go in distribution_kwargs={{...}}."
            )
        if not isinstance(module, TensorDictModuleBase):
            raise TypeError(
                f"ProbabilisticActor needs a TensorDict module writing the distribution parameters, got "
                f"{type(module).__name__}. Wrap the network: TensorDictModule(net, in_keys=['observation'], "
                f"out_keys=['loc', 'scale'])."
            )
        if isinstance(in_keys, (str, tuple)):
            in_keys = [in_keys]
        out_keys = (
            ["action"] if out_keys is None else ([out_keys] if isinstance(out_keys, (str, tuple)) else list(out_keys))
        )
        distribution_kwargs = dict(distribution_kwargs or {})
        dist_keys = (
            list(in_keys.keys())
            if isinstance(in_keys, dict)
            else [k[-1] if isinstance(k, tuple) else k for k in in_keys]
        )
        _check_dist_kwargs(distribution_class, dist_keys, distribution_kwargs)
        log_prob_key, log_prob_alias = _log_prob_keys_for(out_keys[0], log_prob_key, log_prob_alias)
        spec = _as_composite(spec, out_keys[0])
        head = _DistModule(
            in_keys=in_keys,
            out_keys=out_keys,
            spec=spec,
            safe=safe,
            log_prob_alias=log_prob_alias,
            default_interaction_type=default_interaction_type,
            distribution_class=distribution_class,
            distribution_kwargs=distribution_kwargs,
            return_log_prob=return_log_prob,
            log_prob_key=log_prob_key,
            cache_dist=cache_dist,
            n_empirical_estimate=n_empirical_estimate,
            num_samples=num_samples,
        )
        super().__init__(module, head)
        self._spec = spec
        self.__dict__["_head"] = head  # a plain reference: the head is registered as module[-1]
        owners: list = []
        steps = lean_steps(module, owners)
        samples = out_keys[0] not in getattr(module, "out_keys", [])  # else the module writes the action itself
        self._lean_steps = steps if (steps is not None and head._fast and samples) else None
        self._lean_owners = [*owners, head]

    @property
    def spec(self) -> Composite | None:
        """The action spec, as a ``Composite`` holding ``out_keys[0]`` (as TorchRL)."""
        return self._spec

    @property
    def dist_module(self) -> _DistModule:
        """The distribution head (the last module)."""
        return self._head

    def _lean_ok(self, args: tuple, kwargs: dict) -> bool:
        return (
            self._lean_steps is not None
            and len(args) == 1
            and not kwargs
            and isinstance(args[0], TensorDictBase)
            and not skip_existing()
        )

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        if self._lean_ok(args, kwargs):
            tensordict = args[0]
            if run_steps(cast("list[LeanStep]", self._lean_steps), self._lean_owners, tensordict):  # _lean_ok
                return self._head.sample_into(tensordict)
        return super().forward(*args, **kwargs)

    def get_dist(
        self, tensordict: TensorDictBase, tensordict_out: TensorDictBase | None = None, **kwargs: Any
    ) -> D.Distribution:
        """The action distribution for ``tensordict`` (runs the parameter network; for losses).

        The parameters are written into ``tensordict`` (as TorchRL does).
        """
        lean = tensordict_out is None and self._lean_ok((tensordict,), kwargs)
        if lean and run_steps(cast("list[LeanStep]", self._lean_steps), self._lean_owners, tensordict):  # _lean_ok
            return self._head.get_dist(tensordict)
        return super().get_dist(tensordict, tensordict_out, **kwargs)

    @property
    def log_prob_key(self) -> NestedKey:
        """Where the action's log-probability is written."""
        return self._head.log_prob_keys[0]


class _LeanTDModule(TensorDictModule):
    """A TensorDictModule that runs the lean path when it is equivalent to tensordict's."""

    def _setup_lean(self) -> None:
        self._lean = own_lean_step(self)

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        lean = self.__dict__.get("_lean")
        if (
            lean is not None
            and len(args) == 1
            and not kwargs
            and isinstance(args[0], TensorDictBase)
            and not skip_existing()
        ):
            lean(args[0])
            return args[0]
        return super().forward(*args, **kwargs)


class ValueOperator(_LeanTDModule):
    """A value network: writes ``"state_value"``, or ``"state_action_value"`` when it reads ``"action"``.

    Args:
        module: the network; called with the in_keys' tensors in order.
        in_keys: what it reads (default ``["observation"]``).
        out_keys: what it writes (default as above).

    Examples:
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> q = ValueOperator(lambda o, a: torch.cat([o, a], -1).sum(-1, keepdim=True),
        ...                   in_keys=["observation", "action"])
        >>> q.out_keys
        ['state_action_value']
        >>> q(TensorDict(observation=torch.ones(3), action=torch.ones(1)))["state_action_value"]
        tensor([4.])
    """

    def __init__(
        self,
        module: nn.Module | Callable,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        in_keys = ["observation"] if in_keys is None else ([in_keys] if isinstance(in_keys, (str, tuple)) else in_keys)
        if out_keys is None:
            out_keys = ["state_action_value"] if "action" in in_keys else ["state_value"]
        # tensordict takes lists (a tuple is one nested key) and rejects other sequences itself
        super().__init__(module, in_keys=cast("list[NestedKey]", in_keys), out_keys=cast("list[NestedKey]", out_keys))
        self._setup_lean()


class Actor(_LeanTDModule):
    """A deterministic policy: ``action = module(observation)``.

    Args:
        module: the network.
        in_keys: what it reads (default ``["observation"]``).
        out_keys: what it writes (default ``["action"]``).

    Keyword Args:
        spec: the action spec (a leaf spec or a ``Composite`` holding ``out_keys[0]``).
        safe: project the action onto ``spec`` after each call.

    Examples:
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> actor = Actor(lambda obs: 10 * obs, spec=Bounded(-1.0, 1.0, shape=(2,)), safe=True)
        >>> actor(TensorDict(observation=torch.tensor([0.05, 3.0])))["action"]
        tensor([0.5000, 1.0000])
    """

    def __init__(
        self,
        module: nn.Module | Callable,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        *,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
        **kwargs: Any,
    ) -> None:
        in_keys = ["observation"] if in_keys is None else in_keys
        out_keys = (
            ["action"] if out_keys is None else ([out_keys] if isinstance(out_keys, (str, tuple)) else list(out_keys))
        )
        # tensordict takes lists (a tuple is one nested key) and rejects other sequences itself
        super().__init__(module, in_keys=cast("list[NestedKey]", in_keys), out_keys=out_keys, **kwargs)
        self._spec = _as_composite(spec, out_keys[0])
        self._action_spec = _leaf_action_spec(self._spec, out_keys[0])
        if safe and self._action_spec is None:
            raise ValueError(
                "Actor(safe=True) needs the action spec to project actions onto: pass spec=env.action_spec."
            )
        self.safe = bool(safe)
        self._setup_lean()

    @property
    def spec(self) -> Composite | None:
        return self._spec

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        out = super().forward(*args, **kwargs)
        if self.safe and isinstance(out, TensorDictBase):
            key = self.out_keys[0]
            out.set(key, cast(TensorSpec, self._action_spec).project(out.get(key)))  # safe: __init__ required it
        return out


def _bound(
    given: float | torch.Tensor | None, from_spec: torch.Tensor | None, default: float, name: str, key: NestedKey
) -> torch.Tensor:
    """A bound of a TanhModule output: the given one (it must match the spec's), else the spec's, else the default."""
    if given is None:
        value = from_spec if from_spec is not None else torch.tensor(default)
    else:
        value = torch.as_tensor(given)
        if from_spec is not None and not bool((value == from_spec).all()):
            raise ValueError(
                f"TanhModule: {name}={given!r} for {key!r} differs from the spec's {name} {from_spec}; "
                f"give one of the two (the spec's bounds are used when {name} is omitted)."
            )
    value = value.clone()
    return value if value.is_floating_point() else value.to(torch.get_default_dtype())


class TanhModule(TensorDictModuleBase):
    """Squash entries onto a box with tanh: ``low + (high - low) * (tanh(x) + 1) / 2``.

    The last layer of a deterministic actor with bounded actions (TD3, DDPG):
    ``TensorDictSequential(TensorDictModule(net, ["observation"], ["param"]),
    TanhModule(["param"], ["action"], spec=env.action_spec))``. The bounds of each output
    are the buffers ``"<key>_low"`` and ``"<key>_high"`` (a nested key joined with ``_``),
    as TorchRL names them, so state dicts load across the two.

    Args:
        in_keys: the entries to squash.
        out_keys: where the squashed values go, one per in_key (default: the in_keys, in place).

    Keyword Args:
        spec: the output spec: one leaf spec for every out_key, or a ``Composite`` holding
            them. An output's bounds default to its spec's ``space.low``/``space.high``.
        low: the lower bound (a float or a tensor that broadcasts to the output). Default:
            the spec's, or -1 without a spec. Given with a spec, it must equal the spec's.
        high: the upper bound, as ``low`` (default: the spec's, or 1).
        clamp: keep ``tanh(x)`` within ``[-1 + r, 1 - r]`` (``r`` the dtype's
            resolution, 1e-6 for float32), so that an output can be mapped back.

    Raises:
        ValueError: for in_keys and out_keys of different lengths, a bound that contradicts
            the spec, or ``high < low``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Bounded
        >>> squash = TanhModule(["param"], ["action"], spec=Bounded(-2.0, 2.0, shape=(2,)))
        >>> squash(TensorDict(param=torch.tensor([0.0, 100.0])))["action"]
        tensor([0., 2.])
        >>> TanhModule(["x"], low=0.0, high=3.0)(TensorDict(x=torch.zeros(1)))["x"]
        tensor([1.5000])
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey],
        out_keys: Sequence[NestedKey] | None = None,
        *,
        spec: TensorSpec | Composite | None = None,
        low: float | torch.Tensor | None = None,
        high: float | torch.Tensor | None = None,
        clamp: bool = False,
    ) -> None:
        super().__init__()
        in_keys = [in_keys] if isinstance(in_keys, (str, tuple)) else list(in_keys)
        if out_keys is None:
            out_keys = list(in_keys)
        out_keys = [out_keys] if isinstance(out_keys, (str, tuple)) else list(out_keys)
        if len(in_keys) != len(out_keys):
            raise ValueError(
                f"TanhModule: in_keys {in_keys} and out_keys {out_keys} differ in length; give one out_key "
                "per in_key, or omit out_keys to squash in place."
            )
        self.in_keys = in_keys
        self.out_keys = out_keys
        if spec is not None and not isinstance(spec, (TensorSpec, Composite)):
            raise TypeError(f"TanhModule: spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}.")
        if isinstance(spec, Composite):
            leaves = [cast("TensorSpec | None", spec.get(key)) for key in out_keys]
            self._spec: Composite | None = spec
        else:
            leaves = [spec] * len(out_keys)
            self._spec = None if spec is None else Composite(dict.fromkeys(out_keys, spec))
        self._bound_names: list[tuple[str, str]] = []
        for key, leaf in zip(out_keys, leaves):
            space = getattr(leaf, "space", None)
            low_t = _bound(low, getattr(space, "low", None), -1.0, "low", key)
            high_t = _bound(high, getattr(space, "high", None), 1.0, "high", key)
            if bool((high_t < low_t).any()):
                raise ValueError(f"TanhModule: high {high_t} is below low {low_t} for {key!r}; swap them.")
            name = key if isinstance(key, str) else "_".join(key)
            self.register_buffer(f"{name}_low", low_t)
            self.register_buffer(f"{name}_high", high_t)
            self._bound_names.append((f"{name}_low", f"{name}_high"))
        self.clamp = bool(clamp)

    @property
    def spec(self) -> Composite | None:
        """The output spec, as a ``Composite`` keyed by the out_keys (``None`` without one)."""
        return self._spec

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        buffers = self._buffers
        for in_key, out_key, (low_name, high_name) in zip(self.in_keys, self.out_keys, self._bound_names):
            x = td_read(tensordict, in_key)
            if x is None:
                raise missing_key_error("TanhModule", in_key, tensordict)
            y = x.tanh()
            if self.clamp:
                resolution = torch.finfo(y.dtype).resolution
                y = y.clamp(-1 + resolution, 1 - resolution)
            low, high = cast(torch.Tensor, buffers[low_name]), cast(torch.Tensor, buffers[high_name])
            td_write(tensordict, out_key, low + (high - low) * (y + 1) / 2)
        return tensordict
