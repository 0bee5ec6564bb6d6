"""REINFORCE (Williams, 1992), with or without a learned baseline.

Without a critic, the advantage is the discounted reward-to-go of each step within its
trajectory (the seed REINFORCE documents' ``compute_episodic_return`` /
``_discounted_cumsum_q_vals``), optionally standardized. With a critic (a baseline),
the advantage comes from the value estimator (default GAE; ``make_value_estimator("td1")``
gives the classic "return minus baseline") and the critic regresses on
``value_target``.

Outputs: ``loss_actor = -mean(log pi(a|s) * A)`` and, with a critic, ``loss_value``.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import ProbabilisticTensorDictModule, ProbabilisticTensorDictSequential, TensorDictModule
    >>> actor = ProbabilisticTensorDictSequential(
    ...     TensorDictModule(nn.Linear(2, 3), in_keys=["observation"], out_keys=["logits"]),
    ...     ProbabilisticTensorDictModule(in_keys=["logits"], out_keys=["action"],
    ...         distribution_class=torch.distributions.Categorical))
    >>> loss = ReinforceLoss(actor, gamma=1.0)
    >>> data = actor(TensorDict({"observation": torch.randn(4, 2)}, [4]))
    >>> data["next"] = TensorDict({"reward": torch.ones(4, 1),
    ...     "done": torch.tensor([[False], [True], [False], [False]])}, [4])
    >>> out = loss(data)
    >>> list(out.keys())
    ['loss_actor']
    >>> loss.returns(data).flatten()  # reward-to-go, restarting after the done step
    tensor([2., 1., 2., 1.])
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.objectives import _actor_critic as ac
from tdrl.objectives._actor_critic import ActorCriticLoss
from tdrl.objectives._keys import next_key
from tdrl.objectives.value.functional import reward2go

__all__ = ["ReinforceLoss"]


class ReinforceLoss(ActorCriticLoss):
    """REINFORCE policy-gradient loss.

    Args:
        actor_network: a probabilistic actor with ``get_dist(td)``.
        critic_network: optional baseline writing ``"state_value"`` ``[*B, 1]``.

    Keyword Args:
        gamma: discount of the reward-to-go (no critic) and default ``gamma`` of the
            value estimator (with a critic). Default ``0.99``.
        normalize_advantage: standardize the advantage (or the returns) over the batch,
            as the seed's REINFORCE example does.
        loss_critic_type: ``"l1"``, ``"l2"`` or ``"smooth_l1"`` for the baseline.
        separate_losses: shared parameters get no gradient from the baseline loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        clip_value: clip the baseline around the stored ``"state_value"``.
        check_finite: raise on a NaN/inf loss, naming the input (one check per call).
        delay_value: accepted for TorchRL compatibility; must be ``False``.
        functional: accepted for TorchRL compatibility (no effect).
        device: device of the coefficient buffers.
        actor, critic: aliases.
        advantage_key, value_target_key, value_key: key renames.

    Without a critic the input must be time-ordered along its last batch dim (whole
    trajectories, or the collector's ``[*B, T]`` batch) unless it already holds an
    ``"advantage"``.
    """

    def __init__(
        self,
        actor_network: nn.Module | None = None,
        critic_network: nn.Module | None = None,
        *,
        gamma: float | None = None,
        normalize_advantage: bool = False,
        loss_critic_type: str = "smooth_l1",
        separate_losses: bool = False,
        reduction: str | None = None,
        clip_value: float | None = None,
        check_finite: bool = True,
        delay_value: bool = False,
        functional: bool = True,
        device: torch.device | str | None = None,
        actor: nn.Module | None = None,
        critic: nn.Module | None = None,
        advantage_key: NestedKey | None = None,
        value_target_key: NestedKey | None = None,
        value_key: NestedKey | None = None,
    ) -> None:
        if delay_value:
            raise ValueError("ReinforceLoss: delay_value=True is not supported; the baseline is trained online.")
        critic_network = critic_network if critic_network is not None else critic
        super().__init__(
            actor_network,
            critic_network,
            entropy_bonus=False,
            critic_coeff=1.0 if critic_network is not None else None,
            loss_critic_type=loss_critic_type,
            normalize_advantage=normalize_advantage,
            separate_losses=separate_losses,
            reduction=reduction,
            clip_value=clip_value,
            check_finite=check_finite,
            gamma=gamma,
            functional=functional,
            device=device,
            actor=actor,
            advantage_key=advantage_key,
            value_target_key=value_target_key,
            value_key=value_key,
        )
        self.gamma = 0.99 if gamma is None else float(gamma)

    @property
    def in_keys(self) -> list[NestedKey]:
        k = self.tensor_keys
        keys = [*self._net_in_keys, k.action, k.advantage]
        return [*keys, k.value_target] if self.critic_network is not None else keys

    @property
    def out_keys(self) -> list[str]:
        return ["loss_actor", "loss_value"] if self.critic_network is not None else ["loss_actor"]

    def returns(self, tensordict: TensorDictBase) -> Tensor:
        """Discounted reward-to-go along the last batch dim, restarting after each done.

        Args:
            tensordict: time-ordered data with ``("next", "reward")`` and ``("next", "done")``.

        Returns:
            A tensor shaped like the reward.
        """
        keys = self.tensor_keys
        hint = "Give the env's step outputs under 'next' (as env.rollout and the collectors do)."
        reward = self._get(tensordict, next_key(keys.reward), hint)
        done = self._get(tensordict, next_key(keys.done), hint)
        time_dim = tensordict.batch_dims - 1
        return reward2go(reward, done, self.gamma, time_dim=time_dim)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes ``loss_actor`` (and ``loss_value`` with a baseline).

        Args:
            tensordict: ``[*B]`` data with the actor's inputs, ``action`` and either an
                ``advantage`` or the rewards/dones to compute it from.

        Returns:
            A TensorDict of scalar losses.
        """
        data = tensordict
        if self.critic_network is None and data.get(self.tensor_keys.advantage, None) is None:
            data = data.copy()
            data.set(self.tensor_keys.advantage, self.returns(data))
        data, advantage = self._advantage(data, self.normalize_advantage)
        action = self._get(data, self.tensor_keys.action, ac.ACTION_HINT)
        inputs = data.select(*self._net_in_keys)
        losses: dict[str, Tensor] = {}
        with ac.fast_distributions():
            dist = self.actor_network.get_dist(inputs)
            log_prob = self._per_sample(dist.log_prob(action), advantage, "actor's log-prob").unsqueeze(-1)
            losses["loss_actor"] = self._reduce(log_prob * advantage.detach(), self.reduction, squeeze=True).neg()
        diagnostics: dict[str, Tensor] = {}
        if self.critic_network is not None:
            losses["loss_value"], diagnostics = self._critic_term(data, inputs, False)
        return self._finish(losses, diagnostics, data)
