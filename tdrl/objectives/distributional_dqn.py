"""The distributional (C51) DQN loss, ``DistributionalDQNLoss`` (also importable from ``tdrl.objectives.dqn``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from tdrl.modules.qvalue import DistributionalQValueActor
from tdrl.objectives._keys import next_key
from tdrl.objectives._q_common import _check_prioritized_weights, _check_reduction, _find_action_space, _QLossBase
from tdrl.objectives.utils import ValueEstimators

__all__ = ["DistributionalDQNLoss"]


class DistributionalDQNLoss(_QLossBase):
    """The distributional (C51) DQN loss (Bellemare et al., 2017).

    The value network (a :class:`~tdrl.modules.DistributionalQValueActor`) writes, for
    each action, log-probabilities over a fixed ``support`` of returns
    (``"action_value"`` of shape ``[*B, atoms, n_actions]``). The target distribution is
    the target network's at the next state and the online network's greedy next action,
    shifted by ``r + gamma * z`` (no shift after termination), clipped to the support and
    projected back onto it; the loss is its cross-entropy with the predicted distribution
    of the taken action. The per-sample cross-entropy is written as the priority.

    Args:
        value_network: a :class:`~tdrl.modules.DistributionalQValueActor` (any module with
            a ``support`` buffer writing ``"action_value"`` log-probabilities and
            ``"action"``).

    Keyword Args:
        gamma: the discount (required, as in TorchRL); ``make_value_estimator("td0",
            gamma=...)`` changes it.
        delay_value: keep a target copy of the parameters (default ``True``).
        priority_key: where the per-sample loss is written (default ``"td_error"``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        use_prioritized_weights: as in :class:`DQNLoss`.

    Raises:
        TypeError: when the network has no ``support``.
        ValueError: for an unknown reduction, or (on a call) a batch with more than one
            batch dim.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.modules import MLP, DistributionalQValueActor
        >>> from tdrl.specs import OneHot
        >>> support = torch.linspace(-10, 10, 11)
        >>> actor = DistributionalQValueActor(
        ...     MLP(in_features=4, out_features=(11, 2), num_cells=[16]), support=support, spec=OneHot(2))
        >>> loss = DistributionalDQNLoss(actor, gamma=0.99)
        >>> data = TensorDict({
        ...     "observation": torch.randn(6, 4), "action": OneHot(2).rand((6,)),
        ...     "next": {"observation": torch.randn(6, 4), "reward": torch.randn(6, 1),
        ...              "done": torch.zeros(6, 1, dtype=torch.bool),
        ...              "terminated": torch.zeros(6, 1, dtype=torch.bool)},
        ... }, [6])
        >>> loss(data)["loss"].backward()
        >>> data["td_error"].shape
        torch.Size([6, 1])
    """

    @dataclass
    class _AcceptedKeys:
        """The entries the loss reads and writes (rename with :meth:`~tdrl.objectives.LossModule.set_keys`)."""

        action_value: NestedKey = "action_value"
        action: NestedKey = "action"
        priority: NestedKey = "td_error"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        steps_to_next_obs: NestedKey = "steps_to_next_obs"
        priority_weight: NestedKey = "priority_weight"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys
    default_value_estimator = ValueEstimators.TD0
    SUPPORTED_VALUE_ESTIMATORS = (ValueEstimators.TD0,)
    out_keys: ClassVar[list[str]] = ["loss"]
    gamma: Tensor

    def __init__(
        self,
        value_network: DistributionalQValueActor | nn.Module,
        *,
        gamma: float,
        delay_value: bool = True,
        priority_key: NestedKey | None = None,
        reduction: str | None = None,
        use_prioritized_weights: str | bool = "auto",
    ) -> None:
        name = type(self).__name__
        super().__init__()
        reduction = "mean" if reduction is None else reduction
        _check_reduction(name, reduction)
        _check_prioritized_weights(name, use_prioritized_weights)
        if not isinstance(value_network, TensorDictModuleBase) or not isinstance(
            getattr(value_network, "support", None), Tensor
        ):
            raise TypeError(
                f"{name}: value_network must be a DistributionalQValueActor (a TensorDict module with a "
                f"'support' tensor of returns); got {type(value_network).__name__}. Build it as "
                "DistributionalQValueActor(net, support=torch.linspace(v_min, v_max, atoms), spec=env.action_spec)."
            )
        self.register_buffer("gamma", torch.tensor(float(gamma)))
        self.delay_value = bool(delay_value)
        self.reduction = reduction
        self.use_prioritized_weights = use_prioritized_weights
        if priority_key is not None:
            self.tensor_keys.priority = priority_key
        self.action_space = _find_action_space(name, None, value_network)
        if self.action_space == "mult_one_hot":
            raise ValueError(f"{name}: a mult_one_hot action space is not supported; use one_hot or categorical.")
        self._register_network(value_network, "value_network", create_target_params=self.delay_value)

    @property
    def in_keys(self) -> list[NestedKey]:
        """The entries of the input the loss reads."""
        keys = self.tensor_keys
        net_keys = list(self.value_network.in_keys)
        out = [keys.action, next_key(keys.reward), next_key(keys.done), next_key(keys.terminated)]
        return out + net_keys + [next_key(k) for k in net_keys]

    def make_value_estimator(
        self, value_type: ValueEstimators | str | None = None, **hyperparams: Any
    ) -> DistributionalDQNLoss:
        """Only TD(0) applies (the projection is one step); a ``gamma`` given here replaces the loss's.

        Raises:
            ValueError: for any other estimator, or other hyperparameters.
        """
        value_type = ValueEstimators(value_type) if value_type is not None else ValueEstimators.TD0
        if value_type not in self.SUPPORTED_VALUE_ESTIMATORS:
            raise ValueError(
                f"{type(self).__name__} supports only the TD0 estimator (the C51 projection is one step); "
                f"got {value_type.name}."
            )
        unknown = set(hyperparams) - {"gamma"}
        if unknown:
            raise ValueError(f"{type(self).__name__}.make_value_estimator: only gamma applies, got {sorted(unknown)}.")
        if "gamma" in hyperparams:
            self.gamma.fill_(float(hyperparams["gamma"]))
        self.value_type = value_type
        return self

    def _log_prob_taken(self, log_probs: Tensor, action: Tensor) -> Tensor:
        """``[B, atoms]``: the predicted log-probabilities of the taken actions."""
        n = log_probs.shape[-1]
        if self.action_space == "categorical":
            index = action.reshape(-1) if action.numel() == log_probs.shape[0] else None
            if index is None or index.dtype.is_floating_point or index.dtype == torch.bool:
                raise ValueError(
                    f"{type(self).__name__}: a categorical action must hold one integer index per sample "
                    f"(shape [{log_probs.shape[0]}] or [{log_probs.shape[0]}, 1]); got shape "
                    f"{tuple(action.shape)} and dtype {action.dtype}."
                )
        else:
            if action.shape != (log_probs.shape[0], n):
                raise ValueError(
                    f"{type(self).__name__}: a one-hot action must have shape {(log_probs.shape[0], n)}; got "
                    f"{tuple(action.shape)}. An index action needs a Categorical action spec."
                )
            index = action.to(torch.uint8).argmax(-1)
        return log_probs.gather(-1, index.view(-1, 1, 1).expand(-1, log_probs.shape[-2], 1)).squeeze(-1)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the cross-entropy loss and writes it per sample as the priority.

        Args:
            tensordict: ``[B]`` transitions (as for :class:`DQNLoss`).

        Returns:
            ``TensorDict(loss=...)``.

        Raises:
            ValueError: for a batch with more than one batch dim, or a bad action.
            KeyError: naming a missing entry.
        """
        keys = self.tensor_keys
        name = type(self).__name__
        if tensordict.batch_dims != 1:
            raise ValueError(
                f"{name}: expected a [B] batch of transitions, got batch_size {tuple(tensordict.batch_size)}; "
                "flatten it first (tensordict.reshape(-1))."
            )
        net = self.value_network
        in_keys = list(net.in_keys)
        hint = "Give the env's step outputs under 'next' (as env.rollout, the collectors and replay samples do)."
        action = self._get(tensordict, keys.action, "The batch must hold the action taken at each step.")
        reward = self._get(tensordict, next_key(keys.reward), hint)
        done = self._get(tensordict, next_key(keys.done), hint)
        terminated = tensordict.get(next_key(keys.terminated), done)
        nxt = tensordict.get("next")
        support = cast(Tensor, net.support)
        atoms = support.numel()
        v_min, v_max = support.min().item(), support.max().item()
        delta_z = (v_max - v_min) / (atoms - 1)
        steps = tensordict.get(keys.steps_to_next_obs, None)
        discount = self.gamma if steps is None else self.gamma ** steps.view_as(reward)

        log_probs = net(self._select(tensordict, in_keys, "at the root")).get(keys.action_value)
        log_p_taken = self._log_prob_taken(log_probs, action)

        with torch.no_grad():
            next_inputs = self._select(nxt, in_keys, "under 'next'")
            next_action = net(next_inputs.copy()).get(keys.action)
            target = self._target_network() if self.delay_value else net
            next_probs = target(next_inputs).get(keys.action_value).exp()
            if self.action_space == "categorical":
                next_index = next_action.reshape(-1)
            else:
                next_index = next_action.to(torch.uint8).argmax(-1)
            p_next = next_probs.gather(-1, next_index.view(-1, 1, 1).expand(-1, atoms, 1)).squeeze(-1)
            projected = _project_onto_support(
                p_next, reward, terminated, discount, support.to(reward.device), v_min, v_max, delta_z
            )
        loss = -(projected.to(log_p_taken.device) * log_p_taken).sum(-1)
        self._write_priority(tensordict, loss.detach().unsqueeze(-1))
        return TensorDict(loss=self._reduce_loss(loss, tensordict))


def _project_onto_support(
    p_next: Tensor,
    reward: Tensor,
    terminated: Tensor,
    discount: Tensor,
    support: Tensor,
    v_min: float,
    v_max: float,
    delta_z: float,
) -> Tensor:
    """Projects the distribution ``p_next`` on ``r + discount * support`` back onto ``support``.

    Each shifted atom's mass is split between its two neighbouring atoms in proportion to
    its distance to them (an atom landing exactly on one keeps all its mass there).

    Returns:
        ``[B, atoms]`` probabilities.
    """
    batch, atoms = p_next.shape
    shifted = reward + (~terminated.bool()).to(reward.dtype) * discount * support
    if shifted.shape != (batch, atoms):
        raise ValueError(
            f"DistributionalDQNLoss: the reward has shape {tuple(reward.shape)}; expected [{batch}, 1] "
            f"(one per sample) to shift the {atoms} atoms of the support."
        )
    position = (shifted.clamp(v_min, v_max) - v_min) / delta_z
    low, up = position.floor().long(), position.ceil().long()
    # an atom that lands exactly on the grid would give zero weight to both neighbours
    low[(up > 0) & (low == up)] -= 1
    up[(low < atoms - 1) & (low == up)] += 1
    projected = torch.zeros_like(p_next)
    try:
        projected.scatter_add_(-1, low, p_next * (up.to(p_next.dtype) - position))
        projected.scatter_add_(-1, up, p_next * (position - low.to(p_next.dtype)))
    except RuntimeError:  # an index off the support: only a NaN in the shifted atoms gets there
        raise ValueError(
            "DistributionalDQNLoss: the shifted support r + gamma * z holds NaN; check the rewards "
            "(('next', 'reward')) and the discount."
        ) from None
    return projected
