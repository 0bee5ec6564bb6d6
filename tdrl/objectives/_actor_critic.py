"""Pieces shared by the policy-gradient losses (PPO, A2C, REINFORCE).

Not public API: the functions here compute one term each (log-probabilities reduced to
the batch shape, entropy with a Monte-Carlo fallback, the critic regression) so that
``ppo.py``, ``a2c.py`` and ``reinforce.py`` read top to bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast, overload

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torch.distributions import Distribution

from tdrl._compat import no_distribution_validation, td_read, td_unchecked, tensor_version
from tdrl.objectives._keys import MissingKeyError, keys_repr
from tdrl.objectives.common import LossModule
from tdrl.objectives.utils import LOSS_CRITIC_TYPES, ValueEstimators, distance_loss

__all__ = ["ActorCriticLoss"]

REDUCTIONS = ("mean", "sum", "none")

ADVANTAGE_HINT = (
    "A value estimator writes it: run GAE(gamma=..., lmbda=..., value_network=critic)(data) "
    "before the loss, or give the loss a critic_network so it computes the advantage itself."
)
LOG_PROB_HINT = (
    "The actor writes it while collecting when built with return_log_prob=True "
    "(ProbabilisticActor(..., return_log_prob=True)); rename with .set_keys(sample_log_prob=...)."
)
ACTION_HINT = "The actor writes it while collecting; rename with .set_keys(action=...)."
VALUE_TARGET_HINT = "The value estimator (GAE, TD0Estimator, TDLambdaEstimator) writes it next to the advantage."

_ANALYTIC_ENTROPY: dict[type, bool] = {}
_SCALAR = torch.Size([])
_CRITIC_LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss}
_LOG_PROB_SYNONYMS = {"sample_log_prob": "action_log_prob", "action_log_prob": "sample_log_prob"}


def check_actor(owner: str, actor: nn.Module) -> None:
    """Raises TypeError unless ``actor`` can build its action distribution."""
    if not hasattr(actor, "get_dist"):
        raise TypeError(
            f"{owner}: actor_network must build its action distribution with get_dist(td) "
            f"(a tensordict.nn.ProbabilisticTensorDictSequential such as tdrl.modules."
            f"ProbabilisticActor); got {type(actor).__name__}."
        )


def check_critic_type(owner: str, loss_critic_type: str) -> None:
    if loss_critic_type not in LOSS_CRITIC_TYPES:
        raise ValueError(f"{owner}: loss_critic_type={loss_critic_type!r} is unknown; use one of {LOSS_CRITIC_TYPES}.")


@overload
def resolve_coeff(owner: str, new: float | None, old: float | None, new_name: str, default: float) -> float: ...


@overload
def resolve_coeff(
    owner: str, new: float | None, old: float | None, new_name: str, default: float | None
) -> float | None: ...


def resolve_coeff(
    owner: str, new: float | None, old: float | None, new_name: str, default: float | None
) -> float | None:
    """Merges TorchRL's current name (``entropy_coeff``) with the seed's (``entropy_coef``)."""
    if new is not None and old is not None and float(new) != float(old):
        raise ValueError(f"{owner}: {new_name}={new} and {new_name[:-1]}={old} disagree; pass only one of them.")
    value = new if new is not None else old
    return default if value is None else value


def standardize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Zero mean, unit std over the whole tensor (a no-op on a single element)."""
    if x.numel() <= 1:
        return x
    return (x - x.mean()) / x.std().clamp_min(eps)


def to_batch_shape(x: Tensor, batch_ndim: int) -> Tensor:
    """Sums trailing event dims so ``x`` has ``batch_ndim`` dims (a factorized action)."""
    extra = x.ndim - batch_ndim
    if extra > 0:
        return x.sum(dim=tuple(range(batch_ndim, x.ndim)))
    return x


def neg_entropy(dist: Distribution, samples: int, batch_ndim: int) -> Tensor:
    """Per-sample negative entropy: closed form when the distribution has one, else Monte-Carlo.

    The Monte-Carlo estimate ``mean(log p(x))`` uses ``samples`` reparameterized draws
    when the distribution supports ``rsample`` (e.g. TanhNormal), so it stays
    differentiable. (The negative is what the loss adds; it saves a graph node.)
    """
    cls = type(dist)
    if _ANALYTIC_ENTROPY.get(cls) is not False:
        try:
            value = dist.entropy()
            _ANALYTIC_ENTROPY[cls] = True
            return to_batch_shape(value, batch_ndim).neg()
        except NotImplementedError:
            _ANALYTIC_ENTROPY[cls] = False
    # One draw needs no sample dim (which would broadcast, and cost reductions in backward).
    shape = torch.Size() if samples == 1 else torch.Size((samples,))
    if hasattr(dist, "rsample_log_prob"):  # tdrl's TanhNormal: scored before the squash, draw not squashed
        log_prob = dist.rsample_log_prob(shape)
    elif hasattr(dist, "rsample_and_log_prob"):
        _, log_prob = dist.rsample_and_log_prob(shape)
    else:
        x = dist.rsample(shape) if dist.has_rsample else dist.sample(shape)
        log_prob = dist.log_prob(x)
    if samples == 1:
        return to_batch_shape(log_prob, batch_ndim)
    return to_batch_shape(log_prob, batch_ndim + 1).mean(0)


# The losses build their distributions without torch's per-call argument checks and check
# their result for NaN/inf once per call instead (see no_distribution_validation).
fast_distributions = no_distribution_validation


def shared_parameter_names(actor: nn.Module, critic: nn.Module) -> list[str]:
    """Names (in ``critic``) of the parameters the critic shares with the actor."""
    actor_ids = {id(p) for p in actor.parameters()}
    return [name for name, p in critic.named_parameters() if id(p) in actor_ids]


def critic_values(
    owner: str,
    critic: nn.Module,
    data: TensorDictBase,
    value_key: NestedKey,
    target_shape: torch.Size,
    detached_names: list[str],
) -> Tensor:
    """Runs the critic and returns its value, checking the shape against the target.

    ``detached_names`` lists parameters to run detached (``separate_losses``): they then
    receive no gradient from the critic loss.
    """
    if detached_names:
        params = dict(critic.named_parameters())
        overrides = {name: params[name].detach() for name in detached_names}
        out = torch.func.functional_call(critic, overrides, (data,))
    else:
        out = critic(data)
    value = td_read(out, value_key)
    if value is None:
        raise MissingKeyError(
            f"{owner}: the critic did not write {value_key!r} (it wrote {keys_repr(out)}); "
            "rename with .set_keys(value=...)."
        )
    if value.shape != target_shape:
        raise ValueError(
            f"{owner}: the critic wrote {value_key!r} with shape {tuple(value.shape)}; expected "
            f"{tuple(target_shape)} (the value target's shape). End the critic with a 1-unit layer."
        )
    return value


def critic_loss(
    value: Tensor,
    target: Tensor,
    loss_critic_type: str,
    clip_value: float | None,
    old_value: Tensor | None,
    reduction: str,
) -> tuple[Tensor, Tensor | None]:
    """The reduced critic loss, pessimistically clipped around ``old_value`` if asked.

    ``reduction="none"`` returns per-sample losses without the trailing ``1``.

    Returns:
        ``(loss, clip_fraction)``; ``clip_fraction`` is ``None`` without clipping.
    """
    if clip_value is None or old_value is None:
        if value.shape != target.shape:
            distance_loss(target, value, loss_critic_type)  # raises the shape error
        fn = _CRITIC_LOSSES[loss_critic_type]
        loss = fn(value, target, reduction=reduction)
        return (loss.squeeze(-1) if reduction == "none" else loss), None
    loss = distance_loss(target, value, loss_critic_type)
    delta = value - old_value
    clipped = delta.clamp(-clip_value, clip_value)
    loss_clipped = distance_loss(target, old_value + clipped, loss_critic_type)
    with torch.no_grad():
        clip_fraction = (delta != clipped).float().mean()
    loss = torch.maximum(loss, loss_clipped)
    return LossModule._reduce(loss, reduction, squeeze=True), clip_fraction


def batch_means(values: list[Tensor]) -> tuple[Tensor, ...]:
    """The means of detached per-sample tensors of one shape, in one stack and one reduction.

    A loss reports several such means per minibatch (``kl_approx``, ``ESS``,
    ``clip_fraction``); on small batches each separate reduction costs more than the
    arithmetic, so they are reduced together. Booleans count as 0/1.
    """
    dtype = next((v.dtype for v in values if v.is_floating_point()), torch.get_default_dtype())
    stacked = torch.stack([v if v.dtype == dtype else v.to(dtype) for v in values])
    if stacked.ndim == 1:  # one scalar each: nothing to average
        return stacked.unbind(0)
    return stacked.mean(dim=tuple(range(1, stacked.ndim))).unbind(0)


def explained_variance(target: Tensor, value: Tensor) -> Tensor:
    """``1 - Var(target - value) / Var(target)``: 1 is a perfect critic (detached)."""
    with torch.no_grad():
        eps = torch.finfo(target.dtype).eps
        return 1.0 - torch.var(target - value, correction=0) / (torch.var(target, correction=0) + eps)


class ActorCriticLoss(LossModule):
    """Shared base of PPO, A2C and REINFORCE: an actor, an optional critic, their terms.

    It validates the constructor arguments once, and provides the per-minibatch steps
    every policy-gradient loss takes: fetch the advantage (or compute it with the value
    estimator), run the critic once, weight the entropy, and finish with one finiteness
    check. Subclasses write ``forward`` with these. The constructor arguments are
    documented on :class:`~tdrl.objectives.PPOLoss`.
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by the policy-gradient losses; rename with ``set_keys``."""

        advantage: NestedKey = "advantage"
        value_target: NestedKey = "value_target"
        value: NestedKey = "state_value"
        sample_log_prob: NestedKey = "sample_log_prob"
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.GAE

    # buffers (registered in __init__); critic_coeff is None when there is no critic term
    entropy_coeff: Tensor
    critic_coeff: Tensor | None
    # what check_actor lets in: a module that builds its action distribution with get_dist
    actor_network: ProbabilisticTensorDictSequential

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        entropy_bonus: bool = True,
        samples_mc_entropy: int = 1,
        entropy_coeff: float | None = None,
        entropy_coef: float | None = None,
        critic_coeff: float | None = None,
        critic_coef: float | None = None,
        loss_critic_type: str = "smooth_l1",
        normalize_advantage: bool = False,
        separate_losses: bool = False,
        reduction: str | None = None,
        clip_value: float | None = None,
        check_finite: bool = True,
        gamma: float | None = None,
        functional: bool = True,
        device: torch.device | str | None = None,
        actor: nn.Module | None = None,
        critic: nn.Module | None = None,
        advantage_key: NestedKey | None = None,
        value_target_key: NestedKey | None = None,
        value_key: NestedKey | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        actor_network = actor_network if actor_network is not None else actor
        critic_network = critic_network if critic_network is not None else critic
        if actor_network is None:
            raise TypeError(f"{name}: actor_network is required.")
        check_actor(name, actor_network)
        entropy_coeff = resolve_coeff(name, entropy_coeff, entropy_coef, "entropy_coeff", 0.01)
        default_critic = 1.0 if critic_network is not None else None
        critic_coeff = resolve_coeff(name, critic_coeff, critic_coef, "critic_coeff", default_critic)
        if critic_coeff == 0:
            critic_coeff = None
        if critic_coeff is not None and critic_network is None:
            raise TypeError(
                f"{name}: critic_coeff={critic_coeff} needs a critic_network; pass one, or "
                "critic_coeff=None to train the actor only (the data must then hold the advantage)."
            )
        check_critic_type(name, loss_critic_type)
        reduction = reduction or "mean"
        if reduction not in REDUCTIONS:
            raise ValueError(f"{name}: reduction={reduction!r} is unknown; use one of {REDUCTIONS}.")
        if samples_mc_entropy < 1:
            raise ValueError(f"{name}: samples_mc_entropy must be >= 1, got {samples_mc_entropy}.")
        self.actor_network = cast(ProbabilisticTensorDictSequential, actor_network)  # check_actor: it has get_dist
        self.critic_network = critic_network
        self.entropy_bonus = entropy_bonus
        self.samples_mc_entropy = int(samples_mc_entropy)
        self.loss_critic_type = loss_critic_type
        self.normalize_advantage = normalize_advantage
        self.separate_losses = separate_losses
        self.reduction = reduction
        self.check_finite = check_finite
        self.functional = functional
        self.register_buffer("entropy_coeff", torch.tensor(float(entropy_coeff), device=device))
        self.register_buffer(
            "critic_coeff", None if critic_coeff is None else torch.tensor(float(critic_coeff), device=device)
        )
        self.clip_value = None if clip_value is None else float(clip_value)
        # coefficient buffer id -> (buffer, version, equals 1): see _weighted
        self._unit_coeffs: dict[int, tuple[Tensor, object, bool]] = {}
        if gamma is not None:
            self._value_hyperparams["gamma"] = gamma
        self._shared_names = (
            shared_parameter_names(actor_network, critic_network)
            if separate_losses and critic_network is not None
            else []
        )
        self.set_keys(advantage=advantage_key, value_target=value_target_key, value=value_key)
        # The actor says where it writes its log-prob ("sample_log_prob" or, with
        # tensordict's defaults, "<action>_log_prob").
        try:
            lp_keys = list(getattr(actor_network, "log_prob_keys", []))
        except (AttributeError, RuntimeError):
            lp_keys = []
        if len(lp_keys) == 1:
            self.tensor_keys.sample_log_prob = lp_keys[0]

    # ------------------------------------------------------------ parameters
    # TorchRL's names for the networks' parameters, as passed to a value estimator:
    # ``GAE(data, params=loss.critic_network_params, target_params=loss.target_critic_network_params)``.
    # Read from the networks at each access, so they follow ``loss.to(device)`` and
    # ``load_state_dict``; the targets are the same values, detached (these losses keep no
    # separate target copies).
    @property
    def actor_network_params(self) -> TensorDictBase:
        """The actor's parameters and buffers as a TensorDict (live: they are the module's tensors)."""
        return TensorDict.from_module(self.actor_network)

    @property
    def target_actor_network_params(self) -> TensorDictBase:
        """The actor's parameters, detached (no separate target copy is kept)."""
        return self.actor_network_params.detach()

    @property
    def critic_network_params(self) -> TensorDictBase | None:
        """The critic's parameters and buffers as a TensorDict (live); ``None`` without a critic."""
        critic = self.critic_network
        return None if critic is None else TensorDict.from_module(critic)

    @property
    def target_critic_network_params(self) -> TensorDictBase | None:
        """The critic's parameters, detached, for the next-state values; ``None`` without a critic."""
        params = self.critic_network_params
        return None if params is None else params.detach()

    # ------------------------------------------------------------------ keys
    def _on_keys_changed(self) -> None:
        keys: list[NestedKey] = []
        for net in (self.actor_network, self.critic_network):
            for k in getattr(net, "in_keys", []) if net is not None else []:
                if k not in keys:
                    keys.append(k)
        self._net_in_keys = keys

    def _net_inputs(self, data: TensorDictBase) -> TensorDictBase:
        """``data.select(*networks' in_keys)``: a shallow copy the networks write into.

        For a plain TensorDict holding every (string) key as a tensor, the entries are
        picked one by one (``select`` parses its keys on each call); anything else goes
        through ``select`` (and its errors).
        """
        if type(data) is TensorDict:
            picked = {}
            for key in self._net_in_keys:
                value = td_read(data, key) if type(key) is str else None
                if not isinstance(value, Tensor):
                    break
                picked[key] = value
            else:
                return td_unchecked(picked, data.batch_size, data.device)
        return data.select(*self._net_in_keys)

    # ------------------------------------------------------------- terms
    def _get(self, data: TensorDictBase, key: NestedKey, hint: str) -> Tensor:
        value = td_read(data, key)
        if value is None:
            raise self._missing_key_error(data, key, hint)
        return value

    def _behaviour_log_prob(self, data: TensorDictBase) -> Tensor:
        """The collected log-prob; ``sample_log_prob`` and ``action_log_prob`` are synonyms."""
        key = self.tensor_keys.sample_log_prob
        value = td_read(data, key)
        if value is None and key in _LOG_PROB_SYNONYMS:
            value = td_read(data, _LOG_PROB_SYNONYMS[key])
        if value is None:
            raise self._missing_key_error(data, key, LOG_PROB_HINT)
        return value

    def _advantage(self, tensordict: TensorDictBase, normalize: bool) -> tuple[TensorDictBase, Tensor]:
        """The ``[*B, 1]`` advantage, or ``[*B, n_agents, 1]`` per agent; computed on a shallow copy when missing.

        The advantage's shape without its last dim is the shape of one log-probability per
        sample: ``[*B]``, or ``[*B, n_agents]`` for a group of agents (keys such as
        ``("agents", "advantage")``), as in TorchRL's multi-agent losses.
        """
        advantage = td_read(tensordict, self.tensor_keys.advantage)
        if advantage is None:
            if self.critic_network is None and self._value_estimator is None:
                raise self._missing_key_error(tensordict, self.tensor_keys.advantage, ADVANTAGE_HINT)
            tensordict = tensordict.copy()
            self.value_estimator(tensordict)
            advantage = tensordict.get(self.tensor_keys.advantage)
        batch_ndim = tensordict.batch_dims
        if advantage.ndim == batch_ndim:
            advantage = advantage.unsqueeze(-1)
        if advantage.shape[:batch_ndim] != tensordict.batch_size or advantage.shape[-1] != 1:
            raise ValueError(
                f"{type(self).__name__}: {self.tensor_keys.advantage!r} has shape "
                f"{tuple(advantage.shape)}; expected {(*tensordict.batch_size, 1)} (batch shape + 1), or "
                f"{(*tensordict.batch_size, 'n_agents', 1)} for a group of agents."
            )
        if normalize:
            advantage = standardize(advantage)
        return tensordict, advantage

    def _per_sample(self, log_prob: Tensor, advantage: Tensor, what: str) -> Tensor:
        """``log_prob`` summed over the action's event dims to the advantage's shape without its last dim."""
        sample_ndim = advantage.ndim - 1
        log_prob = to_batch_shape(log_prob, sample_ndim)
        if log_prob.shape != advantage.shape[:-1]:
            raise ValueError(
                f"{type(self).__name__}: the {what} has shape {tuple(log_prob.shape)} per sample but "
                f"{self.tensor_keys.advantage!r} has shape {tuple(advantage.shape)}; expected "
                f"{tuple(advantage.shape[:-1])}. With a group of agents, compute the advantage per agent "
                "(value estimator keys under the group, e.g. .set_keys(value=('agents', 'state_value'))) "
                "and let the actor write one log-prob per agent."
            )
        return log_prob

    def _critic_term(
        self, data: TensorDictBase, inputs: TensorDictBase, log_explained_variance: bool
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``critic_coeff * reduce(critic loss)`` and its diagnostics."""
        keys = self.tensor_keys
        target = self._get(data, keys.value_target, VALUE_TARGET_HINT)
        old_value = None
        if self.clip_value is not None:
            old_value = data.get(keys.value, None)
            if old_value is None:
                raise self._missing_key_error(
                    data,
                    keys.value,
                    f"clip_value={self.clip_value} clips around the critic's value at collection "
                    "time, which the value estimator (GAE) writes; run it before the loss.",
                )
        # only called with a critic term, which __init__ allows only with a critic network
        critic, coeff = cast(nn.Module, self.critic_network), cast(Tensor, self.critic_coeff)
        value = critic_values(type(self).__name__, critic, inputs, keys.value, target.shape, self._shared_names)
        loss, clip_fraction = critic_loss(
            value, target, self.loss_critic_type, self.clip_value, old_value, self.reduction
        )
        diag: dict[str, Tensor] = {}
        if log_explained_variance:
            diag["explained_variance"] = explained_variance(target, value)
        if clip_fraction is not None:
            diag["value_clip_fraction"] = clip_fraction
        return self._weighted(loss, coeff), diag

    def _weighted(self, value: Tensor, coeff: Tensor) -> Tensor:
        """``value * coeff``, or ``value`` itself when ``coeff`` is exactly 1 (the same numbers
        and gradients, one op and one graph node fewer: the seed's ``critic_coeff=1.0``).

        Whether the coefficient is 1 is read once, and again only after the buffer changed
        (replaced, or written in place: its version counter moves). Under ``torch.compile``
        the product is always taken.
        """
        if value.dtype != coeff.dtype or torch.compiler.is_compiling():
            return value * coeff
        version = tensor_version(coeff)
        cached = self._unit_coeffs.get(id(coeff))
        if cached is None or cached[0] is not coeff or cached[1] != version:
            cached = (coeff, version, bool(coeff == 1))
            self._unit_coeffs[id(coeff)] = cached
        return value if cached[2] else value * coeff

    def _entropy_term(self, dist: Distribution, batch_ndim: int) -> tuple[Tensor, Tensor]:
        """``-entropy_coeff * reduce(entropy)`` and the detached mean entropy."""
        neg = neg_entropy(dist, self.samples_mc_entropy, batch_ndim)
        reduced = self._reduce(neg, self.reduction)
        mean = reduced if self.reduction == "mean" else neg.mean()
        return reduced * self.entropy_coeff, mean.detach().neg()

    def _finish(self, losses: dict[str, Tensor], diagnostics: dict[str, Tensor], data: TensorDictBase) -> TensorDict:
        """Checks each (scalar) loss for NaN/inf, then packs losses and diagnostics.

        A NaN/inf anywhere in the inputs reaches the losses, so reading the few loss
        scalars (``.item()``: a host sync, ~0.3 us each on CPU) is the whole check; the
        inputs are scanned only to name the culprit once a loss is not finite.
        """
        if self.check_finite and not torch.compiler.is_compiling():
            # under torch.compile a host read of the losses would split the graph: skipped
            for value in losses.values():
                finite = math.isfinite(value.item()) if value.ndim == 0 else bool(torch.isfinite(value).all())
                if not finite:
                    self._raise_non_finite(data, self.in_keys)
        losses.update(diagnostics)
        return td_unchecked(losses, _SCALAR)  # scalars: nothing to check against batch_size=[]

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        return [*self._net_in_keys, k.action, k.sample_log_prob, k.advantage, k.value_target]
