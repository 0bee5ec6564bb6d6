"""``LossModule``: the base of every tdrl loss.

A loss is an ``nn.Module`` that reads a TensorDict and returns a TensorDict of scalar
``loss_*`` entries (sum them and call ``backward``) plus detached diagnostics. It owns

- its input keys, renamable with :meth:`LossModule.set_keys`;
- its value estimator (:attr:`LossModule.value_estimator`), built on first use or with
  :meth:`LossModule.make_value_estimator`;
- optional target copies of its networks' parameters (``target_<name>_params``), kept
  in sync by :class:`~tdrl.objectives.SoftUpdate` / :class:`~tdrl.objectives.HardUpdate`.

Examples:
    >>> import torch
    >>> from tensordict.nn import TensorDictModule
    >>> class Toy(LossModule):
    ...     def __init__(self, net):
    ...         super().__init__()
    ...         self._register_network(net, "value_network", create_target_params=True)
    >>> loss = Toy(TensorDictModule(torch.nn.Linear(2, 1), ["x"], ["state_value"]))
    >>> sorted(loss.target_value_network_params.keys(True, True))
    [('module', 'bias'), ('module', 'weight')]
    >>> type(loss.make_value_estimator("td0").value_estimator).__name__
    'TD0Estimator'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl._compat import ConversionNotice, module_children, module_parameters
from tdrl.objectives._keys import MissingKeyError, keys_repr, rename_keys
from tdrl.objectives.utils import ValueEstimators, default_value_kwargs
from tdrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator, ValueEstimatorBase

__all__ = ["LossModule"]

_ESTIMATOR_CLASSES: dict[ValueEstimators, type[ValueEstimatorBase]] = {
    ValueEstimators.GAE: GAE,
    ValueEstimators.TD0: TD0Estimator,
    ValueEstimators.TD1: TD1Estimator,
    ValueEstimators.TDLambda: TDLambdaEstimator,
}
_NO_LAMBDA = (ValueEstimators.TD0, ValueEstimators.TD1)


class LossModule(ConversionNotice):
    """Base class of the loss modules.

    Subclasses declare their keys in a nested ``_AcceptedKeys`` dataclass (set as
    ``default_keys``), their default estimator in ``default_value_estimator``, register
    their networks with ``_register_network()``, and implement ``forward``.

    Compiling: the PPO, A2C, REINFORCE, SAC and DQN losses, like the policies and
    value operators built from ``tdrl.modules``, trace into a single graph, so
    ``torch.compile(loss, fullgraph=True)`` works; call ``backward()`` and the optimizer
    on its output as usual (compiling ``optimizer.step`` as well saves a little more).
    The first call compiles (tens of seconds on a CPU) and later calls reuse the graph;
    keep the minibatch size constant (a new size compiles again). Under compilation
    the actor-critic losses skip their ``check_finite`` test (it reads the losses on the
    host, which would split the graph): run a batch eagerly to find which input holds a
    NaN. Build ``torch.distributions`` classes with ``validate_args=False`` (tdrl's own
    distributions are), since argument validation branches on tensor values.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import MLP, NormalParamExtractor, ProbabilisticActor, TanhNormal, ValueOperator
        >>> from tdrl.objectives import ClipPPOLoss
        >>> net = nn.Sequential(MLP(in_features=3, out_features=2, num_cells=[16]), NormalParamExtractor())
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=TanhNormal, return_log_prob=True)
        >>> critic = ValueOperator(MLP(in_features=3, out_features=1, num_cells=[16]), in_keys=["observation"])
        >>> loss = ClipPPOLoss(actor, critic)
        >>> # the default backend (inductor) generates fused kernels; "eager" keeps this example fast
        >>> compiled_loss = torch.compile(loss, fullgraph=True, backend="eager")
        >>> with torch.no_grad():
        ...     data = actor(TensorDict({"observation": torch.randn(8, 3)}, [8]))
        >>> data.update({"advantage": torch.randn(8, 1), "value_target": torch.randn(8, 1)})  # doctest: +ELLIPSIS
        TensorDict(...)
        >>> out = compiled_loss(data)
        >>> (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
        >>> torch.allclose(out["loss_critic"], loss(data)["loss_critic"])
        True
    """

    @dataclass
    class _AcceptedKeys:
        """No keys: subclasses define theirs."""

    default_keys: type = _AcceptedKeys
    default_value_estimator: ValueEstimators | None = None
    SUPPORTED_VALUE_ESTIMATORS: tuple[ValueEstimators, ...] = tuple(ValueEstimators)
    _value_estimator: ValueEstimatorBase | None  # kept in __dict__, outside the module tree (see __init__)

    def __init__(self) -> None:
        super().__init__()
        self.tensor_keys = self.default_keys()
        # The estimator is held outside the module tree: the networks it calls belong to
        # the loss already, and its gamma/lmbda should not enter the loss's state_dict
        # (a fresh loss, whose estimator is built on first use, must load it).
        self.__dict__["_value_estimator"] = None
        self._value_hyperparams: dict[str, Any] = {}
        self._target_names: list[str] = []

    # ----------------------------------------------------------- parameters
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """The trainable parameters of the loss's networks, as ``nn.Module.parameters``.

        The target copies (``target_<name>_params``) are buffers, so they are not among them.
        The list is remembered between calls (a DQN step calls this once per update, for
        gradient clipping, and walking the module tree costs about as much as a small
        optimizer step's Python overhead). It is rebuilt whenever it could be stale: each
        call checks that every module of the tree still holds the same parameter and
        submodule objects, so a module added later (``loss.extra = nn.Linear(...)``), a
        parameter replaced (even by a direct write into ``_parameters``, as
        ``TensorDict.to_module`` does) or removed, is seen on the next call.

        Examples:
            >>> import torch
            >>> from tensordict.nn import TensorDictModule
            >>> from tdrl.modules import QValueActor
            >>> from tdrl.objectives import DQNLoss
            >>> loss = DQNLoss(QValueActor(torch.nn.Linear(3, 2), action_space="categorical"))
            >>> len(list(loss.parameters()))  # the target copy is not trained
            2
            >>> loss.extra = torch.nn.Linear(2, 2)
            >>> len(list(loss.parameters()))
            4
        """
        if not recurse:
            return super().parameters(recurse=False)
        cache = self.__dict__.get("_parameters_cache")
        if cache is not None:
            _, holders, seen, params = cache
            if [*map(id, chain.from_iterable(map(dict.values, holders)))] == seen:
                return iter(params)
        # the cache holds the modules and parameters it saw, so that none of their ids can be
        # reused by a new object while it lives
        modules = list(self.modules())
        holders = [d for m in modules for d in (module_parameters(m), module_children(m))]
        seen = [*map(id, chain.from_iterable(map(dict.values, holders)))]
        params = list(super().parameters(recurse=True))
        self.__dict__["_parameters_cache"] = (modules, holders, seen, params)
        return iter(params)

    def __getstate__(self) -> dict[str, Any]:
        # the caches hold object ids and storage addresses, meaningless in a copy: the copy builds its own
        state = dict(super().__getstate__())
        state.pop("_parameters_cache", None)
        state.pop("_fast_state", None)
        return state

    # --------------------------------------------------------- configuration
    def _configuration_changed(self) -> None:
        """Bumps ``_config_version``: something that can alter what the loss computes changed.

        Attribute assignment and deletion on the loss (a new network, new target parameters,
        ``loss_function`` ...), :meth:`set_keys`, :meth:`make_value_estimator` and the
        ``value_estimator`` setter, ``to`` / ``double`` / ``cuda`` (new parameter storage) and
        ``load_state_dict`` call it. A loss that caches a plan of its computation compares the
        counter on each call instead of re-reading its configuration.
        """
        self.__dict__["_config_version"] = self.__dict__.get("_config_version", 0) + 1

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        self._configuration_changed()

    def __delattr__(self, name: str) -> None:
        super().__delattr__(name)
        self._configuration_changed()

    def _tensors_converted(self) -> None:
        # to / double / cuda may give parameters and buffers new tensors
        self._configuration_changed()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``; ``assign=True`` replaces the loss's tensors, so its plans are redone."""
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._configuration_changed()
        return out

    # ----------------------------------------------------------------- keys
    def set_keys(self, **kwargs: NestedKey | None) -> LossModule:
        """Renames the keys the loss reads, e.g. ``set_keys(advantage="adv")``.

        ``advantage_key=...`` spellings are accepted too. The value estimator (if any)
        follows the renaming. Returns ``self``.

        Raises:
            ValueError: for a name the loss does not read.
        """
        rename_keys(type(self).__name__, self.tensor_keys, kwargs)
        self._forward_value_estimator_keys()
        self._configuration_changed()
        self._on_keys_changed()
        return self

    def _on_keys_changed(self) -> None:
        """Hook for subclasses caching key-dependent state."""

    def _forward_value_estimator_keys(self) -> None:
        est = self._value_estimator
        if est is None:
            return
        est_fields = {f.name for f in dataclasses.fields(est.tensor_keys)}
        for f in dataclasses.fields(self.tensor_keys):
            if f.name in est_fields:
                setattr(est.tensor_keys, f.name, getattr(self.tensor_keys, f.name))

    # -------------------------------------------------------- value estimator
    @property
    def value_estimator(self) -> ValueEstimatorBase:
        """The estimator used when the input has no advantage; built on first access."""
        estimator = self._value_estimator
        if estimator is None:
            self.make_value_estimator()
            estimator = cast(ValueEstimatorBase, self._value_estimator)  # make_value_estimator built it
        return estimator

    @value_estimator.setter
    def value_estimator(self, estimator: ValueEstimatorBase) -> None:
        self.__dict__["_value_estimator"] = estimator
        self._forward_value_estimator_keys()
        self._configuration_changed()

    def _value_network_for_estimator(self) -> nn.Module | None:
        for name in ("critic_network", "value_network"):
            net = getattr(self, name, None)
            if net is not None:
                return net
        return None

    def make_value_estimator(self, value_type: ValueEstimators | str | None = None, **hyperparams: Any) -> LossModule:
        """Builds the estimator that fills ``advantage``/``value_target`` when missing.

        Args:
            value_type: ``ValueEstimators.GAE | TD0 | TD1 | TDLambda`` or its string
                (``"gae"``, ``"td0"``, ``"td1"``, ``"td_lambda"``). Default: the loss's
                ``default_value_estimator``.
            **hyperparams: estimator arguments (``gamma``, ``lmbda``, ``average_gae``,
                ``value_network`` ...); defaults: ``gamma=0.99``, ``lmbda=0.95``.

        Returns:
            ``self`` (so ``loss.make_value_estimator(...)`` chains).

        Raises:
            ValueError: for an estimator this loss does not support.
        """
        if value_type is None:
            value_type = self.default_value_estimator
        if value_type is None:
            raise ValueError(f"{type(self).__name__} has no default value estimator; pass value_type.")
        try:
            value_type = ValueEstimators(value_type)
        except ValueError:
            raise ValueError(
                f"{type(self).__name__}.make_value_estimator: unknown estimator {value_type!r}; "
                f"use one of {[v.value for v in ValueEstimators]}."
            ) from None
        if value_type not in self.SUPPORTED_VALUE_ESTIMATORS:
            raise ValueError(
                f"{type(self).__name__} does not support the {value_type.name} estimator; "
                f"supported: {[v.name for v in self.SUPPORTED_VALUE_ESTIMATORS]}."
            )
        hp: dict[str, Any] = default_value_kwargs(value_type)
        hp.update(self._value_hyperparams)
        hp.update(hyperparams)
        if value_type in _NO_LAMBDA:
            hp.pop("lmbda", None)
        hp.setdefault("value_network", self._value_network_for_estimator())
        self.__dict__["_value_estimator"] = _ESTIMATOR_CLASSES[value_type](**hp)
        self._forward_value_estimator_keys()
        self._configuration_changed()
        return self

    # ------------------------------------------------------------- networks
    def _register_network(self, module: nn.Module, name: str, create_target_params: bool = False) -> None:
        """Stores ``module`` as ``self.<name>`` and exposes its parameters.

        ``self.<name>_params`` is a TensorDict view of the live parameters. With
        ``create_target_params``, ``self.target_<name>_params`` holds a detached copy
        (buffers: not returned by ``parameters()``, saved in ``state_dict``), to be
        used with ``target_params.to_module(self.<name>)`` and kept up to date by
        ``SoftUpdate``/``HardUpdate``.
        """
        setattr(self, name, module)
        params = TensorDict.from_module(module)
        self.__dict__[f"{name}_params"] = params
        if create_target_params:
            target = TensorDictParams(params.data.clone(), no_convert=True)
            setattr(self, f"target_{name}_params", target)
            if name not in self._target_names:
                self._target_names.append(name)

    def convert_to_functional(
        self,
        module: nn.Module,
        module_name: str,
        expand_dim: int | None = None,
        create_target_params: bool = False,
        compare_against: list[nn.Parameter] | None = None,
    ) -> None:
        """Registers ``module`` for a hand-written loss, as TorchRL's method of that name.

        After the call, ``self.<module_name>`` is the module, ``self.<module_name>_params``
        a TensorDict of its parameters (run the module with other parameters through
        ``params.to_module(self.<module_name>)``), and ``self.target_<module_name>_params``
        either a copy kept in sync by :class:`~tdrl.objectives.SoftUpdate` /
        :class:`~tdrl.objectives.HardUpdate` (``create_target_params=True``) or a detached
        view of the live parameters.

        Args:
            module: the network (a ``TensorDictModule`` or any ``nn.Module``).
            module_name: the attribute to store it under.
            expand_dim: not supported: tdrl builds ensembles with
                ``tensordict.nn.EnsembleModule``; only ``None`` is accepted.
            create_target_params: whether to keep a separate target copy.
            compare_against: parameters the loss already trains (e.g. the actor's); those the
                module shares with them enter ``<module_name>_params`` detached, so they are
                trained once, through their first owner.

        Raises:
            ValueError: ``expand_dim`` is given.

        Examples:
            >>> import torch
            >>> from tensordict.nn import TensorDictModule
            >>> class MyLoss(LossModule):
            ...     def __init__(self, actor, critic):
            ...         super().__init__()
            ...         self.convert_to_functional(actor, "actor_network")
            ...         self.convert_to_functional(critic, "value_network", create_target_params=True)
            >>> actor = TensorDictModule(torch.nn.Linear(3, 1), ["obs"], ["action"])
            >>> loss = MyLoss(actor, TensorDictModule(torch.nn.Linear(4, 1), ["x"], ["state_action_value"]))
            >>> sorted(loss.value_network_params.keys(True, True))
            [('module', 'bias'), ('module', 'weight')]
            >>> loss.target_actor_network_params["module", "weight"].requires_grad
            False
        """
        if expand_dim is not None:
            raise ValueError(
                f"{type(self).__name__}.convert_to_functional({module_name!r}, expand_dim={expand_dim}): tdrl does "
                "not expand parameters here. Fix: build the ensemble with tensordict.nn.EnsembleModule and pass it."
            )
        trained = set(self.parameters())
        self._register_network(module, module_name, create_target_params=create_target_params)
        params = self.__dict__[f"{module_name}_params"]
        for key, value in list(params.items(True, True)):
            if compare_against is not None and value in trained and any(value is p for p in compare_against):
                params.set(key, value.data)
        if not create_target_params:
            self.__dict__[f"target_{module_name}_params"] = params.data

    # --------------------------------------------------------------- checks
    def _missing_key_error(self, data: TensorDictBase, key: NestedKey, hint: str) -> KeyError:
        return MissingKeyError(
            f"{type(self).__name__}: key {key!r} not found in the input (keys: {keys_repr(data)}). {hint}"
        )

    def _raise_non_finite(self, data: TensorDictBase, keys: list[NestedKey]) -> None:
        """Names the first input key holding NaN/inf; else blames the networks."""
        for key in keys:
            value = data.get(key, None)
            if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise ValueError(
                    f"{type(self).__name__}: input {key!r} holds {bad} non-finite value(s) (NaN/inf) "
                    f"out of {value.numel()}; the loss would be NaN. Check the data (rewards, "
                    "observations) and the estimator that wrote it."
                )
        raise ValueError(
            f"{type(self).__name__}: the loss is non-finite although every input ({keys}) is "
            "finite: the networks' outputs diverged. Lower the learning rate, clip gradients, "
            "or check the distribution parameters (e.g. a scale that reached 0)."
        )

    @staticmethod
    def _reduce(value: Tensor, reduction: str, squeeze: bool = False) -> Tensor:
        """``mean``/``sum`` to a scalar; ``none`` keeps per-sample values (``squeeze``
        drops a trailing ``[..., 1]``)."""
        if reduction == "mean":
            return value.mean()
        if reduction == "sum":
            return value.sum()
        return value.squeeze(-1) if squeeze else value
