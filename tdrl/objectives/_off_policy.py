"""Pieces shared by the off-policy actor-critic losses (SAC, discrete SAC, TD3, DDPG).

Not public API. :class:`OffPolicyLoss` holds what these losses do alike: an ensemble of
Q-networks called in one ``torch.vmap`` (one module, ``N`` stacked parameter sets, as
TorchRL builds them), the bootstrapped target from a next-state value the loss computed
itself, the reduction with prioritized-replay weights, the ``td_error`` written back
for the sampler, and readable errors when an input key is missing.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.utils import NestedKey, unravel_key
from torch import Tensor, nn

from tdrl._compat import fill_slots, has_forward_hooks, parameter_slots
from tdrl.modules._lean import lean_steps
from tdrl.objectives._keys import MissingKeyError, keys_repr
from tdrl.objectives.common import LossModule
from tdrl.objectives.utils import LOSS_CRITIC_TYPES, ValueEstimators, distance_loss

__all__ = ["OffPolicyLoss", "REDUCTIONS", "check_reads", "rsample_and_log_prob"]

REDUCTIONS = ("mean", "sum", "none")


def check_reads(owner: str, module: nn.Module, key: NestedKey, role: str, fix: str) -> None:
    """Raises ValueError unless ``module`` lists ``key`` among its ``in_keys``."""
    in_keys = list(getattr(module, "in_keys", []))
    if key not in in_keys:
        raise ValueError(f"{owner}: the {role} must read {key!r}, but its in_keys are {in_keys}. {fix}")


def check_writes(owner: str, module: nn.Module, key: NestedKey, role: str, fix: str) -> None:
    """Raises ValueError unless ``module`` lists ``key`` among its ``out_keys``."""
    out_keys = list(getattr(module, "out_keys", []))
    if key not in out_keys:
        raise ValueError(f"{owner}: the {role} must write {key!r}, but its out_keys are {out_keys}. {fix}")


def check_initialized(owner: str, module: nn.Module, role: str) -> None:
    """Raises ValueError if ``module`` still has lazy (uninitialized) parameters."""
    lazy = [name for name, p in module.named_parameters() if nn.parameter.is_lazy(p)]
    if lazy:
        raise ValueError(
            f"{owner}: the {role} has uninitialized lazy parameters ({lazy[:3]}...); the loss copies "
            "them, so their shapes must be known. Give the layers their input sizes (e.g. "
            "MLP(in_features=..., ...)) or run the network once on a batch before building the loss."
        )


def rsample_and_log_prob(owner: str, dist: torch.distributions.Distribution) -> tuple[Tensor, Tensor]:
    """A reparameterized action and its log-probability (scored before the squash when the
    distribution can, as tdrl's and TorchRL's TanhNormal do)."""
    joint = getattr(dist, "rsample_and_log_prob", None)
    if joint is not None:
        return joint()
    if not dist.has_rsample:
        raise TypeError(
            f"{owner}: the actor's distribution {type(dist).__name__} cannot be reparameterized "
            "(has_rsample is False), so the actor loss would have no gradient. Use TanhNormal or "
            "IndependentNormal (distribution_class=... in ProbabilisticActor)."
        )
    action = dist.rsample()
    return action, dist.log_prob(action)


def _one_member(module: nn.Module, key: NestedKey, data: TensorDictBase, params: TensorDictBase) -> Tensor:
    if torch.compiler.is_compiling():
        # tensordict's to_module builds nn.Parameter objects, which torch.compile cannot trace
        named: dict[str, Tensor] = {
            ".".join(k) if isinstance(k, tuple) else k: cast(Tensor, v) for k, v in params.items(True, True)
        }
        out = torch.func.functional_call(module, named, (data,))
    else:
        with params.to_module(module):
            out = module(data)
    value = out.get(key, None)
    if value is None:
        raise MissingKeyError(
            f"the Q-value network did not write {key!r} (it wrote {keys_repr(out)}); pass a network "
            "whose out_keys hold it, or rename the key with the loss's .set_keys(...)."
        )
    return value


class _MemberLoop:
    """Runs a plain Q module (``out_keys <- net(*in_keys)``) once per ensemble member.

    Each member's parameters are unbound views of the stacked ones, written straight into
    the net's parameter slots for its call: every Linear runs as one ``addmm``, the
    computation a hand-written pair of Q modules does (``torch.vmap`` turns each into a
    ``bmm`` over an expanded input and a separate bias add), without building a
    TensorDict per member. Views of tensors that take no gradient (target and detached
    parameters) are kept between calls; they follow in-place updates.
    """

    def __init__(self, owners: list[nn.Module], net: nn.Module, in_keys: tuple, out_index: int, slots: list) -> None:
        self.owners = owners
        self.net = net
        self.in_keys = in_keys
        self.out_index = out_index
        self.slots = slots
        self.keys: list[NestedKey] = []
        self._cache: dict[int, tuple[TensorDictBase, list[Tensor], list[int], list[tuple[Tensor, ...]] | None]] = {}

    def usable(self) -> bool:
        """False while a hook on the Q module asks for its full call."""
        return not any(has_forward_hooks(owner) for owner in self.owners)

    def _members(self, params: TensorDictBase) -> list[tuple[Tensor, ...]]:
        # the cache is checked against the leaves and their storage: ``.to()``/``.double()``
        # may replace a leaf, or keep it and swap its ``.data`` (the kept views hold the old
        # storage alive, so its address cannot be reused)
        if torch.compiler.is_compiling():
            # torch.compile traces the views directly (the cache's id()/data_ptr() cannot be traced)
            return list(zip(*[params.get(k).unbind(0) for k in self.keys]))
        hit = self._cache.get(id(params))
        if hit is not None and hit[0] is params:
            _, leaves, ptrs, members = hit
            if all(params.get(k) is t and t.data_ptr() == p for k, t, p in zip(self.keys, leaves, ptrs)):
                return members if members is not None else list(zip(*[t.unbind(0) for t in leaves]))
        leaves = [params.get(k) for k in self.keys]
        unbound = list(zip(*[t.unbind(0) for t in leaves]))
        frozen = not any(t.requires_grad for t in leaves)
        self._cache[id(params)] = (params, leaves, [t.data_ptr() for t in leaves], unbound if frozen else None)
        return unbound

    def __call__(self, inputs: list[Tensor], params: TensorDictBase) -> Tensor:
        members = self._members(params)
        outs = []
        saved = fill_slots(self.slots, members[0])
        try:
            for i, member in enumerate(members):
                if i:
                    fill_slots(self.slots, member)
                out = self.net(*inputs)
                outs.append(out if isinstance(out, Tensor) else out[self.out_index])
        finally:
            fill_slots(self.slots, saved)
        return torch.stack(outs)


def member_loop(module: nn.Module, key: NestedKey, params: TensorDictBase) -> _MemberLoop | None:
    """The per-member fast path for ``module`` (writing ``key``), or ``None`` when it is not
    a plain ``out_keys <- net(*in_keys)`` module whose parameters can be swapped."""
    owners: list[nn.Module] = []
    steps = lean_steps(module, owners)
    if steps is None or len(steps) != 1 or steps[0].kwarg_names is not None:
        return None
    step = steps[0]
    if key not in step.out_keys or not isinstance(step.net, nn.Module) or step.owner is not module:
        return None
    keys = list(params.keys(True, True))
    names = []
    for k in keys:
        parts = (k,) if isinstance(k, str) else k
        if parts[0] != "module":
            return None
        names.append(".".join(parts[1:]))
    slots = parameter_slots(step.net, names)
    if slots is None:
        return None
    runner = _MemberLoop(owners, step.net, step.in_keys, list(step.out_keys).index(key), slots)
    runner.keys = keys
    return runner


def _expand_params(params: TensorDictBase, num: int, frozen: set[int], keep_first: bool) -> TensorDictParams:
    """``num`` stacked copies of ``params``: its own parameters per copy, TorchRL's way.

    A parameter in ``frozen`` (shared with the actor under ``separate_losses``) becomes a
    non-trainable expansion of the live tensor. Any other parameter gets ``num`` copies
    drawn uniformly between its current min and max (for the default initialisations of
    ``nn.Linear`` about the same law as a fresh init); with ``keep_first`` the first copy
    keeps the module's own values. Buffers are repeated.
    """
    out: dict[NestedKey, Tensor] = {}
    for key, value in params.items(True, True):
        if isinstance(value, nn.Parameter) and id(value) not in frozen:
            with torch.no_grad():
                stacked = value.detach().expand(num, *value.shape).clone()
                stacked.uniform_(value.min().item(), value.max().item())
                if keep_first:
                    stacked[0].copy_(value)
            out[key] = nn.Parameter(stacked)
        elif isinstance(value, nn.Parameter):
            out[key] = value.data.expand(num, *value.shape)
        else:  # a buffer
            out[key] = torch.as_tensor(value).expand(num, *value.shape).clone()
    stacked_params = TensorDict({}, batch_size=[num])
    for nested, tensor in out.items():
        stacked_params.set(nested, tensor)
    return TensorDictParams(stacked_params, no_convert=True)


class OffPolicyLoss(LossModule):
    """Base of the off-policy actor-critic losses (see the module docstring)."""

    default_value_estimator = ValueEstimators.TD0
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TD0, ValueEstimators.TD1, ValueEstimators.TDLambda)

    # set by the subclasses' constructors
    loss_function: str
    reduction: str
    use_prioritized_weights: str | bool
    deactivate_vmap: bool
    scalar_output_mode: str | None

    def _check_common(self, loss_function: str, reduction: str | None) -> str:
        name = type(self).__name__
        if loss_function not in LOSS_CRITIC_TYPES:
            raise ValueError(f"{name}: loss_function={loss_function!r} is unknown; use one of {LOSS_CRITIC_TYPES}.")
        reduction = "mean" if reduction is None else reduction
        if reduction not in REDUCTIONS:
            raise ValueError(f"{name}: reduction={reduction!r} is unknown; use one of {REDUCTIONS}.")
        return reduction

    # ------------------------------------------------------------ ensemble
    def _register_ensemble(
        self,
        module: nn.Module,
        name: str,
        num: int,
        create_target_params: bool,
        frozen: Iterable[nn.Parameter] = (),
        deactivate_vmap: bool = False,
    ) -> None:
        """Registers ``num`` parameter sets for ``module`` as ``<name>_params`` (batch ``[num]``).

        ``module`` itself is kept outside the module tree (its own parameters are not
        trained); it runs with each set in turn through ``to_module``. The target copy,
        if asked, is ``target_<name>_params``, driven by ``SoftUpdate``/``HardUpdate``.
        """
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"{type(self).__name__}: num_qvalue_nets must be an int >= 1, got {num!r}.")
        check_initialized(type(self).__name__, module, name)
        self.__dict__[name] = module
        params = _expand_params(TensorDict.from_module(module), num, {id(p) for p in frozen}, keep_first=True)
        setattr(self, f"{name}_params", params)
        if create_target_params:
            setattr(self, f"target_{name}_params", TensorDictParams(params.data.clone(), no_convert=True))
            if name not in self._target_names:
                self._target_names.append(name)
        self.deactivate_vmap = deactivate_vmap

    def _ensemble_caller(self, module: nn.Module, key: NestedKey) -> Callable[[TensorDictBase, TensorDictBase], Tensor]:
        """``call(data, params) -> [N, *B, ...]``: ``module``'s ``key`` under each parameter set."""
        member = functools.partial(_one_member, module, key)

        def loop(data: TensorDictBase, params: TensorDictBase) -> Tensor:
            # unbind: one view per member, whose backward stacks the members' gradients
            # (indexing would build a zero-filled full-size gradient per member)
            return torch.stack([member(data.copy(), member_params) for member_params in params.unbind(0)])

        if self.deactivate_vmap:
            return loop
        vmapped = torch.vmap(member, in_dims=(None, 0), randomness="different")

        def call(data: TensorDictBase, params: TensorDictBase) -> Tensor:
            if torch.compiler.is_compiling():
                # torch.compile fails inside torch.vmap over TensorDicts (torch 2.13): the loop
                # computes the same values and traces into one graph
                return loop(data, params)
            return vmapped(data, params)

        return call

    def _detached(self, name: str) -> TensorDictBase:
        """Detached views of ``<name>_params``: they follow in-place optimizer steps, and are
        rebuilt when the parameters moved (``.to()``, ``.double()``: new storage)."""
        params = getattr(self, f"{name}_params")
        if torch.compiler.is_compiling():
            return params.detach()  # traced into the graph: no cache to check (data_ptr() cannot be traced)
        cache = self.__dict__.setdefault("_detached_cache", {})
        first = next(iter(params.values(True, True)))
        stamp = (first.data_ptr(), first.dtype, first.device)
        hit = cache.get(name)
        if hit is None or hit[0] != stamp:
            hit = cache[name] = (stamp, params.detach())
        return hit[1]

    def _check_ensemble_out(self, value: Tensor, batch: torch.Size, key: NestedKey, trailing: int | None) -> None:
        """``value`` must be ``[N, *batch, trailing]``, or ``[N, *batch, n_agents, trailing]`` with group keys.

        (``trailing=None``: any last dim.)
        """
        ok = value.shape[1 : 1 + len(batch)] == batch and (trailing is None or value.shape[-1] == trailing)
        ok = ok and value.ndim <= len(batch) + 3
        if not ok:
            expected = (*batch, trailing if trailing is not None else "n_actions")
            raise ValueError(
                f"{type(self).__name__}: the Q-value network wrote {key!r} with shape "
                f"{tuple(value.shape[1:])} per member; expected {expected} for a batch of "
                f"{tuple(batch)}. End the network with a {trailing or 'n_actions'}-unit layer."
            )

    # ------------------------------------------------------------ entropy weight (SAC)
    log_alpha: Tensor  # a parameter, or a buffer with fixed_alpha
    min_log_alpha: Tensor | None
    max_log_alpha: Tensor | None

    def _register_alpha(
        self, alpha_init: float, min_alpha: float | None, max_alpha: float | None, fixed_alpha: bool
    ) -> None:
        """``log_alpha`` (a parameter, or a buffer when fixed) and its clamp bounds, as TorchRL.

        Giving one bound only sets the other to 0 (no lower clamp) or 1e9.
        """
        name = type(self).__name__
        if alpha_init <= 0:
            raise ValueError(f"{name}: alpha_init must be > 0 (alpha = exp(log_alpha)), got {alpha_init}.")
        if bool(min_alpha) != bool(max_alpha):
            if max_alpha == 0:
                raise ValueError(f"{name}: max_alpha must be None or > 0, got 0.")
            min_alpha = min_alpha or 0.0
            max_alpha = max_alpha or 1e9
        if min_alpha and max_alpha and min_alpha > max_alpha:
            raise ValueError(f"{name}: min_alpha={min_alpha} is above max_alpha={max_alpha}.")
        device = next((p.device for p in self.parameters()), None)
        self.register_buffer("alpha_init", torch.tensor(float(alpha_init), device=device))
        self.register_buffer(
            "min_log_alpha", torch.tensor(float(min_alpha), device=device).log() if min_alpha else None
        )
        self.register_buffer(
            "max_log_alpha", torch.tensor(float(max_alpha), device=device).log() if max_alpha else None
        )
        self.fixed_alpha = fixed_alpha
        log_alpha = torch.tensor(math.log(alpha_init), device=device)
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.log_alpha = nn.Parameter(log_alpha)

    @property
    def _alpha(self) -> Tensor:
        """``exp(log_alpha)``, detached, after clamping ``log_alpha`` into its bounds (in place)."""
        if self.min_log_alpha is not None or self.max_log_alpha is not None:
            with torch.no_grad():
                self.log_alpha.clamp_(self.min_log_alpha, self.max_log_alpha)
        with torch.no_grad():
            return self.log_alpha.exp()

    def _check_scalar_output_mode(self, mode: str | None) -> str | None:
        if self.reduction == "none" and mode is None:
            warnings.warn(
                f"{type(self).__name__}(reduction='none') returns per-sample losses, so the scalar "
                "'alpha' and 'entropy' are left out of its output; pass scalar_output_mode='exclude' "
                "to silence this, or 'non_tensor' to keep them as non-tensor entries.",
                UserWarning,
                stacklevel=3,
            )
            return "exclude"
        if mode not in (None, "exclude", "non_tensor"):
            raise ValueError(
                f"{type(self).__name__}: scalar_output_mode={mode!r} is unknown; use None, 'exclude' or 'non_tensor'."
            )
        return mode

    def _pack(self, data: TensorDictBase, losses: dict[str, Tensor], scalars: dict[str, Tensor]) -> TensorDict:
        """The output: losses, plus the scalar diagnostics unless ``reduction='none'`` leaves them out."""
        if self.reduction != "none":
            losses.update(scalars)
            return TensorDict(losses, batch_size=[])
        out = TensorDict(losses, batch_size=data.batch_size)
        if self.scalar_output_mode == "non_tensor":
            for key, value in scalars.items():
                out.set_non_tensor(key, value)
        return out

    def _distance(self, pred: Tensor, target: Tensor) -> Tensor:
        return distance_loss(pred, target, self.loss_function)

    # ------------------------------------------------------------ estimator
    def _value_network_for_estimator(self) -> nn.Module | None:
        return None  # the losses compute the next-state value themselves

    def _target(self, data: TensorDictBase, next_value: Tensor) -> Tensor:
        """The bootstrapped target ``[*B]`` from ``next_value`` ``[*B, 1]`` (terminated: no bootstrap)."""
        return self.value_estimator.value_estimate(data, next_value=next_value).squeeze(-1)

    # ------------------------------------------------------------ reduction
    def _priority_weights(self, data: TensorDictBase) -> Tensor | None:
        if self.use_prioritized_weights not in (True, "auto"):
            return None
        return data.get(self.tensor_keys.priority_weight, None)

    def _reduce_weighted(self, loss: Tensor, weights: Tensor | None) -> Tensor:
        """``mean``/``sum``/``none`` of a per-sample loss; with importance weights ``w``,
        ``mean`` is ``sum(w * loss) / sum(w)`` (TorchRL's weighted mean)."""
        if weights is None:
            return self._reduce(loss, self.reduction)
        if weights.shape != loss.shape:
            raise ValueError(
                f"{type(self).__name__}: {self.tensor_keys.priority_weight!r} has shape "
                f"{tuple(weights.shape)}; expected {tuple(loss.shape)} (one weight per sample, as "
                "PrioritizedSampler writes it)."
            )
        if self.reduction == "mean":
            return (loss * weights).sum() / weights.sum()
        if self.reduction == "sum":
            return (loss * weights).sum()
        return loss * weights

    # ------------------------------------------------------------ errors
    @staticmethod
    def _require(data: TensorDictBase, key: NestedKey) -> Any:
        """``data[key]``; a missing key raises KeyError (diagnosed by ``_diagnose``) on every tensordict."""
        value = data.get(key, None)
        if value is None:
            raise KeyError(key)
        return value

    def _input_keys(self) -> list[NestedKey]:
        """The keys a forward call reads (for the missing-key diagnosis)."""
        raise NotImplementedError

    def _diagnose(self, data: TensorDictBase, error: KeyError, keys: list[NestedKey] | None = None) -> KeyError:
        """A KeyError naming the first missing input (of ``keys``, default all a forward call reads), else ``error``."""
        present = {unravel_key(k) for k in data.keys(True, True)}
        for key in self._input_keys() if keys is None else keys:
            if unravel_key(key) not in present:
                return MissingKeyError(
                    f"{type(self).__name__}: key {key!r} not found in the input (keys: {keys_repr(data)}). "
                    "A replay-buffer sample of collected steps holds the networks' inputs at the root "
                    "and under 'next', the action, and ('next', 'reward'/'done'/'terminated'); rename "
                    "keys with .set_keys(...)."
                )
        return error

    @property
    def in_keys(self) -> list[NestedKey]:
        return self._input_keys()
