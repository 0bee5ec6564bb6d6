"""A2C: advantage actor-critic (Mnih et al., 2016), the on-policy loss without ratios.

``loss_objective = -mean(log pi(a|s) * A)``, ``loss_critic = critic_coeff * d(V(s), target)``,
``loss_entropy = -entropy_coeff * entropy``. Unlike PPO it does not read
``sample_log_prob``: each batch is used for one gradient step.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import ProbabilisticTensorDictModule, ProbabilisticTensorDictSequential, TensorDictModule
    >>> actor = ProbabilisticTensorDictSequential(
    ...     TensorDictModule(nn.Linear(2, 3), in_keys=["observation"], out_keys=["logits"]),
    ...     ProbabilisticTensorDictModule(in_keys=["logits"], out_keys=["action"],
    ...         distribution_class=torch.distributions.Categorical))
    >>> critic = TensorDictModule(nn.Linear(2, 1), in_keys=["observation"], out_keys=["state_value"])
    >>> loss = A2CLoss(actor, critic, entropy_coef=0.01)
    >>> data = actor(TensorDict({"observation": torch.randn(5, 2)}, [5]))
    >>> data.update({"advantage": torch.randn(5, 1), "value_target": torch.randn(5, 1)})
    TensorDict(...)
    >>> sorted(loss(data).keys())
    ['entropy', 'loss_critic', 'loss_entropy', 'loss_objective']
"""

from __future__ import annotations

from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor

from tdrl.objectives import _actor_critic as ac
from tdrl.objectives._actor_critic import ActorCriticLoss

__all__ = ["A2CLoss"]


class A2CLoss(ActorCriticLoss):
    """Advantage actor-critic loss.

    Args:
        actor_network: a probabilistic actor with ``get_dist(td)``.
        critic_network: a TensorDict module writing ``"state_value"`` ``[*B, 1]``.

    The keyword arguments ``entropy_bonus``, ``samples_mc_entropy``, ``entropy_coeff`` (or
    ``entropy_coef``), ``critic_coeff`` (or ``critic_coef``), ``loss_critic_type``,
    ``normalize_advantage``, ``separate_losses``, ``reduction``, ``clip_value``,
    ``check_finite``, ``gamma``, ``functional``, ``device``, ``actor``, ``critic`` and the
    key renames are described in :class:`PPOLoss` (they are shared).
    """

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        return [*self._net_in_keys, k.action, k.advantage, k.value_target]

    @property
    def out_keys(self) -> list[str]:
        keys = ["loss_objective"]
        if self.critic_coeff is not None:
            keys.append("loss_critic")
        if self.entropy_bonus:
            keys += ["loss_entropy", "entropy"]
        return keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the A2C losses of a batch.

        Args:
            tensordict: ``[*B]`` data with the actor's inputs, ``action``, ``advantage``
                and (with a critic) ``value_target``; the advantage is computed with the
                value estimator when missing.

        Returns:
            A TensorDict with scalar ``loss_objective``, ``loss_critic``, ``loss_entropy``
            and the detached ``entropy``.
        """
        data, advantage = self._advantage(tensordict, self.normalize_advantage)
        sample_ndim = advantage.ndim - 1  # [*B], or [*B, n_agents] for a group of agents
        action = self._get(data, self.tensor_keys.action, ac.ACTION_HINT)
        inputs = data.select(*self._net_in_keys)
        losses: dict[str, Tensor] = {}
        diagnostics: dict[str, Tensor] = {}
        with ac.fast_distributions():
            dist = self.actor_network.get_dist(inputs)
            log_prob = self._per_sample(dist.log_prob(action), advantage, "actor's log-prob").unsqueeze(-1)
            losses["loss_objective"] = self._reduce(log_prob * advantage, self.reduction, squeeze=True).neg()
            if self.critic_coeff is not None:
                losses["loss_critic"], critic_diag = self._critic_term(data, inputs, False)
                diagnostics.update(critic_diag)
            if self.entropy_bonus:
                losses["loss_entropy"], diagnostics["entropy"] = self._entropy_term(dist, sample_ndim)
        return self._finish(losses, diagnostics, data)
