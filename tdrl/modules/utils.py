"""Helpers over whole modules: :func:`get_primers_from_module` (TorchRL path ``torchrl.modules.utils``)."""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

__all__ = ["get_primers_from_module"]


def get_primers_from_module(module: nn.Module, warn: bool = True, strict: bool = True) -> Any:
    """The primer transform(s) that every submodule of ``module`` needs (e.g. its LSTMModules).

    Args:
        module: the policy (or any module) to search.
        warn: warn when no submodule needs a primer.
        strict: when False, a submodule whose ``make_tensordict_primer()`` raises is
            skipped with a warning instead of raising.

    Returns:
        ``None`` when no submodule needs one, the :class:`~tdrl.envs.TensorDictPrimer`
        when one does, else a :class:`~tdrl.envs.Compose` of them.

    Examples:
        >>> from tensordict.nn import TensorDictModule, TensorDictSequential
        >>> from torch import nn
        >>> from tdrl.modules import GRUModule
        >>> gru = GRUModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
        >>> policy = TensorDictSequential(gru, TensorDictModule(nn.Linear(4, 1), ["features"], ["action"]))
        >>> get_primers_from_module(policy)
        TensorDictPrimer(primers={'recurrent_state': (1, 4)}, random=False)
    """
    primers = []
    failures = []
    for sub in module.modules():
        make = getattr(sub, "make_tensordict_primer", None)
        if make is None or not callable(make):
            continue
        try:
            primers.append(make())
        except Exception as err:
            if strict:
                raise
            failures.append(f"{type(sub).__name__}: {err}")
    if failures:
        warnings.warn(
            "get_primers_from_module: no primer could be built for " + "; ".join(failures), UserWarning, stacklevel=2
        )
    if not primers:
        if warn:
            warnings.warn(
                "get_primers_from_module: no submodule of the module needs a primer.", UserWarning, stacklevel=2
            )
        return None
    if len(primers) == 1:
        return primers[0]
    from tdrl.envs.transforms import Compose  # (tdrl.envs imports tdrl.modules)

    return Compose(*primers)
