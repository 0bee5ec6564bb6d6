"""An actor and its critic in one module, with or without a shared trunk, and the pieces to take apart.

- :class:`ActorValueOperator`: a common trunk (``observation -> hidden``), then a policy head
  and a state-value head that both read the hidden state (PPO/A2C with a shared encoder).
- :class:`ActorCriticOperator`: the same, but the critic is ``Q(hidden, action)`` and reads
  the action the policy head just wrote (DDPG/SAC with a shared encoder).
- :class:`ActorCriticWrapper`: a policy and a value network with nothing shared.

Each runs everything on a call, and hands out the parts a loss or a collector needs:
``get_policy_operator()`` (trunk + policy head), ``get_value_operator()`` (trunk + value
head) or ``get_critic_operator()``, ``get_policy_head()`` and ``get_value_head()``. The
parts share their parameters with the whole. Names and methods are TorchRL's.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from tdrl.modules import Actor, ValueOperator
    >>> trunk = TensorDictModule(nn.Linear(4, 8), in_keys=["observation"], out_keys=["hidden"])
    >>> policy = Actor(nn.Linear(8, 2), in_keys=["hidden"])
    >>> value = ValueOperator(nn.Linear(8, 1), in_keys=["hidden"])
    >>> agent = ActorValueOperator(trunk, policy, value)
    >>> td = agent(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
    >>> td["action"].shape, td["state_value"].shape
    (torch.Size([3, 2]), torch.Size([3, 1]))
"""

from __future__ import annotations

from typing import cast

from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase, TensorDictSequential

__all__ = ["ActorValueOperator", "ActorCriticOperator", "ActorCriticWrapper"]


def _check_parts(owner: str, **parts: object) -> None:
    for name, part in parts.items():
        if not isinstance(part, TensorDictModuleBase):
            raise TypeError(
                f"{owner}: {name} must be a TensorDict module (reading and writing TensorDict entries), got "
                f"{type(part).__name__}. Wrap the network: TensorDictModule(net, in_keys=[...], out_keys=[...])."
            )


class ActorValueOperator(TensorDictSequential):
    """A shared trunk, then a policy head and a state-value head reading its output.

    A call runs the trunk, the policy head and the value head, in that order.

    Args:
        common_operator: the trunk, e.g. ``observation -> hidden``.
        policy_operator: the policy head, reading the trunk's output and writing the action
            (an ``Actor``, a ``ProbabilisticActor``, a ``QValueActor``...).
        value_operator: the value head, reading the trunk's output and writing the value
            (usually a ``ValueOperator`` writing ``"state_value"``).

    Raises:
        TypeError: when a part is not a TensorDict module.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import NormalParamExtractor, ProbabilisticActor, TanhNormal, ValueOperator
        >>> trunk = TensorDictModule(nn.Linear(4, 8), in_keys=["observation"], out_keys=["hidden"])
        >>> policy = ProbabilisticActor(
        ...     TensorDictModule(nn.Sequential(nn.Linear(8, 4), NormalParamExtractor()),
        ...                      in_keys=["hidden"], out_keys=["loc", "scale"]),
        ...     in_keys=["loc", "scale"], distribution_class=TanhNormal, return_log_prob=True)
        >>> agent = ActorValueOperator(trunk, policy, ValueOperator(nn.Linear(8, 1), in_keys=["hidden"]))
        >>> td = TensorDict(observation=torch.randn(3, 4), batch_size=[3])
        >>> sorted(agent.get_policy_operator()(td.clone()).keys())
        ['action', 'action_log_prob', 'hidden', 'loc', 'observation', 'sample_log_prob', 'scale']
        >>> sorted(agent.get_value_operator()(td.clone()).keys())
        ['hidden', 'observation', 'state_value']
        >>> agent.get_policy_operator().get_dist(td).batch_shape
        torch.Size([3])
    """

    def __init__(
        self,
        common_operator: TensorDictModuleBase,
        policy_operator: TensorDictModuleBase,
        value_operator: TensorDictModuleBase,
    ) -> None:
        _check_parts(
            f"{type(self).__name__}",
            common_operator=common_operator,
            policy_operator=policy_operator,
            value_operator=value_operator,
        )
        super().__init__(common_operator, policy_operator, value_operator)

    def _part(self, index: int) -> TensorDictModuleBase:
        return cast(TensorDictModuleBase, self.module[index])  # __init__ checked every part

    def get_policy_operator(self) -> TensorDictSequential:
        """The policy alone: trunk then policy head (``observation -> action``), sharing their parameters.

        With a probabilistic policy head the result is a ``ProbabilisticTensorDictSequential``,
        so ``get_dist`` works on it (as losses need).
        """
        common, policy = self._part(0), self._part(1)
        if isinstance(policy, ProbabilisticTensorDictSequential):
            return ProbabilisticTensorDictSequential(common, *cast("list[TensorDictModuleBase]", list(policy.module)))
        return TensorDictSequential(common, policy)

    def get_value_operator(self) -> TensorDictSequential:
        """The value network alone: trunk then value head (``observation -> state_value``)."""
        return TensorDictSequential(self._part(0), self._part(2))

    def get_policy_head(self) -> TensorDictModuleBase:
        """The policy head (reads the trunk's output)."""
        return self._part(1)

    def get_value_head(self) -> TensorDictModuleBase:
        """The value head (reads the trunk's output)."""
        return self._part(2)


class ActorCriticOperator(ActorValueOperator):
    """A shared trunk, a policy head, then a critic ``Q(hidden, action)`` of the action just written.

    A call runs the trunk, the policy head and the critic, in that order, so the critic
    scores the policy's own action. The critic must write a state-action value (e.g.
    ``ValueOperator(net, in_keys=["hidden", "action"])``, which writes
    ``"state_action_value"``).

    Args:
        common_operator: the trunk, e.g. ``observation -> hidden``.
        policy_operator: the policy head, reading the trunk's output and writing the action.
        value_operator: the critic, reading the trunk's output and the action.

    Raises:
        TypeError: when a part is not a TensorDict module.
        ValueError: when the critic writes ``"state_value"`` (use :class:`ActorValueOperator`
            for a state value).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import MLP, Actor, ValueOperator
        >>> trunk = TensorDictModule(nn.Linear(4, 8), in_keys=["observation"], out_keys=["hidden"])
        >>> critic = ValueOperator(MLP(in_features=10, out_features=1, num_cells=[16]), in_keys=["hidden", "action"])
        >>> agent = ActorCriticOperator(trunk, Actor(nn.Linear(8, 2), in_keys=["hidden"]), critic)
        >>> td = agent(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
        >>> td["state_action_value"].shape
        torch.Size([3, 1])
        >>> agent.get_critic_operator() is agent
        True
    """

    def __init__(
        self,
        common_operator: TensorDictModuleBase,
        policy_operator: TensorDictModuleBase,
        value_operator: TensorDictModuleBase,
    ) -> None:
        super().__init__(common_operator, policy_operator, value_operator)
        if self._part(2).out_keys[0] == "state_value":
            raise ValueError(
                "ActorCriticOperator: the critic writes 'state_value', but this operator scores the policy's "
                "action with Q(hidden, action). Give the critic out_keys=['state_action_value'] and 'action' among "
                "its in_keys, or use ActorValueOperator for a state value."
            )

    def get_critic_operator(self) -> ActorCriticOperator:
        """The critic of the policy's action: the whole operator (trunk, policy head, critic)."""
        return self

    def get_value_operator(self) -> TensorDictSequential:
        """Not available: the critic needs an action (call :meth:`get_critic_operator`).

        Raises:
            RuntimeError: always, as in TorchRL.
        """
        raise RuntimeError(
            "ActorCriticOperator has no state-value operator: its critic scores a state-action pair. "
            "Use get_critic_operator() (trunk, policy and critic) or get_value_head() (the critic alone)."
        )


class ActorCriticWrapper(TensorDictSequential):
    """A policy and a value network side by side, with nothing shared.

    A call runs the policy, then the value network.

    Args:
        policy_operator: the policy (``observation -> action``).
        value_operator: the value network (``observation -> state_value``).

    Raises:
        TypeError: when a part is not a TensorDict module.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tdrl.modules import Actor, ValueOperator
        >>> agent = ActorCriticWrapper(Actor(nn.Linear(4, 2)), ValueOperator(nn.Linear(4, 1)))
        >>> td = agent(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
        >>> td["action"].shape, td["state_value"].shape
        (torch.Size([3, 2]), torch.Size([3, 1]))
        >>> agent.get_policy_operator() is agent.get_policy_head()
        True
    """

    def __init__(self, policy_operator: TensorDictModuleBase, value_operator: TensorDictModuleBase) -> None:
        _check_parts("ActorCriticWrapper", policy_operator=policy_operator, value_operator=value_operator)
        super().__init__(policy_operator, value_operator)

    def get_policy_operator(self) -> TensorDictModuleBase:
        """The policy (the module itself, not a copy)."""
        return cast(TensorDictModuleBase, self.module[0])  # __init__ checked it

    def get_value_operator(self) -> TensorDictModuleBase:
        """The value network (the module itself, not a copy)."""
        return cast(TensorDictModuleBase, self.module[1])  # __init__ checked it

    get_policy_head = get_policy_operator
    get_value_head = get_value_operator
