"""Helpers shared by the loss modules: estimator names, distances, target-network updaters.

Examples:
    >>> import torch
    >>> distance_loss(torch.zeros(2), torch.tensor([0.5, 3.0]), "smooth_l1")
    tensor([0.1250, 2.5000])
    >>> ValueEstimators("gae") is ValueEstimators.GAE
    True
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from tdrl._compat import foreach_copy_, foreach_lerp_

if TYPE_CHECKING:
    from tdrl.objectives.common import LossModule

__all__ = [
    "ValueEstimators",
    "default_value_kwargs",
    "distance_loss",
    "LOSS_CRITIC_TYPES",
    "TargetNetUpdater",
    "SoftUpdate",
    "HardUpdate",
]

LOSS_CRITIC_TYPES = ("l1", "l2", "smooth_l1")
"""The values ``loss_critic_type`` accepts (see :func:`distance_loss`)."""


class ValueEstimators(enum.Enum):
    """Names accepted by :meth:`LossModule.make_value_estimator` (strings work too)."""

    TD0 = "td0"
    TD1 = "td1"
    TDLambda = "td_lambda"
    GAE = "gae"

    @classmethod
    def _missing_(cls, value: object) -> ValueEstimators | None:
        if isinstance(value, str):
            norm = value.lower().replace("(", "_").replace(")", "").replace("-", "_")
            aliases = {"tdlambda": "td_lambda", "td_lambda_": "td_lambda", "td_0": "td0", "td_1": "td1"}
            norm = aliases.get(norm, norm)
            for member in cls:
                if member.value == norm:
                    return member
        return None


def default_value_kwargs(value_type: ValueEstimators) -> dict[str, float]:
    """Default hyperparameters of each estimator (``gamma=0.99``, ``lmbda=0.95``).

    Examples:
        >>> default_value_kwargs(ValueEstimators.GAE)
        {'gamma': 0.99, 'lmbda': 0.95}
    """
    value_type = ValueEstimators(value_type)
    if value_type in (ValueEstimators.GAE, ValueEstimators.TDLambda):
        return {"gamma": 0.99, "lmbda": 0.95}
    return {"gamma": 0.99}


def distance_loss(v1: Tensor, v2: Tensor, loss_function: str) -> Tensor:
    """Elementwise ``l1``, ``l2`` (squared error) or ``smooth_l1`` (Huber, beta=1) loss.

    Raises:
        ValueError: if the shapes differ or ``loss_function`` is unknown.
    """
    if v1.shape != v2.shape:
        raise ValueError(
            f"distance_loss: shapes {tuple(v1.shape)} and {tuple(v2.shape)} differ; the value "
            "network's output must have the shape of the value target (e.g. [*B, 1])."
        )
    if loss_function == "l2":
        return F.mse_loss(v1, v2, reduction="none")
    if loss_function == "l1":
        return F.l1_loss(v1, v2, reduction="none")
    if loss_function == "smooth_l1":
        return F.smooth_l1_loss(v1, v2, reduction="none")
    raise ValueError(f"loss_critic_type={loss_function!r} is unknown; use one of {LOSS_CRITIC_TYPES}.")


class TargetNetUpdater:
    """Base of the target-network updaters: pairs each ``target_<name>_params`` of a
    loss module with the live parameters of ``<name>``.

    Args:
        loss_module: a :class:`~tdrl.objectives.LossModule` that registered target
            parameters (``_register_network(..., create_target_params=True)``).
    """

    def __init__(self, loss_module: LossModule) -> None:
        names = list(getattr(loss_module, "_target_names", []))
        if not names:
            raise ValueError(
                f"{type(self).__name__}: {type(loss_module).__name__} has no target parameters; "
                "build the loss with a delayed network (e.g. delay_value=True)."
            )
        self.loss_module = loss_module
        self._names = names
        self._sources: list[Tensor] = []
        self._targets: list[Tensor] = []
        for name in names:
            source = getattr(loss_module, f"{name}_params")
            target = getattr(loss_module, f"target_{name}_params")
            for key, t in target.items(True, True):
                self._sources.append(source.get(key))
                self._targets.append(t)
        self.initialized = False

    def init_(self) -> None:
        """Copies the live parameters into the targets."""
        with torch.no_grad():
            foreach_copy_(self._targets, [s.detach() for s in self._sources])
        self.initialized = True

    def step(self) -> None:
        raise NotImplementedError


class SoftUpdate(TargetNetUpdater):
    """Polyak averaging: ``target = eps * target + (1 - eps) * live`` after each step.

    Args:
        loss_module: the loss holding the target parameters.
        eps: the target's weight in ``[0, 1]`` (TorchRL's name), or
        tau: the live weight ``1 - eps`` (the name in most papers). Give one.

    Examples:
        >>> import torch
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.objectives import LossModule
        >>> class Toy(LossModule):
        ...     def __init__(self, net):
        ...         super().__init__()
        ...         self._register_network(net, "value_network", create_target_params=True)
        >>> loss = Toy(TensorDictModule(torch.nn.Linear(2, 1), ["x"], ["y"]))
        >>> updater = SoftUpdate(loss, tau=0.5)
        >>> with torch.no_grad():
        ...     _ = loss.value_network.module.bias.fill_(1.0)
        >>> loss.target_value_network_params["module", "bias"].zero_()
        tensor([0.])
        >>> updater.step()
        >>> loss.target_value_network_params["module", "bias"]
        tensor([0.5000])
    """

    def __init__(self, loss_module: LossModule, *, eps: float | None = None, tau: float | None = None) -> None:
        if (eps is None) == (tau is None):
            raise ValueError("SoftUpdate: give exactly one of eps (target weight) or tau = 1 - eps.")
        eps = 1.0 - tau if tau is not None else cast(float, eps)  # exactly one of the two is given
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"SoftUpdate: eps must be in [0, 1], got {eps}.")
        super().__init__(loss_module)
        self.eps = float(eps)

    def step(self) -> None:
        """One Polyak step: ``target.lerp_(live, 1 - eps)``."""
        with torch.no_grad():
            foreach_lerp_(self._targets, [s.detach() for s in self._sources], 1.0 - self.eps)


class HardUpdate(TargetNetUpdater):
    """Copies the live parameters into the targets every ``value_network_update_interval`` steps.

    Args:
        loss_module: the loss holding the target parameters.
        value_network_update_interval: steps between copies.

    Examples:
        >>> import torch
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.objectives import LossModule
        >>> class Toy(LossModule):
        ...     def __init__(self, net):
        ...         super().__init__()
        ...         self._register_network(net, "value_network", create_target_params=True)
        >>> loss = Toy(TensorDictModule(torch.nn.Linear(2, 1), ["x"], ["y"]))
        >>> updater = HardUpdate(loss, value_network_update_interval=2)
        >>> with torch.no_grad():
        ...     _ = loss.value_network.module.bias.fill_(3.0)
        >>> updater.step(); loss.target_value_network_params["module", "bias"].item() == 3.0
        False
        >>> updater.step(); loss.target_value_network_params["module", "bias"].item() == 3.0
        True
    """

    def __init__(self, loss_module: LossModule, *, value_network_update_interval: int = 1000) -> None:
        if value_network_update_interval < 1:
            raise ValueError(
                f"HardUpdate: value_network_update_interval must be >= 1, got {value_network_update_interval}."
            )
        super().__init__(loss_module)
        self.value_network_update_interval = int(value_network_update_interval)
        self.counter = 0

    def step(self) -> None:
        """Counts one optimizer step; copies when the interval is reached."""
        self.counter += 1
        if self.counter >= self.value_network_update_interval:
            self.counter = 0
            self.init_()
