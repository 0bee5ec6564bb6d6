"""Policies, value functions, distributions and exploration: the pieces an agent is built from.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tensordict.nn import TensorDictModule
    >>> from tdrl.modules import NormalParamExtractor, ProbabilisticActor, TanhNormal, ValueOperator
    >>> net = nn.Sequential(nn.LazyLinear(2), NormalParamExtractor())
    >>> actor = ProbabilisticActor(TensorDictModule(net, ["observation"], ["loc", "scale"]),
    ...                            in_keys=["loc", "scale"], distribution_class=TanhNormal)
    >>> actor(TensorDict(observation=torch.zeros(3)))["action"].shape
    torch.Size([1])
"""

from __future__ import annotations

from tdrl.modules.actor_critic import ActorCriticOperator, ActorCriticWrapper, ActorValueOperator
from tdrl.modules.actors import (
    LOG_PROB_ALIAS,
    LOG_PROB_KEY,
    Actor,
    ProbabilisticActor,
    TanhModule,
    ValueOperator,
    get_log_prob,
)
from tdrl.modules.distributions import (
    Categorical,
    Delta,
    IndependentNormal,
    MaskedCategorical,
    MaskedOneHotCategorical,
    NormalParamExtractor,
    OneHotCategorical,
    ReparamGradientStrategy,
    TanhDelta,
    TanhNormal,
    TruncatedNormal,
)
from tdrl.modules.exploration import (
    AdditiveGaussianModule,
    EGreedyModule,
    OrnsteinUhlenbeckProcessModule,
    RandomPolicy,
    set_exploration_modules_spec_from_env,
)
from tdrl.modules.models import (
    MLP,
    ConvNet,
    DdpgCnnActor,
    DdpgCnnQNet,
    DdpgMlpActor,
    DdpgMlpQNet,
    DuelingCnnDQNet,
    DuelingMlpDQNet,
    MultiAgentConvNet,
    MultiAgentMLP,
    Squeeze2dLayer,
    SqueezeLayer,
)
from tdrl.modules.models.exploration import gSDEModule
from tdrl.modules.qvalue import DistributionalQValueActor, DistributionalQValueModule, QValueActor, QValueModule
from tdrl.modules.rnn import (
    GRUModule,
    LSTMModule,
    check_recurrent_primers,
    next_sequence_inputs,
    recurrent_mode,
    set_recurrent_mode,
)
from tdrl.modules.safe import SafeModule
from tdrl.modules.utils import get_primers_from_module

__all__ = [
    "SafeModule",
    # actors and values
    "ProbabilisticActor",
    "Actor",
    "TanhModule",
    "ValueOperator",
    "ActorValueOperator",
    "ActorCriticOperator",
    "ActorCriticWrapper",
    "get_log_prob",
    "LOG_PROB_KEY",
    "LOG_PROB_ALIAS",
    "QValueActor",
    "QValueModule",
    "DistributionalQValueActor",
    "DistributionalQValueModule",
    # networks
    "MLP",
    "ConvNet",
    "DuelingCnnDQNet",
    "DuelingMlpDQNet",
    "DdpgMlpActor",
    "DdpgMlpQNet",
    "DdpgCnnActor",
    "DdpgCnnQNet",
    "MultiAgentMLP",
    "MultiAgentConvNet",
    "SqueezeLayer",
    "Squeeze2dLayer",
    # exploration
    "EGreedyModule",
    "AdditiveGaussianModule",
    "OrnsteinUhlenbeckProcessModule",
    "RandomPolicy",
    "gSDEModule",
    "set_exploration_modules_spec_from_env",
    # distributions
    "TanhNormal",
    "TanhDelta",
    "IndependentNormal",
    "TruncatedNormal",
    "Delta",
    "Categorical",
    "OneHotCategorical",
    "MaskedCategorical",
    "MaskedOneHotCategorical",
    "ReparamGradientStrategy",
    "NormalParamExtractor",
    # recurrent
    "LSTMModule",
    "GRUModule",
    "set_recurrent_mode",
    "recurrent_mode",
    "get_primers_from_module",
    "check_recurrent_primers",
    "next_sequence_inputs",
]
