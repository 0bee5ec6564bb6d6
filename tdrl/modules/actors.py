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
    TensorDictModuleBase,
)
from tensordict.nn.probabilistic import interaction_type
from torch import distributions as D

from tdrl._compat import DistSampleHook, draws_with_the_default_generator, td_read, td_write, tensordict_draw
from tdrl.modules._deterministic import Actor, TanhModule, ValueOperator, _as_composite, _leaf_action_spec
from tdrl.modules._lean import lean_steps, missing_key_error, run_steps, skip_existing
from tdrl.modules.distributions._bounds import _Box
from tdrl.modules.distributions.continuous import Delta
from tdrl.modules.distributions.tanh_normal import _TanhNormalBuilder
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

_DIRECT_DRAW = {"on": True}  # tests switch it off to compare with the distribution object's path

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
        # the entries of TanhNormal's (loc, scale), for the direct draw (``_draw_direct``)
        params = dict(self._pairs)
        self._loc_scale = (params["loc"], params["scale"]) if sorted(params) == ["loc", "scale"] else None
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

    def _draw_direct(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """A sampled action and its log-prob computed without the distribution object, or ``None``.

        Only for a plain TanhNormal builder (``sample_and_log_prob``: the distribution's own
        operations, so the same values and draws), under ``RANDOM``, without ``safe`` (whose
        projection comes between the draw and the score), once the spec check has run, and
        outside ``torch.compile`` (which traces the distribution's methods).
        """
        build = self._build
        if (
            not _DIRECT_DRAW["on"]
            or type(build) is not _TanhNormalBuilder
            or self.safe
            or not self._spec_checked
            or self._loc_scale is None
        ):
            return None
        if (interaction_type() or self.default_interaction_type) is not InteractionType.RANDOM:
            return None
        if torch.compiler.is_compiling():
            return None
        loc_key, scale_key = self._loc_scale
        loc, scale = td_read(tensordict, loc_key), td_read(tensordict, scale_key)
        if loc is None or scale is None:
            return None  # the general path names the missing entry
        return build.sample_and_log_prob(loc, scale, self.return_log_prob)

    def sample_into(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The lean forward: sample (or read) the action and write it and its log-prob."""
        direct = self._draw_direct(tensordict)
        if direct is not None:
            td_write(tensordict, self._action_key, direct[0])
            if direct[1] is not None:
                td_write(tensordict, self._lp_key, direct[1])
                if self.log_prob_alias is not None:
                    td_write(tensordict, self.log_prob_alias, direct[1])
            return tensordict
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
