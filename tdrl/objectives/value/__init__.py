"""Value estimators (GAE, TD(0), TD(1), TD(lambda), V-trace) and their pure tensor kernels.

``from tdrl.objectives.value import GAE`` is the seed tutorial's import;
:mod:`tdrl.objectives.value.functional` holds the kernels with TorchRL's signatures.
"""

from __future__ import annotations

from tdrl.objectives.value import functional
from tdrl.objectives.value.advantages import (
    GAE,
    TD0Estimate,
    TD0Estimator,
    TD1Estimate,
    TD1Estimator,
    TDLambdaEstimate,
    TDLambdaEstimator,
    ValueEstimatorBase,
)
from tdrl.objectives.value.functional import (
    generalized_advantage_estimate,
    reward2go,
    td0_return_estimate,
    td_lambda_return_estimate,
    vtrace_advantage_estimate,
)
from tdrl.objectives.value.multiagent import MultiAgentGAE
from tdrl.objectives.value.vtrace import VTrace

__all__ = [
    "ValueEstimatorBase",
    "GAE",
    "TD0Estimator",
    "TD1Estimator",
    "TDLambdaEstimator",
    "TD0Estimate",
    "TD1Estimate",
    "TDLambdaEstimate",
    "VTrace",
    "MultiAgentGAE",
    "functional",
    "generalized_advantage_estimate",
    "td0_return_estimate",
    "td_lambda_return_estimate",
    "reward2go",
    "vtrace_advantage_estimate",
]
