"""PPO losses: ``PPOLoss`` (plain importance-weighted), ``ClipPPOLoss``, ``KLPENPPOLoss``.

One minibatch step reads ``advantage`` (written by an estimator such as
:class:`~tdrl.objectives.value.GAE`), the behaviour policy's ``sample_log_prob`` and
``action``, and ``value_target``; it builds the current action distribution once,
runs the critic once, and returns scalar ``loss_objective``, ``loss_critic`` and
``loss_entropy`` plus detached diagnostics (``entropy``, ``kl_approx``, ``ESS``,
``clip_fraction``, ``explained_variance``).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import (NormalParamExtractor, ProbabilisticTensorDictModule,
    ...     ProbabilisticTensorDictSequential, TensorDictModule)
    >>> actor = ProbabilisticTensorDictSequential(
    ...     TensorDictModule(nn.Sequential(nn.Linear(3, 4), NormalParamExtractor()),
    ...                      in_keys=["observation"], out_keys=["loc", "scale"]),
    ...     ProbabilisticTensorDictModule(in_keys=["loc", "scale"], out_keys=["action"],
    ...         distribution_class=torch.distributions.Normal, return_log_prob=True))
    >>> critic = TensorDictModule(nn.Linear(3, 1), in_keys=["observation"], out_keys=["state_value"])
    >>> loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coef=1e-4, critic_coef=1.0)
    >>> data = actor(TensorDict({"observation": torch.randn(8, 3)}, [8]))
    >>> data.update({"advantage": torch.randn(8, 1), "value_target": torch.randn(8, 1)})
    TensorDict(...)
    >>> out = loss(data)
    >>> sorted(k for k in out.keys() if k.startswith("loss_"))
    ['loss_critic', 'loss_entropy', 'loss_objective']
    >>> (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from tdrl.objectives import _actor_critic as ac
from tdrl.objectives import _ppo_fast
from tdrl.objectives._actor_critic import ActorCriticLoss
from tdrl.objectives._keys import MissingKeyError, keys_repr

__all__ = ["PPOLoss", "ClipPPOLoss", "KLPENPPOLoss"]


class PPOLoss(ActorCriticLoss):
    """Importance-weighted policy-gradient loss without a trust region (the PPO base).

    ``loss_objective = -mean(ratio * advantage)`` with ``ratio = pi(a|s) / pi_old(a|s)``.
    Prefer :class:`ClipPPOLoss` or :class:`KLPENPPOLoss`, which bound the update.

    Args:
        actor_network: a probabilistic actor with ``get_dist(td)`` (e.g.
            ``tdrl.modules.ProbabilisticActor`` or any
            ``tensordict.nn.ProbabilisticTensorDictSequential``).
        critic_network: a TensorDict module writing ``"state_value"`` ``[*B, 1]``.
            Optional when ``critic_coeff`` is ``None`` and the data already holds the
            advantage.

    Keyword Args:
        entropy_bonus: add ``loss_entropy = -entropy_coeff * entropy``.
        samples_mc_entropy: draws for the Monte-Carlo entropy of distributions without
            a closed form (TanhNormal).
        entropy_coeff: entropy weight (default ``0.01``). ``entropy_coef`` (the seed
            tutorial's spelling) is accepted too.
        critic_coeff: critic-loss weight (default ``1.0`` with a critic; ``None`` or
            ``0`` drops ``loss_critic``). ``critic_coef`` is accepted too.
        log_explained_variance: also report the critic's ``explained_variance``
            (``1 - Var(target - V) / Var(target)``). Off by default (TorchRL: on): six
            more small ops on every minibatch.
        loss_critic_type: ``"l1"``, ``"l2"`` or ``"smooth_l1"``.
        normalize_advantage: standardize the advantage over the minibatch.
        separate_losses: parameters the critic shares with the actor get no gradient
            from the critic loss.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses).
        clip_value: clip the critic's prediction to ``old value +- clip_value`` and keep
            the larger (pessimistic) loss; needs ``"state_value"`` in the data.
        check_finite: raise ``ValueError`` naming the offending input when a loss is NaN
            or inf. The check reads the loss scalars once per call (a host sync); the
            inputs are only scanned when it fails.
        gamma: default ``gamma`` of the value estimator built when the data has no
            advantage (TorchRL moved this to ``make_value_estimator``; both work).
        functional: accepted for TorchRL compatibility. tdrl always calls the networks
            directly; there are no parameter copies to functionalize.
        device: device of the coefficient buffers.
        actor, critic: aliases of ``actor_network`` / ``critic_network``.
        advantage_key, value_target_key, value_key: key renames (prefer ``set_keys``).

    Raises:
        TypeError: when the actor cannot build a distribution, or a network is missing.
        ValueError: for an unknown ``loss_critic_type`` / ``reduction`` or clashing
            coefficient spellings.
    """

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        log_explained_variance: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(actor_network, critic_network, **kwargs)
        self.log_explained_variance = log_explained_variance

    @property
    def out_keys(self) -> list[str]:
        keys = ["loss_objective"]
        if self.critic_coeff is not None:
            keys.append("loss_critic")
        if self.entropy_bonus:
            keys += ["loss_entropy", "entropy"]
        keys += [*self._diagnostic_keys(), "kl_approx", "ESS"]
        if self.critic_coeff is not None and self.log_explained_variance:
            keys.append("explained_variance")
        if self.critic_coeff is not None and self.clip_value is not None:
            keys.append("value_clip_fraction")
        return keys

    def _diagnostic_keys(self) -> list[str]:
        return []

    def reset(self) -> None:
        """Resets adaptive state between runs (nothing for this loss)."""

    def _surrogate(
        self, ratio: Tensor, advantage: Tensor, data: TensorDictBase, dist: Distribution
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """The gain to maximize (per sample, from ``ratio = pi / pi_old``) and its diagnostics.

        Returns:
            ``(gain, diagnostics, per_sample)``: ``per_sample`` maps a diagnostic's name to
            detached values of ``ratio``'s shape whose mean is reported (reduced together
            with the loss's other means, see ``batch_means``).
        """
        return ratio * advantage, {}, {}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the losses of one minibatch.

        Args:
            tensordict: ``[*B]`` data with the actor's inputs, ``action``,
                ``sample_log_prob``, ``advantage`` and (with a critic) ``value_target``.

        Returns:
            A TensorDict of scalar ``loss_*`` entries and detached diagnostics.

        Raises:
            KeyError: a required entry is missing (the message says what writes it).
            ValueError: a shape mismatch, or a non-finite loss (naming the input).
        """
        if _ppo_fast.ENABLED["on"]:
            # the same operations on the tensors when the configuration allows (see _ppo_fast)
            out = _ppo_fast.fast_forward(self, tensordict)
            if out is not None:
                return out
        keys = self.tensor_keys
        data, advantage = self._advantage(tensordict, self.normalize_advantage)
        sample_ndim = advantage.ndim - 1  # [*B], or [*B, n_agents] for a group of agents
        prev_log_prob = self._per_sample(self._behaviour_log_prob(data), advantage, "collected log-prob")
        action = self._get(data, keys.action, ac.ACTION_HINT)
        inputs = self._net_inputs(data)
        losses: dict[str, Tensor] = {}
        with ac.fast_distributions():
            dist = self.actor_network.get_dist(inputs)
            log_prob = self._per_sample(dist.log_prob(action), advantage, "actor's log-prob")
            log_weight = (log_prob - prev_log_prob).unsqueeze(-1)
            ratio = log_weight.exp()
            gain, diagnostics, per_sample = self._surrogate(ratio, advantage, data, dist)
            losses["loss_objective"] = self._reduce(gain, self.reduction, squeeze=True).neg()
            if self.critic_coeff is not None:
                losses["loss_critic"], critic_diag = self._critic_term(data, inputs, self.log_explained_variance)
                diagnostics.update(critic_diag)
            if self.entropy_bonus:
                losses["loss_entropy"], diagnostics["entropy"] = self._entropy_term(dist, sample_ndim)
        with torch.no_grad():
            # kl_approx = -mean(log w) and ESS / n = mean(w)^2 / mean(w^2), w the importance
            # weights, reduced in one pass with the surrogate's per-sample diagnostics.
            weight = ratio.detach()
            means = ac.batch_means([log_weight.detach(), weight, weight.square(), *per_sample.values()])
            diagnostics["kl_approx"] = means[0].neg()
            diagnostics["ESS"] = means[1].square().div_(means[2])
            diagnostics.update(zip(per_sample, means[3:]))
        return self._finish(losses, diagnostics, data)


class ClipPPOLoss(PPOLoss):
    """Clipped PPO (Schulman et al., 2017), the seed tutorial's loss.

    ``loss_objective = -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))``.
    Diagnostics (detached scalars): ``clip_fraction`` (share of clipped ratios),
    ``kl_approx``, ``ESS`` (effective sample size / batch size), ``entropy``, and
    ``explained_variance`` with ``log_explained_variance=True``.

    Args:
        actor_network, critic_network: as in :class:`PPOLoss`.

    Keyword Args:
        clip_epsilon: ``eps``, or a ``(eps_low, eps_high)`` pair for asymmetric clipping.
        clip_value: ``True`` clips the critic with ``clip_epsilon``; a float sets the
            radius; ``None``/``False``: no value clipping.
        **kwargs: the keyword arguments of :class:`PPOLoss` (``entropy_coef`` /
            ``entropy_coeff``, ``critic_coef`` / ``critic_coeff``, ``loss_critic_type`` ...).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import ProbabilisticTensorDictModule, ProbabilisticTensorDictSequential, TensorDictModule
        >>> actor = ProbabilisticTensorDictSequential(
        ...     TensorDictModule(nn.Linear(2, 3), in_keys=["observation"], out_keys=["logits"]),
        ...     ProbabilisticTensorDictModule(in_keys=["logits"], out_keys=["action"],
        ...         distribution_class=torch.distributions.Categorical, return_log_prob=True))
        >>> loss = ClipPPOLoss(actor, critic_coeff=None, entropy_coeff=0.01)
        >>> data = actor(TensorDict({"observation": torch.randn(4, 2)}, [4]))
        >>> data["advantage"] = torch.ones(4, 1)
        >>> out = loss(data)
        >>> out["clip_fraction"].item(), round(out["loss_objective"].item(), 4)
        (0.0, -1.0)
    """

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        clip_epsilon: float | tuple[float, float] = 0.2,
        clip_value: bool | float | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(clip_epsilon, (tuple, list)):
            if len(clip_epsilon) != 2:
                raise ValueError(f"ClipPPOLoss: clip_epsilon pair must be (low, high), got {clip_epsilon}.")
            low, high = (float(e) for e in clip_epsilon)
            if clip_value is True:
                raise ValueError("ClipPPOLoss: clip_value=True needs a scalar clip_epsilon; pass a float radius.")
        else:
            low = high = float(clip_epsilon)
        if not (0.0 <= low < 1.0 and high >= 0.0):
            raise ValueError(f"ClipPPOLoss: clip_epsilon must be in [0, 1) (low) and >= 0 (high), got {clip_epsilon}.")
        if clip_value is True:
            clip_value = low
        elif clip_value is False:
            clip_value = None
        super().__init__(actor_network, critic_network, clip_value=clip_value, **kwargs)
        self.clip_epsilon = clip_epsilon
        self._bounds = (1.0 - low, 1.0 + high)

    def _diagnostic_keys(self) -> list[str]:
        return ["clip_fraction"]

    def _surrogate(self, ratio, advantage, data, dist):
        clipped = ratio.clamp(*self._bounds)
        gain = torch.minimum(ratio * advantage, clipped * advantage)
        # a comparison records no graph; forward averages it into clip_fraction
        return gain, {}, {"clip_fraction": clipped != ratio}


class KLPENPPOLoss(PPOLoss):
    """PPO with an adaptive KL penalty (Schulman et al., 2017, sec. 4).

    ``loss_objective = -mean(ratio * A - beta * KL(pi_old || pi))``; after each call,
    ``beta`` is multiplied by ``increment`` when the mean KL exceeds ``1.5 * dtarg`` and
    by ``decrement`` when it is below ``dtarg / 1.5``. ``pi_old`` is rebuilt from the
    distribution parameters the actor stored in the data while collecting (e.g.
    ``"loc"``/``"scale"``).

    Keyword Args:
        dtarg: target KL.
        beta: initial penalty weight.
        increment: factor (>= 1) applied to ``beta`` when the KL is too large.
        decrement: factor (<= 1) applied when it is too small.
        samples_mc_kl: draws for a Monte-Carlo KL when no closed form is registered.
        **kwargs: the keyword arguments of :class:`PPOLoss`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import ProbabilisticTensorDictModule, ProbabilisticTensorDictSequential, TensorDictModule
        >>> actor = ProbabilisticTensorDictSequential(
        ...     TensorDictModule(nn.Linear(2, 3), in_keys=["observation"], out_keys=["logits"]),
        ...     ProbabilisticTensorDictModule(in_keys=["logits"], out_keys=["action"],
        ...         distribution_class=torch.distributions.Categorical, return_log_prob=True))
        >>> loss = KLPENPPOLoss(actor, critic_coeff=None, beta=1.0, dtarg=0.01)
        >>> data = actor(TensorDict({"observation": torch.randn(4, 2)}, [4]))
        >>> data["advantage"] = torch.ones(4, 1)
        >>> out = loss(data)
        >>> out["kl"].item(), loss.beta.item()  # same policy: KL 0, beta halves
        (0.0, 0.5)
    """

    beta: Tensor  # a buffer (registered in __init__)

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        dtarg: float = 0.01,
        beta: float = 1.0,
        increment: float = 2.0,
        decrement: float = 0.5,
        samples_mc_kl: int = 1,
        **kwargs: Any,
    ) -> None:
        if increment < 1.0:
            raise ValueError(f"KLPENPPOLoss: increment must be >= 1, got {increment}.")
        if decrement > 1.0:
            raise ValueError(f"KLPENPPOLoss: decrement must be <= 1, got {decrement}.")
        super().__init__(actor_network, critic_network, **kwargs)
        self.dtarg = float(dtarg)
        self.increment = float(increment)
        self.decrement = float(decrement)
        self.samples_mc_kl = int(samples_mc_kl)
        self._beta_init = float(beta)
        self.register_buffer("beta", torch.tensor(float(beta), device=self.entropy_coeff.device))

    def _diagnostic_keys(self) -> list[str]:
        return ["kl", "beta"]

    def reset(self) -> None:
        """Restores ``beta`` to its initial value."""
        self.beta.fill_(self._beta_init)

    def _previous_dist(self, data: TensorDictBase) -> Distribution:
        build = getattr(self.actor_network, "build_dist_from_params", None)
        try:
            if build is None:
                raise AttributeError
            return build(data)
        except (KeyError, TypeError, AttributeError) as err:
            raise MissingKeyError(
                "KLPENPPOLoss: could not rebuild the behaviour policy from the data: the actor "
                "must store its distribution parameters (its probabilistic module's in_keys, "
                f"e.g. 'loc'/'scale') while collecting. Keys present: {keys_repr(data)}."
            ) from err

    def _surrogate(self, ratio, advantage, data, dist):
        sample_ndim = advantage.ndim - 1
        previous = self._previous_dist(data)
        try:
            kl = kl_divergence(previous, dist)
        except NotImplementedError:
            x = previous.sample((self.samples_mc_kl,))
            kl = (previous.log_prob(x) - dist.log_prob(x)).mean(0)
        kl = ac.to_batch_shape(kl, sample_ndim).unsqueeze(-1)
        beta = self.beta.clone()  # the update below must not touch the graph's beta
        gain = ratio * advantage - beta * kl
        with torch.no_grad():
            kl_mean = kl.mean()
            if kl_mean > self.dtarg * 1.5:
                self.beta.mul_(self.increment)
            elif kl_mean < self.dtarg / 1.5:
                self.beta.mul_(self.decrement)
        return gain, {"kl": kl_mean, "beta": beta}, {}
