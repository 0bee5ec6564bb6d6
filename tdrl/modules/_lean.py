"""The per-step fast path shared by tdrl's TensorDict modules.

``tensordict.nn.TensorDictModule.forward`` costs about as much as a 3x256 MLP on one
observation on a small CPU (its dispatch layers, and ``TensorDict.from_any`` on every
output, which probes the import system for pandas each time). A policy is called once
per env step, so tdrl's modules run a lean equivalent when it is provably the same
computation: read the in_keys, call the wrapped ``nn.Module``, write the out_keys.

:func:`lean_steps` decides, once at construction, whether a (possibly nested)
TensorDictModule can take that path; anything it does not recognise (``method=``,
``inplace=False``, ``get_kwargs``, hooks, custom subclasses, ``skip_existing``) keeps
tensordict's own ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.utils import skip_existing

from tdrl._compat import (
    global_module_hooks,
    has_forward_hooks,
    module_call_is_forward,
    td_read,
    td_write,
    tdmodule_is_plain_call,
    tdmodule_kwarg_names,
    tdsequential_is_plain_call,
)
from tdrl.modules._plain import forward_sequential

__all__ = [
    "LeanStep",
    "lean_steps",
    "own_lean_step",
    "run_steps",
    "missing_key_error",
    "hooks_free",
    "skip_existing",
    "LeanSequence",
    "LeanModule",
    "lean_policy",
    "call_direct",
]


_MODULE_CALL = torch.nn.Module.__call__


def call_direct(module: Any, *args: Any) -> Any:
    """``module(*args)``; a hook-free ``nn.Module`` runs its ``forward`` without ``Module.__call__``.

    ``Module.__call__`` then calls ``forward`` and nothing else; on the per-step paths its
    bookkeeping costs about as much as a small op. A plain ``nn.Sequential`` runs its layers
    the same way (:mod:`tdrl.modules._plain`). A module with hooks (its own or global), a
    compiled module, or a call under ``torch.jit`` tracing goes through ``__call__``.
    """
    if (
        isinstance(module, torch.nn.Module)
        and type(module).__call__ is _MODULE_CALL
        and module_call_is_forward(module)
        and not global_module_hooks()
        and not torch.jit.is_tracing()
    ):
        if type(module) is torch.nn.Sequential and len(args) == 1:
            return forward_sequential(module, args[0])  # its layers without Module.__call__ either
        return module.forward(*args)
    return module(*args)


def _keys_repr(tensordict: TensorDictBase) -> list[str]:
    return sorted(str(k) for k in tensordict.keys(True, True))


def missing_key_error(owner: str, key: Any, tensordict: TensorDictBase, what: str = "in_key") -> KeyError:
    """The KeyError for an input entry that the TensorDict does not hold."""
    return KeyError(
        f"{owner} reads the {what} {key!r}, which is not in the TensorDict; its keys are "
        f"{_keys_repr(tensordict)}. Pass in_keys that the env writes (see env.observation_spec) "
        f"or rename the entry."
    )


def hooks_free(module: torch.nn.Module) -> bool:
    """No forward (pre-)hook is registered on ``module``."""
    return not has_forward_hooks(module)


class LeanStep:
    """One TensorDictModule reduced to ``out_keys <- net(*in_keys)``."""

    __slots__ = ("in_keys", "kwarg_names", "name", "net", "out_keys", "owner")

    def __init__(
        self,
        owner: TensorDictModule,
        net: Callable,
        in_keys: Sequence,
        kwarg_names: Sequence[str] | None,
        out_keys: Sequence,
    ) -> None:
        self.owner = owner
        self.net = net
        self.in_keys = tuple(in_keys)
        self.kwarg_names = tuple(kwarg_names) if kwarg_names is not None else None
        self.out_keys = tuple(out_keys)
        # the class's name: mypy reads it as TensorDictModuleBase's instance-level __name__ property
        self.name = cast(str, type(owner).__name__)

    def __call__(self, tensordict: TensorDictBase) -> None:
        args = [td_read(tensordict, key) for key in self.in_keys]
        try:
            if self.kwarg_names is None:
                out = call_direct(self.net, *args)
            else:
                out = self.net(**dict(zip(self.kwarg_names, args)))
        except Exception:
            for key, arg in zip(self.in_keys, args):
                if arg is None:
                    raise missing_key_error(self.name, key, tensordict) from None
            raise
        self.write(tensordict, out)

    def write(self, tensordict: TensorDictBase, out: Any) -> None:
        """Write the net's output ``out`` (a tensor, a sequence or a mapping) to the out_keys."""
        out_keys = self.out_keys
        if isinstance(out, torch.Tensor):
            if len(out_keys) != 1:
                raise RuntimeError(f"{self.name} returned 1 tensor but has {len(out_keys)} out_keys {list(out_keys)}.")
            if out_keys[0] != "_":
                td_write(tensordict, out_keys[0], out)
            return
        if isinstance(out, (dict, TensorDictBase)):
            out = tuple(out[key] for key in out_keys)
        elif not isinstance(out, (tuple, list)):
            out = (out,)
        if len(out) != len(out_keys):
            raise RuntimeError(
                f"{self.name} returned {len(out)} values but has {len(out_keys)} out_keys {list(out_keys)}."
            )
        for key, value in zip(out_keys, out):
            if key != "_":
                td_write(tensordict, key, value)


def _plain_module(module: TensorDictModule, own_forward: bool = False) -> bool:
    """Whether ``module``'s forward is exactly ``out_keys <- module.module(*in_keys)``.

    ``own_forward``: the check is for the module's own lean forward, which applies its
    ``safe`` projection itself (so ``safe`` does not disqualify it).
    """
    from tdrl.modules.actors import Actor, ValueOperator

    if type(module) not in (TensorDictModule, Actor, ValueOperator):
        return False
    if not tdmodule_is_plain_call(module):  # extra keyword inputs, or a layout this tensordict keeps elsewhere
        return False
    if getattr(module, "method", None) is not None or getattr(module, "method_kwargs", None):
        return False
    if getattr(module, "inplace", True) is not True:
        return False
    if list(getattr(module, "out_keys_source", module.out_keys)) != list(module.out_keys):
        return False
    if getattr(module, "safe", False) and not own_forward:
        return False
    return callable(module.module)


def own_lean_step(module: TensorDictModule) -> LeanStep | None:
    """The lean step of a tdrl TensorDictModule subclass's own forward, or ``None``."""
    if _plain_module(module, own_forward=True):
        return LeanStep(module, module.module, module.in_keys, tdmodule_kwarg_names(module), module.out_keys)
    return None


def lean_steps(module: Any, owners: list | None = None) -> list[LeanStep] | None:
    """The lean steps equivalent to ``module``'s forward, or ``None`` if there are none.

    ``owners``, if given, receives every module whose hooks must stay empty for the
    steps to be equivalent (checked on each call by :func:`run_steps`).
    """
    if isinstance(module, TensorDictModule) and _plain_module(module):
        if owners is not None:
            owners.append(module)
        return [LeanStep(module, module.module, module.in_keys, tdmodule_kwarg_names(module), module.out_keys)]
    if type(module) is TensorDictSequential:
        if module.partial_tolerant or not tdsequential_is_plain_call(module):
            return None
        if getattr(module, "inplace", None) not in (None, True):
            return None
        if owners is not None:
            owners.append(module)
        steps: list[LeanStep] = []
        subs = module.module.values() if isinstance(module.module, torch.nn.ModuleDict) else module.module
        for sub in subs:
            sub_steps = lean_steps(sub, owners)
            if sub_steps is None:
                return None
            steps.extend(sub_steps)
        return steps
    return None


def run_steps(steps: Sequence[LeanStep], owners: Sequence[torch.nn.Module], tensordict: TensorDictBase) -> bool:
    """Run the lean steps in place; ``False`` (nothing run) if a hook asks for the full path."""
    for owner in owners:
        if has_forward_hooks(owner):
            return False
    for step in steps:
        step(tensordict)
    return True


class LeanSequence:
    """A plain ``TensorDictSequential`` run module by module, without tensordict's per-call dispatch.

    A policy built by the user as ``TensorDictSequential(actor, exploration)`` is called once
    per env step; tensordict's ``forward`` costs about as much as a small MLP there. This
    runs the same modules in the same order on the same TensorDict: plain TensorDictModules
    as :class:`LeanStep` (their hooks checked on each call), every other module through its
    own ``__call__`` (hooks and all). Exceptions get tensordict's note naming the module.
    Under ``skip_existing``, or once a hook is registered on the sequence or on a module
    reduced to a lean step, each call takes the sequence's own ``forward``.

    Args:
        policy: the sequence (``lean_policy`` checked it is plain).
        steps: per module of the sequence, its lean steps or the module itself.
        owners: the modules whose hooks must stay empty for the lean steps to be equivalent.
    """

    def __init__(self, policy: TensorDictSequential, steps: list, owners: list) -> None:
        self.policy = policy
        self.steps = steps
        self.owners = owners
        self.inplace = getattr(policy, "inplace", None) is True
        self.out_keys = list(policy.out_keys)
        # per module: a plain nn.Module, whose __call__ runs only its forward while no hook is registered
        self.direct = [
            not isinstance(step, list) and isinstance(step, torch.nn.Module) and type(step).__call__ is _MODULE_CALL
            for step in steps
        ]
        # per module: a QValueActor-like module with a fused network + greedy step, which this
        # call can run without repeating the checks made once per call here
        self.fused = [
            self.direct[number]
            and callable(getattr(step, "_fused_forward", None))
            and step.__dict__.get("_fused") is not None
            for number, step in enumerate(steps)
        ]

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        if skip_existing():
            return self.policy(tensordict)
        for owner in self.owners:
            if has_forward_hooks(owner):
                return self.policy(tensordict)
        current = tensordict
        # call_direct's checks, the global ones once per call rather than once per module
        plain = not global_module_hooks() and not torch.jit.is_tracing()
        direct, fused = self.direct, self.fused
        for number, step in enumerate(self.steps):
            try:
                if isinstance(step, list):
                    for lean in step:
                        lean(current)
                elif plain and direct[number] and module_call_is_forward(step):
                    # skip_existing, the global hooks and tracing were checked above; False: nothing ran
                    if not (
                        fused[number] and isinstance(current, TensorDictBase) and step._fused_forward(current, True)
                    ):
                        current = step.forward(current)
                else:
                    current = step(current)
            except Exception as err:
                err.add_note(f"Failed while executing module '{number}'.")
                raise
        if self.inplace and current is not tensordict:
            tensordict.update(current, keys_to_update=self.out_keys)
            return tensordict
        return current


class LeanModule:
    """A plain tensordict ``TensorDictModule`` policy run as its :class:`LeanStep`.

    ``TensorDictModule(net, in_keys=["observation"], out_keys=["action"])`` is the policy
    TorchRL programs most often hand a collector; tensordict's ``forward`` wraps each output
    (``TensorDict.from_any``, which on tensordict 0.14 probes the import system for pandas
    at every call) and costs more than a small network. This reads the in_keys, calls the
    net and writes the out_keys into the same TensorDict, which it returns, as the module's
    ``forward`` does. Under ``skip_existing``, with a hook registered on the module (or a
    global one), or for an input that is not a TensorDict, each call takes the module's own
    ``__call__``.

    Args:
        module: the module (``lean_policy`` checked it is plain).
        step: its lean step.
    """

    def __init__(self, module: TensorDictModule, step: LeanStep) -> None:
        self.module = module
        self.step = step

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        module = self.module
        if (
            skip_existing()
            or has_forward_hooks(module)
            or global_module_hooks()
            or not isinstance(tensordict, TensorDictBase)
        ):
            return module(tensordict)
        self.step(tensordict)
        return tensordict


def lean_policy(policy: Any) -> Any:
    """``policy``, or a lean equivalent when it is a plain tensordict module.

    A plain ``TensorDictSequential`` becomes a :class:`LeanSequence`: exactly that class
    (not a subclass, whose ``forward`` may differ), modules in a list, no
    ``selected_out_keys``, not ``partial_tolerant``, ``inplace`` True or None. A plain
    ``TensorDictModule`` (exactly that class: no ``method``, no ``inplace`` other than
    True, no keyword inputs) becomes a :class:`LeanModule`.
    """
    if type(policy) is TensorDictModule:
        single = lean_steps(policy)
        return policy if single is None else LeanModule(policy, single[0])
    if type(policy) is not TensorDictSequential or isinstance(policy.module, torch.nn.ModuleDict):
        return policy
    if policy.partial_tolerant or not tdsequential_is_plain_call(policy):
        return policy
    if getattr(policy, "inplace", None) not in (None, True):
        return policy
    owners: list = [policy]
    steps: list = []
    for sub in policy.module:
        found = lean_steps(sub, owners)
        steps.append(found if found is not None else sub)
    return LeanSequence(policy, steps, owners)
