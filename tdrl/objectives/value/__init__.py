"""Value estimators (GAE, TD(0), TD(1), TD(lambda)) and their pure tensor kernels.

``from tdrl.objectives.value import GAE`` is the seed tutorial's import;
:mod:`tdrl.objectives.value.functional` holds the kernels with TorchRL's signatures.
"""

from __future__ import annotations

from tdrl.objectives.value import functional
from tdrl.objectives.value.advantages import (
    GAE,
    TD0Estimator,
    TD1Estimator,
    TDLambdaEstimator,
    ValueEstimatorBase,
)
from tdrl.objectives.value.functional import (
    generalized_advantage_estimate,
    reward2go,
    td0_return_estimate,
    td_lambda_return_estimate,
)

__all__ = [
    "ValueEstimatorBase",
    "GAE",
    "TD0Estimator",
    "TD1Estimator",
    "TDLambdaEstimator",
    "functional",
    "generalized_advantage_estimate",
    "td0_return_estimate",
    "td_lambda_return_estimate",
    "reward2go",
]
