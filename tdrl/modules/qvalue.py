"""Greedy policies over action values: QValueModule and QValueActor (DQN and friends).

A Q-network writes ``"action_value"`` (one value per discrete action, last dim);
:class:`QValueModule` turns it into the greedy ``"action"`` (an index or a one-hot vector,
as the action spec says) and its ``"chosen_action_value"``. :class:`QValueActor` chains
the network and the module. Their distributional twins (:class:`DistributionalQValueModule`,
:class:`DistributionalQValueActor`, for C51) read log-probabilities over a support of
returns, ``[..., atoms, n_actions]``, and act greedily on the expected return.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from tensordict import TensorDict
    >>> from tdrl.specs import OneHot
    >>> actor = QValueActor(nn.Linear(3, 4), in_keys=["observation"], spec=OneHot(4))
    >>> td = actor(TensorDict(observation=torch.randn(2, 3), batch_size=[2]))
    >>> td["action"].shape, td["chosen_action_value"].shape
    (torch.Size([2, 4]), torch.Size([2, 1]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn

from tdrl._compat import global_module_hooks, has_forward_hooks, module_call_is_forward, td_read, td_write
from tdrl.modules._lean import LeanStep, call_direct, lean_steps, missing_key_error, run_steps, skip_existing
from tdrl.specs import Binary, Categorical, Composite, MultiOneHot, NestedKey, OneHot, TensorSpec
from tdrl.specs.base import one_hot

__all__ = ["QValueModule", "QValueActor", "DistributionalQValueModule", "DistributionalQValueActor"]

_SPACES = {
    "one_hot": "one_hot",
    "one-hot": "one_hot",
    "onehot": "one_hot",
    "categorical": "categorical",
    "mult_one_hot": "mult_one_hot",
    "mult-one-hot": "mult_one_hot",
    "multi_one_hot": "mult_one_hot",
}


def _action_space(action_space: str | None, spec: TensorSpec | None) -> str:
    """The action space name, from the string or inferred from the spec's type."""
    from_spec = None
    if isinstance(spec, OneHot):
        from_spec = "one_hot"
    elif isinstance(spec, Categorical):
        from_spec = "categorical"
    elif isinstance(spec, MultiOneHot):
        from_spec = "mult_one_hot"
    elif isinstance(spec, Binary):
        raise ValueError("QValueModule does not support a Binary action spec; use a OneHot or Categorical action.")
    elif spec is not None:
        raise ValueError(
            f"QValueModule needs a discrete action spec (OneHot, Categorical or MultiOneHot), got "
            f"{type(spec).__name__}."
        )
    if action_space is None:
        if from_spec is None:
            raise ValueError(
                "QValueModule needs an action space: pass spec=env.action_spec, or "
                "action_space='one_hot' | 'categorical' | 'mult_one_hot'."
            )
        return from_spec
    if not isinstance(action_space, str) or action_space.lower() not in _SPACES:
        raise ValueError(f"action_space must be one of {sorted(set(_SPACES))}, got {action_space!r}.")
    space = _SPACES[action_space.lower()]
    if from_spec is not None and from_spec != space:
        raise ValueError(f"action_space={action_space!r} does not match the spec {type(spec).__name__}.")
    return space


def _leaf(spec: TensorSpec | Composite | None, key: NestedKey) -> TensorSpec | None:
    if isinstance(spec, Composite):
        return cast("TensorSpec | None", spec.get(key, None))  # an action entry is a leaf
    return spec


_ROW_MAX = 512  # identities up to this size are cached
_identities: dict = {}


def _identity(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The cached ``n x n`` identity of ``dtype`` on ``device`` (its rows are one-hot actions; never written)."""
    key = (n, dtype, device)
    eye = _identities.get(key)
    if eye is None:
        eye = _identities[key] = torch.eye(n, dtype=dtype, device=device)
    return eye


class QValueModule(TensorDictModuleBase):
    """Reads action values and writes the greedy action and its value.

    Args:
        action_space: ``"one_hot"``, ``"categorical"`` or ``"mult_one_hot"``; inferred from
            ``spec`` when omitted.
        action_value_key: where the action values are (default ``"action_value"``).
        action_mask_key: a bool entry ``[..., n]``; masked-out actions are never chosen.
        out_keys: ``[action, action_value, chosen_action_value]`` keys.
        var_nums: the size of each one-hot group for ``"mult_one_hot"``.
        spec: the action spec (leaf or ``Composite``): sets the dtype and shape of the action.
        safe: project the action onto ``spec``.

    Raises:
        ValueError: on an unknown action space or one the spec contradicts.
        KeyError: on a call, when the action values (or the mask) are missing.

    Examples:
        >>> from tensordict import TensorDict
        >>> module = QValueModule(action_space="categorical")
        >>> td = module(TensorDict(action_value=torch.tensor([[1.0, 3.0, 2.0]]), batch_size=[1]))
        >>> td["action"], td["chosen_action_value"]
        (tensor([1]), tensor([[3.]]))
    """

    def __init__(
        self,
        action_space: str | None = None,
        action_value_key: NestedKey | None = None,
        action_mask_key: NestedKey | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        var_nums: int | Sequence[int] | None = None,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
    ) -> None:
        super().__init__()
        action_value_key = "action_value" if action_value_key is None else action_value_key
        out_keys = ["action", action_value_key, "chosen_action_value"] if out_keys is None else list(out_keys)
        if len(out_keys) != 3 or out_keys[1] != action_value_key:
            raise ValueError(
                f"out_keys must be [action_key, {action_value_key!r}, chosen_action_value_key], got {out_keys}."
            )
        leaf = _leaf(spec, out_keys[0])
        self.action_space = _action_space(action_space, leaf)
        if self.action_space == "mult_one_hot":
            if var_nums is None and isinstance(leaf, MultiOneHot):
                var_nums = list(leaf.nvec) if hasattr(leaf, "nvec") else None
            if var_nums is None:
                raise ValueError("action_space='mult_one_hot' needs var_nums (the size of each one-hot group).")
        self.var_nums = [int(v) for v in var_nums] if isinstance(var_nums, (list, tuple)) else var_nums
        self.action_value_key = action_value_key
        self.action_mask_key = action_mask_key
        self.in_keys = [action_value_key] + ([action_mask_key] if action_mask_key is not None else [])
        self.out_keys = out_keys
        self._spec = spec if spec is None or isinstance(spec, Composite) else Composite({out_keys[0]: spec})
        self._action_spec = leaf
        if safe and leaf is None:
            raise ValueError("QValueModule(safe=True) needs the action spec: pass spec=env.action_spec.")
        self.safe = bool(safe)
        self._dtype = leaf.dtype if leaf is not None else torch.long
        self._keepdim = (
            self.action_space == "categorical" and leaf is not None and leaf.ndim > 0 and leaf.shape[-1] == 1
        )
        self._eye: torch.Tensor | None = None  # the last identity used for a one-env one-hot action
        self._rows: tuple[torch.Tensor, ...] | None = None  # its rows (views), when it is on the CPU

    @property
    def spec(self) -> Composite | None:
        return self._spec

    def _greedy(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.action_space == "mult_one_hot":
            actions: list[torch.Tensor] = []
            chosen: torch.Tensor | int = 0
            for group in values.split(self.var_nums, dim=-1):
                idx = group.argmax(-1, keepdim=True)
                actions.append(F.one_hot(idx.squeeze(-1), group.shape[-1]))
                chosen = chosen + group.gather(-1, idx)
            return torch.cat(actions, -1).to(self._dtype), cast(torch.Tensor, chosen)  # one group at least
        chosen, idx = values.max(-1, keepdim=True)  # one op: the first maximal index, as argmax gives
        if self.action_space == "one_hot":
            n = values.shape[-1]
            if values.ndim == 1 and n <= _ROW_MAX:  # one env (a collector's step): one row of a cached identity
                eye = self._eye
                if eye is None or eye.shape[0] != n or eye.device != values.device:
                    eye = self._eye = _identity(n, self._dtype, values.device)
                    self._rows = eye.unbind(0) if eye.device.type == "cpu" else None
                rows = self.__dict__.get("_rows")  # (absent from a module pickled before it existed)
                # on the CPU the index is a number at no cost: copy that row (a new tensor); graph captures keep the op
                if rows is not None and not torch.compiler.is_compiling():
                    return rows[int(idx)].clone(), chosen
                return eye.index_select(0, idx).view(n), chosen
            return one_hot(idx.squeeze(-1), n, self._dtype), chosen
        action = idx if self._keepdim else idx.squeeze(-1)
        return action.to(self._dtype), chosen

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        values = td_read(tensordict, self.action_value_key)
        if values is None:
            raise missing_key_error("QValueModule", self.action_value_key, tensordict)
        if self.action_mask_key is not None:
            mask = tensordict.get(self.action_mask_key, None)
            if mask is None:
                raise missing_key_error("QValueModule", self.action_mask_key, tensordict, "action mask")
            values = torch.where(mask, values, torch.finfo(values.dtype).min)
        action, chosen = self._greedy(values)
        if self.safe:
            action = cast(TensorSpec, self._action_spec).project(action)  # safe: __init__ required the spec
        key_action, key_values, key_chosen = self.out_keys
        td_write(tensordict, key_action, action)
        td_write(tensordict, key_values, values)
        td_write(tensordict, key_chosen, chosen)
        return tensordict


def _fused_step(steps: list[LeanStep] | None, head: QValueModule) -> LeanStep | None:
    """The network's lean step when the actor's forward is ``values = net(obs)`` then the plain greedy head.

    One step with one string in_key and the action values as its only output, no keyword
    inputs, and exactly a :class:`QValueModule` (not a subclass) with no action mask; else
    ``None`` (the lean steps, then the head's own forward).
    """
    if steps is None or len(steps) != 1 or type(head) is not QValueModule or head.action_mask_key is not None:
        return None
    step = steps[0]
    if step.kwarg_names is not None or len(step.in_keys) != 1 or type(step.in_keys[0]) is not str:
        return None
    if list(step.out_keys) != [head.action_value_key] or head.action_value_key == "_":
        return None
    return step


class QValueActor(TensorDictSequential):
    """A Q-network followed by a :class:`QValueModule`: the greedy DQN policy.

    Args:
        module: a network (wrapped as ``in_keys -> action_value``) or a TensorDict module
            that already writes ``action_value_key``.

    Keyword Args:
        in_keys: what a plain network reads (default ``["observation"]``).
        spec: the action spec; sets the action space when ``action_space`` is omitted.
        safe: project the action onto ``spec``.
        action_space: ``"one_hot"``, ``"categorical"`` or ``"mult_one_hot"``.
        action_value_key: default ``"action_value"``.
        action_key: default ``"action"``.
        chosen_action_value_key: default ``"chosen_action_value"``.
        action_mask_key: a bool entry masking actions out.

    Raises:
        KeyError: when ``module`` is a TensorDict module that does not write ``action_value_key``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import Categorical as CategoricalSpec
        >>> actor = QValueActor(nn.Linear(3, 2), spec=CategoricalSpec(2))
        >>> actor(TensorDict(observation=torch.randn(3)))["action"].shape
        torch.Size([])
    """

    def __init__(
        self,
        module: nn.Module | Callable | TensorDictModuleBase,
        *,
        in_keys: Sequence[NestedKey] | None = None,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
        action_space: str | None = None,
        action_value_key: NestedKey | None = None,
        action_key: NestedKey | None = None,
        chosen_action_value_key: NestedKey | None = None,
        action_mask_key: NestedKey | None = None,
    ) -> None:
        action_value_key = action_value_key or "action_value"
        action_key = action_key or "action"
        chosen_action_value_key = chosen_action_value_key or "chosen_action_value"
        if isinstance(module, TensorDictModuleBase):
            if action_value_key not in module.out_keys:
                raise KeyError(
                    f"QValueActor: the module writes {module.out_keys}, not the action values "
                    f"{action_value_key!r}. Set its out_keys or pass action_value_key=..."
                )
        else:
            # tensordict takes lists (a tuple is one nested key) and rejects other sequences itself
            keys = cast("list[NestedKey]", in_keys or ["observation"])
            module = TensorDictModule(module, in_keys=keys, out_keys=[action_value_key])
        head = QValueModule(
            action_space=action_space,
            action_value_key=action_value_key,
            action_mask_key=action_mask_key,
            out_keys=[action_key, action_value_key, chosen_action_value_key],
            spec=_leaf(spec, action_key) if isinstance(spec, Composite) else spec,
            safe=safe,
        )
        super().__init__(module, head)
        self.action_space = head.action_space
        self._spec = head.spec
        owners: list = []
        self._lean_steps = lean_steps(module, owners)
        self._lean_owners = owners
        self.__dict__["_head"] = head  # a plain reference: the head is registered as module[-1]
        fused = self.__dict__["_fused"] = _fused_step(self._lean_steps, head)
        # a plain nn.Module network: its forward is what its __call__ runs when it has no hooks
        self.__dict__["_net_direct"] = (
            fused is not None and isinstance(fused.net, nn.Module) and type(fused.net).__call__ is nn.Module.__call__
        )

    @property
    def spec(self) -> Composite | None:
        return self._spec

    @property
    def head(self) -> QValueModule:
        """The greedy module that ends the actor (its last step)."""
        return cast(QValueModule, self.__dict__["_head"])

    def action_values(self, tensordict: TensorDictBase) -> torch.Tensor:
        """Runs the network without the greedy head; returns (and writes) the action values.

        Losses that need the values only (the DQN prediction, the target network's values)
        skip the argmax and the action encoding. The actor's own forward hooks do not run;
        those of its steps do.

        Examples:
            >>> from tensordict import TensorDict
            >>> actor = QValueActor(nn.Linear(3, 2), action_space="categorical")
            >>> actor.action_values(TensorDict(observation=torch.zeros(4, 3), batch_size=[4])).shape
            torch.Size([4, 2])
        """
        if (
            self._lean_steps is None
            or skip_existing()
            or not run_steps(self._lean_steps, self._lean_owners, tensordict)
        ):
            for step in list(self.module)[:-1]:
                tensordict = step(tensordict)
        return tensordict.get(self.head.action_value_key)

    def _fused_forward(self, tensordict: TensorDictBase, checked: bool = False) -> bool:
        """The network and the greedy head as one step (see :func:`_fused_step`); ``False``: nothing ran.

        The same reads, calls and writes as the lean steps followed by the head's forward,
        without their per-call layers; a hook on the network's TensorDict module or on the
        head, a global module hook, ``skip_existing`` or a missing input take the general path.
        ``checked``: the caller (a ``LeanSequence`` call) has just checked ``skip_existing``,
        the global hooks and tracing; only this module's own hooks remain to check.
        """
        step = cast(LeanStep, self.__dict__["_fused"])
        head = self._head
        if not checked and (skip_existing() or global_module_hooks() or torch.jit.is_tracing()):
            return False
        if has_forward_hooks(step.owner) or not module_call_is_forward(head):
            return False
        obs = td_read(tensordict, step.in_keys[0])
        if obs is None:
            return False  # the general path names the missing key
        net = step.net
        # the hooks and tracing that call_direct asks about were checked above: only the network's own hooks remain
        if self.__dict__.get("_net_direct") and module_call_is_forward(cast(nn.Module, net)):
            values = cast(nn.Module, net).forward(obs)
        else:
            values = net(obs)
        if not isinstance(values, torch.Tensor):
            step.write(tensordict, values)  # the lean step's own handling of other outputs
            values = td_read(tensordict, head.action_value_key)
        action, chosen = head._greedy(values)
        if head.safe:
            action = cast(TensorSpec, head._action_spec).project(action)  # safe: __init__ required the spec
        key_action, key_values, key_chosen = head.out_keys
        td_write(tensordict, key_action, action)
        td_write(tensordict, key_values, values)
        td_write(tensordict, key_chosen, chosen)
        return True

    def forward(self, *args: Any, **kwargs: Any) -> TensorDictBase:
        if (
            self.__dict__.get("_fused") is not None
            and len(args) == 1
            and not kwargs
            and isinstance(args[0], TensorDictBase)
            and self._fused_forward(args[0])
        ):
            return args[0]
        if (
            self._lean_steps is not None
            and len(args) == 1
            and not kwargs
            and isinstance(args[0], TensorDictBase)
            and not skip_existing()
            and run_steps(self._lean_steps, self._lean_owners, args[0])
        ):
            return call_direct(self._head, args[0])
        return super().forward(*args, **kwargs)


class DistributionalQValueModule(QValueModule):
    """Reads per-action return distributions and writes the greedy action (C51).

    The action values are log-probabilities over ``support`` (shape ``[..., atoms,
    n_actions]``, normalized over the atoms); the chosen action maximizes the expected
    return ``sum_z p(z) * z``. Unlike :class:`QValueModule` it writes no
    ``"chosen_action_value"``.

    Args:
        action_space: ``"one_hot"`` or ``"categorical"``; inferred from ``spec`` when ``None``.
        support: the returns the atoms stand for, ``[atoms]`` (stored as a buffer).
        action_value_key: where the log-probabilities are (default ``"action_value"``).
        action_mask_key: a bool entry ``[..., n_actions]``; masked-out actions are never chosen.
        out_keys: ``[action, action_value]`` keys.
        var_nums: accepted for TorchRL compatibility (``"mult_one_hot"`` is not supported).
        spec: the action spec.
        safe: project the action onto ``spec``.

    Raises:
        ValueError: on an unsupported action space or malformed ``out_keys``.

    The inputs are not checked to be log-probabilities on each call (TorchRL does, at the
    cost of a host sync per step); :class:`DistributionalQValueActor` applies the
    log-softmax itself.

    Examples:
        >>> from tensordict import TensorDict
        >>> support = torch.tensor([-1.0, 0.0, 1.0])
        >>> module = DistributionalQValueModule("categorical", support=support)
        >>> probs = torch.tensor([[[0.8, 0.1], [0.1, 0.1], [0.1, 0.8]]])  # [1, atoms, actions]
        >>> module(TensorDict(action_value=probs.log(), batch_size=[1]))["action"]
        tensor([1])
    """

    support: torch.Tensor

    def __init__(
        self,
        action_space: str | None,
        support: torch.Tensor,
        action_value_key: NestedKey | None = None,
        action_mask_key: NestedKey | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        var_nums: int | None = None,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
    ) -> None:
        action_value_key = "action_value" if action_value_key is None else action_value_key
        out_keys = ["action", action_value_key] if out_keys is None else list(out_keys)
        if len(out_keys) != 2 or out_keys[1] != action_value_key:
            raise ValueError(f"out_keys must be [action_key, {action_value_key!r}], got {out_keys}.")
        if not isinstance(support, torch.Tensor) or support.ndim != 1 or support.numel() < 2:
            raise ValueError(
                "DistributionalQValueModule: support must be a 1-D tensor of at least 2 returns "
                f"(e.g. torch.linspace(-10, 10, 51)); got {support!r}."
            )
        super().__init__(
            action_space=action_space,
            action_value_key=action_value_key,
            action_mask_key=action_mask_key,
            out_keys=[out_keys[0], action_value_key, "chosen_action_value"],
            spec=spec,
            safe=safe,
        )
        if self.action_space == "mult_one_hot":
            raise ValueError("DistributionalQValueModule supports one_hot and categorical action spaces only.")
        self.out_keys = out_keys
        self.register_buffer("support", support)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        log_probs = tensordict.get(self.action_value_key, None)
        if log_probs is None:
            raise missing_key_error("DistributionalQValueModule", self.action_value_key, tensordict)
        support = self.support if self.support.device == log_probs.device else self.support.to(log_probs.device)
        if log_probs.ndim < 2 or log_probs.shape[-2] != support.shape[0]:
            raise ValueError(
                f"DistributionalQValueModule: the action values {self.action_value_key!r} must be "
                f"[..., {support.shape[0]}, n_actions] (one log-probability per atom of the support and "
                f"action); got shape {tuple(log_probs.shape)}. End the network with "
                f"out_features=({support.shape[0]}, n_actions)."
            )
        expected = (log_probs.exp() * support.unsqueeze(-1)).sum(-2)
        if self.action_mask_key is not None:
            mask = tensordict.get(self.action_mask_key, None)
            if mask is None:
                raise missing_key_error("DistributionalQValueModule", self.action_mask_key, tensordict, "action mask")
            expected = torch.where(mask, expected, torch.finfo(expected.dtype).min)
        action, _ = self._greedy(expected)
        if self.safe:
            action = cast(TensorSpec, self._action_spec).project(action)  # safe: __init__ required the spec
        tensordict.set(self.out_keys[0], action)
        tensordict.set(self.out_keys[1], log_probs)
        return tensordict


class DistributionalQValueActor(QValueActor):
    """A network of per-action return distributions followed by a greedy head (C51's policy).

    The network writes logits ``[..., atoms, n_actions]``; with ``make_log_softmax`` (the
    default) they are normalized over the atoms into log-probabilities, then a
    :class:`DistributionalQValueModule` picks the action with the highest expected return.
    ``support`` is kept as a buffer of the actor (``actor.support``), where
    :class:`~tdrl.objectives.DistributionalDQNLoss` reads it.

    Args:
        module: a network (wrapped as ``in_keys -> action_value``) or a TensorDict module
            writing ``action_value_key``.
        support: the returns the atoms stand for, ``[atoms]``.
        in_keys: what a plain network reads (default ``["observation"]``).
        spec: the action spec (sets the action space when ``action_space`` is omitted).
        safe: project the action onto ``spec``.
        var_nums: accepted for TorchRL compatibility.
        action_space: ``"one_hot"`` or ``"categorical"``.
        action_value_key: default ``"action_value"``.
        action_mask_key: a bool entry masking actions out.
        make_log_softmax: apply ``log_softmax`` over the atoms (dim ``-2``) after the network.

    Raises:
        KeyError: when ``module`` is a TensorDict module that does not write ``action_value_key``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from tdrl.modules import MLP
        >>> from tdrl.specs import OneHot
        >>> actor = DistributionalQValueActor(
        ...     MLP(in_features=4, out_features=(5, 2), num_cells=[8]), support=torch.linspace(-1, 1, 5),
        ...     spec=OneHot(2))
        >>> td = actor(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
        >>> td["action"].shape, td["action_value"].shape
        (torch.Size([3, 2]), torch.Size([3, 5, 2]))
        >>> bool(torch.allclose(td["action_value"].exp().sum(-2), torch.ones(3, 2)))
        True
    """

    support: torch.Tensor

    def __init__(
        self,
        module: nn.Module | Callable | TensorDictModuleBase,
        support: torch.Tensor,
        in_keys: Sequence[NestedKey] | None = None,
        spec: TensorSpec | Composite | None = None,
        safe: bool = False,
        var_nums: int | None = None,
        action_space: str | None = None,
        action_value_key: NestedKey = "action_value",
        action_mask_key: NestedKey | None = None,
        make_log_softmax: bool = True,
    ) -> None:
        if isinstance(module, TensorDictModuleBase):
            if action_value_key not in module.out_keys:
                raise KeyError(
                    f"DistributionalQValueActor: the module writes {module.out_keys}, not the action values "
                    f"{action_value_key!r}. Set its out_keys or pass action_value_key=..."
                )
        else:
            keys = cast("list[NestedKey]", list(in_keys) if in_keys else ["observation"])
            module = TensorDictModule(module, in_keys=keys, out_keys=[action_value_key])
        head = DistributionalQValueModule(
            action_space=action_space,
            support=support,
            action_value_key=action_value_key,
            action_mask_key=action_mask_key,
            out_keys=["action", action_value_key],
            var_nums=var_nums,
            spec=_leaf(spec, "action") if isinstance(spec, Composite) else spec,
            safe=safe,
        )
        steps: list[TensorDictModuleBase] = [module]
        if make_log_softmax:
            steps.append(
                TensorDictModule(nn.LogSoftmax(dim=-2), in_keys=[action_value_key], out_keys=[action_value_key])
            )
        TensorDictSequential.__init__(self, *steps, head)
        self.make_log_softmax = bool(make_log_softmax)
        self.action_space = head.action_space
        self._spec = head.spec
        self.register_buffer("support", support)
        owners: list = []
        lean: list | None = []
        for step in steps:
            found = lean_steps(step, owners)
            lean = None if found is None or lean is None else lean + found
        self._lean_steps = lean
        self._lean_owners = owners
        self.__dict__["_head"] = head
