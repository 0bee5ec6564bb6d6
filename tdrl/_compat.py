"""The one module of tdrl that touches private names of tensordict and torch.

tdrl's per-step paths (an env step, its transforms, a policy call) and a few hooks need
more than the public APIs give at the speed of a hand-written loop: reading a
TensorDict's entry dict, building a TensorDict from tensors already known to be valid,
asking whether a module has forward hooks, fusing a list of in-place updates. Each of
those lives here, and nowhere else, behind a feature check run once at import: when the
installed tensordict or torch has the private name with the expected behaviour, the fast
version is used; when it does not, a public-API fallback with the same results is. The
tests run both versions of every function on both ends of the supported tensordict range
(``tests/test_compat.py``), and a test fails if any other module of tdrl reaches a
private name of tensordict or torch.

Nothing here is public API: tdrl's own modules import these names; users should not.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    >>> _ = td_write(td, "y", td_read(td, "x") + 1)
    >>> td["y"].sum().item()
    6.0
    >>> td_read(td, "missing") is None
    True
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import InteractionType, ProbabilisticTensorDictModule, TensorDictModule, TensorDictSequential
from torch import nn
from torch.distributions import Distribution, Normal

__all__ = [
    "FAST_PATHS",
    "td_read",
    "td_write",
    "td_attach",
    "td_pop",
    "params_leaf",
    "td_unchecked",
    "td_flat",
    "has_forward_hooks",
    "global_module_hooks",
    "module_call_is_forward",
    "rnn_weights",
    "tdmodule_kwarg_names",
    "tdmodule_is_plain_call",
    "tdsequential_is_plain_call",
    "module_buffers",
    "module_parameters",
    "parameter_slots",
    "fill_slots",
    "register_load_state_dict_pre_hook",
    "DistSampleHook",
    "tensordict_draw",
    "draws_with_the_default_generator",
    "tensor_version",
    "foreach_copy_",
    "foreach_lerp_",
    "no_distribution_validation",
    "loss_kernel",
    "params_leaf_chain",
    "td_entries",
    "module_children",
    "ConversionNotice",
]


# --- TensorDict entries: read, write, build -------------------------------------------------------------------------
def _td_internals_work() -> bool:
    """Whether a TensorDict keeps its entries, lock, batch size and device where the fast paths look."""
    try:
        probe = TensorDict({"a": torch.zeros(2)}, [2])
        entries = probe._tensordict
        if not (isinstance(entries, dict) and entries.get("a") is probe.get("a")):
            return False
        if probe._is_locked is not False or probe._batch_size != probe.batch_size or probe._device is not None:
            return False
        probe.lock_()
        if probe._is_locked is not True:
            return False
        built = TensorDict._new_unsafe({"b": torch.ones(2)}, batch_size=torch.Size([2]), device=None)
        if probe._td_dim_names is not None or built._td_dim_names is not None:
            return False
        if not (type(built) is TensorDict and built.batch_size == (2,) and bool(built.get("b").sum() == 2)):
            return False
        flat = TensorDict._new_unsafe({"c": torch.ones(2)}, batch_size=torch.Size([2]), device=None, nested=False)
        return type(flat) is TensorDict and list(flat.keys()) == ["c"] and flat._td_dim_names is None
    except Exception:  # any missing or changed name: use the public API
        return False


def _td_read_public(tensordict: TensorDictBase, key: Any) -> Any:
    """``tensordict.get(key, None)``."""
    return tensordict.get(key, None)


def _td_write_public(tensordict: TensorDictBase, key: Any, value: Any) -> TensorDictBase:
    """``tensordict.set(key, value)``."""
    return tensordict.set(key, value)


def _td_unchecked_public(source: dict, batch_size: torch.Size, device: torch.device | None = None) -> TensorDict:
    """A TensorDict from tensors already known to fit ``batch_size`` and ``device``."""
    return TensorDict(source, batch_size=batch_size, device=device)


def _td_read_fast(tensordict: TensorDictBase, key: Any) -> Any:
    """``tensordict.get(key, None)``; for a string key of a plain TensorDict, straight from its entry dict."""
    if type(key) is str and type(tensordict) is TensorDict:
        value = tensordict._tensordict.get(key)
        if value is None or isinstance(value, torch.Tensor):  # a string key absent from the entry dict is missing
            return value
    return tensordict.get(key, None)  # sub-TensorDicts and non-tensor data: tensordict decides


def _td_write_fast(tensordict: TensorDictBase, key: Any, value: Any) -> TensorDictBase:
    """``tensordict.set(key, value)``, skipping ``set``'s checks only for a value that provably needs none.

    A tensor whose leading dims equal the batch size, on the TensorDict's device (or on any
    device when it has none), written under a string key into an unlocked plain TensorDict,
    keeps the TensorDict valid; anything else goes through ``set``, so the behaviour (errors
    included) is tensordict's.
    """
    if (
        type(key) is str
        and type(tensordict) is TensorDict
        and isinstance(value, torch.Tensor)
        and not tensordict._is_locked
    ):
        batch = tensordict._batch_size
        device = tensordict._device
        if (not batch or value.shape[: len(batch)] == batch) and (device is None or value.device == device):
            tensordict._tensordict[key] = value
            return tensordict
    return tensordict.set(key, value)  # anything that needs checking: tensordict's own path and errors


def _td_attach_public(tensordict: TensorDictBase, key: str, sub: TensorDictBase) -> None:
    """``tensordict.set(key, sub)``."""
    tensordict.set(key, sub)


def _td_attach_fast(tensordict: TensorDictBase, key: str, sub: TensorDictBase) -> None:
    """``tensordict.set(key, sub)`` for a new sub-TensorDict built with the parent's batch size and device.

    ``set`` would validate the sub-TensorDict's batch size, device and dim names against
    the parent's; when all match exactly (and the key is new), there is nothing to adapt.
    """
    if (
        type(tensordict) is TensorDict
        and type(sub) is TensorDict
        and not tensordict._is_locked
        and sub._batch_size == tensordict._batch_size
        and sub._device == tensordict._device
        and tensordict._td_dim_names is None
        and key not in tensordict._tensordict
    ):
        tensordict._tensordict[key] = sub
        return
    tensordict.set(key, sub)


def _td_pop_public(tensordict: TensorDictBase, key: str) -> Any:
    """``tensordict.pop(key, None)``."""
    return tensordict.pop(key, None)


def _td_pop_fast(tensordict: TensorDictBase, key: str) -> Any:
    """``tensordict.pop(key, None)``; for a string key of a plain unlocked TensorDict, straight from its entry dict."""
    if type(key) is str and type(tensordict) is TensorDict and not tensordict._is_locked:
        return tensordict._tensordict.pop(key, None)
    return tensordict.pop(key, None)


def _td_unchecked_fast(source: dict, batch_size: torch.Size, device: torch.device | None = None) -> TensorDict:
    """A TensorDict from tensors already known to fit ``batch_size`` and ``device`` (no per-entry checks)."""
    return TensorDict._new_unsafe(source, batch_size=batch_size, device=device)


def _td_flat_fast(source: dict, batch_size: torch.Size, device: torch.device | None = None) -> TensorDict:
    """:func:`td_unchecked` for a ``source`` whose values are tensors or TensorDicts, never dicts.

    Without dict values there is nothing to nest: the entries are taken as they are (one
    ``dict.update`` on recent tensordicts, no per-entry type test). The per-step callers
    (an env's step output, a collector's next root) build their sources from tensors and
    TensorDicts only.
    """
    return TensorDict._new_unsafe(source, batch_size=batch_size, device=device, nested=False)


def _params_leaf_public(params: TensorDictBase, key: tuple[str, ...]) -> Any:
    """``params.get(key)``."""
    return params.get(key)


def _params_leaf_fast(params: TensorDictBase, key: tuple[str, ...]) -> Any:
    """``params.get(key)`` for a TensorDictParams, from its inner TensorDict's entry dicts.

    ``TensorDictParams.get`` runs through several wrapping layers (about 20 us); a loss
    that checks on each call whether its target parameters were replaced reads one leaf.
    """
    node = getattr(params, "_param_td", params)
    for part in key:
        if type(node) is not TensorDict:
            return params.get(key)
        node = node._tensordict.get(part)
    return node if isinstance(node, torch.Tensor) else params.get(key)


FAST_PATHS: dict[str, bool] = {"tensordict": _td_internals_work()}
"""Which private-name fast paths the installed libraries support (filled at import)."""

if FAST_PATHS["tensordict"]:
    td_read, td_write, td_unchecked, td_attach = _td_read_fast, _td_write_fast, _td_unchecked_fast, _td_attach_fast
    td_pop = _td_pop_fast
    td_flat = _td_flat_fast
    params_leaf = _params_leaf_fast
else:  # pragma: no cover - taken on a tensordict whose internals moved
    td_read, td_write, td_unchecked, td_attach = (
        _td_read_public,
        _td_write_public,
        _td_unchecked_public,
        _td_attach_public,
    )
    td_pop = _td_pop_public
    td_flat = _td_unchecked_public
    params_leaf = _params_leaf_public


# --- nn.Module and TensorDictModule introspection -------------------------------------------------------------------
def _module_hook_dicts_work() -> bool:
    try:
        probe = nn.Identity()
        if probe._forward_hooks or probe._forward_pre_hooks:
            return False
        handle = probe.register_forward_hook(lambda *args: None)
        seen = bool(probe._forward_hooks)
        handle.remove()
        handle = probe.register_forward_pre_hook(lambda *args: None)
        seen = seen and bool(probe._forward_pre_hooks)
        handle.remove()
        return seen
    except Exception:
        return False


FAST_PATHS["module_hooks"] = _module_hook_dicts_work()


def _has_forward_hooks_fast(module: nn.Module) -> bool:
    """Whether ``module`` has a forward or forward-pre hook.

    The lean per-step paths run a module's computation without ``nn.Module.__call__``;
    they are only equivalent when no hook would have run.
    """
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _has_forward_hooks_unknown(module: nn.Module) -> bool:
    """``True``: where hooks live is unknown, so callers take ``nn.Module.__call__``."""
    return True


def _rnn_weight_names_work() -> bool:
    try:
        probe = nn.LSTM(2, 3, num_layers=2, proj_size=1)
        names = list(probe._flat_weights_names)
        return len(names) == 10 and all(probe._parameters[n] is getattr(probe, n) for n in names)
    except Exception:
        return False


FAST_PATHS["rnn_weights"] = _rnn_weight_names_work()


def rnn_weights(rnn: nn.RNNBase) -> list | None:
    """The parameters ``nn.LSTM``/``nn.GRU.forward`` passes to its kernel, as they are now; ``None`` if unknown.

    Read from the module's parameter dict, where ``getattr`` (and ``torch.func.functional_call``'s
    swap) finds them; a weight that moved elsewhere falls back to ``getattr``.
    """
    if not FAST_PATHS["rnn_weights"]:
        return None
    names = rnn._flat_weights_names
    params = rnn._parameters
    try:
        return [params[name] for name in names]
    except KeyError:
        return [getattr(rnn, name) for name in names]


def _module_call_internals_work() -> bool:
    try:
        from torch.nn.modules import module as module_mod

        probe = nn.Identity()
        if probe._compiled_call_impl is not None or probe._backward_hooks or probe._backward_pre_hooks:
            return False
        handle = module_mod.register_module_forward_hook(lambda *args: None)
        seen = bool(module_mod._global_forward_hooks)
        handle.remove()
        handle = probe.register_full_backward_hook(lambda *args: None)
        seen = seen and bool(probe._backward_hooks)
        handle.remove()
        return seen and not module_mod._global_forward_hooks and FAST_PATHS["module_hooks"]
    except Exception:
        return False


FAST_PATHS["module_call"] = _module_call_internals_work()
if FAST_PATHS["module_call"]:
    from torch.nn.modules import module as _module_mod


def _global_module_hooks_fast() -> bool:
    """Whether a global module hook (``register_module_forward_hook`` and the like) is registered."""
    return bool(
        _module_mod._global_forward_hooks
        or _module_mod._global_forward_pre_hooks
        or _module_mod._global_backward_hooks
        or _module_mod._global_backward_pre_hooks
    )


def _module_call_is_forward_fast(module: nn.Module) -> bool:
    """Whether ``module(x)`` would run only ``module.forward(x)``: no hook of its own, not compiled.

    Ask :func:`global_module_hooks` too: a global hook runs for every module.
    """
    return not (
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or module._compiled_call_impl is not None
    )


def _global_module_hooks_unknown() -> bool:
    """``True``: where hooks live is unknown, so callers take ``nn.Module.__call__``."""
    return True


def _module_call_is_forward_unknown(module: nn.Module) -> bool:
    return False


global_module_hooks = _global_module_hooks_fast if FAST_PATHS["module_call"] else _global_module_hooks_unknown
module_call_is_forward = _module_call_is_forward_fast if FAST_PATHS["module_call"] else _module_call_is_forward_unknown

# chosen once here, not per call: the lean paths ask this at every step
has_forward_hooks = _has_forward_hooks_fast if FAST_PATHS["module_hooks"] else _has_forward_hooks_unknown


def _tdmodule_layout_known() -> bool:
    try:
        plain = TensorDictModule(nn.Identity(), in_keys=["x"], out_keys=["y"])
        named = TensorDictModule(nn.Identity(), in_keys={"input": "x"}, out_keys=["y"])  # {kwarg: entry}
        seq = TensorDictSequential(plain)
        return (
            plain._kwargs is None
            and list(named._kwargs) == ["input"]
            and list(named.in_keys) == ["x"]
            and not plain._get_kwargs
            and seq._select_before_return is False
        )
    except Exception:
        return False


FAST_PATHS["tdmodule_layout"] = _tdmodule_layout_known()


def tdmodule_kwarg_names(module: TensorDictModule) -> list[str] | None:
    """The keyword names a TensorDictModule with dict ``in_keys`` passes its inputs under, else ``None``."""
    names = module._kwargs if FAST_PATHS["tdmodule_layout"] else None
    return list(names) if names is not None else None


def tdmodule_is_plain_call(module: TensorDictModule) -> bool:
    """Whether the module's forward reads its in_keys and calls its net, with no extra keyword inputs.

    ``False`` when the installed tensordict keeps its module layout elsewhere (the caller
    then keeps tensordict's own forward).
    """
    return FAST_PATHS["tdmodule_layout"] and not module._get_kwargs


def tdsequential_is_plain_call(module: TensorDictSequential) -> bool:
    """Whether a TensorDictSequential returns its whole TensorDict (no ``selected_out_keys``)."""
    return FAST_PATHS["tdmodule_layout"] and not module._select_before_return


def module_buffers(module: nn.Module) -> dict[str, torch.Tensor | None]:
    """The module's own buffers by name, ``None`` entries included (read on per-step paths)."""
    buffers = getattr(module, "_buffers", None)
    if isinstance(buffers, dict):
        return buffers
    return {name: getattr(module, name, None) for name, _ in module.named_buffers(recurse=False)}  # pragma: no cover


def module_parameters(module: nn.Module) -> dict[str, torch.Tensor | None]:
    """The module's own registered parameters by name, ``None`` entries included (read on per-step paths).

    ``module.weight`` goes through ``nn.Module.__getattr__`` (about a microsecond); this dict
    holds the same tensors while the name is not also an instance attribute (tensordict's
    ``to_module`` moves a swapped-in plain tensor there: callers check ``module.__dict__``).
    """
    params = getattr(module, "_parameters", None)
    if isinstance(params, dict):
        return params
    return dict(module.named_parameters(recurse=False))  # pragma: no cover


def _parameter_slots_work() -> bool:
    try:
        lin = nn.Linear(1, 1)
        with torch.no_grad():
            lin.bias.zero_()
        lin.register_buffer("b", torch.zeros(1))
        held: dict = lin._parameters
        if not isinstance(held, dict) or not isinstance(lin._buffers, dict) or "b" not in lin._buffers:
            return False
        weight = held["weight"]
        held["weight"] = torch.full((1, 1), 2.0)
        try:
            with torch.no_grad():
                return lin.weight is held["weight"] and float(lin(torch.ones(1))) == 2.0
        finally:
            held["weight"] = weight
    except Exception:
        return False


FAST_PATHS["parameter_slots"] = _parameter_slots_work()

Slot = tuple[dict, str]


def parameter_slots(module: nn.Module, names: Sequence[str]) -> list[Slot] | None:
    """Where each dotted-name parameter or buffer of ``module`` is held: ``(dict, attribute)``.

    Writing a tensor into a slot (:func:`fill_slots`) makes the module compute with it, as
    ``torch.func.functional_call`` does, without that function's per-call setup. ``None``
    when the installed torch keeps its parameters elsewhere, or a name is not a parameter
    or buffer (the caller then keeps its general path).
    """
    if not FAST_PATHS["parameter_slots"]:
        return None  # pragma: no cover
    slots: list[Slot] = []
    for name in names:
        path, _, attr = name.rpartition(".")
        try:
            owner = module.get_submodule(path)
        except AttributeError:
            return None
        for held in (owner._parameters, owner._buffers):
            if attr in held and held[attr] is not None:
                slots.append((held, attr))
                break
        else:
            return None
    return slots


def fill_slots(slots: Sequence[Slot], tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Puts ``tensors`` into ``slots`` (from :func:`parameter_slots`); returns what they held."""
    previous = []
    for (held, attr), tensor in zip(slots, tensors):
        previous.append(held[attr])
        held[attr] = tensor
    return previous


def register_load_state_dict_pre_hook(module: nn.Module, hook: Callable[..., None]) -> Any:
    """Registers ``hook(module, state_dict, prefix, *args)`` to run before ``module`` loads a state dict."""
    public = getattr(module, "register_load_state_dict_pre_hook", None)
    if public is not None:
        return public(hook)
    return module._register_load_state_dict_pre_hook(hook, with_module=True)  # pragma: no cover - torch < 2.5


# --- probabilistic modules -------------------------------------------------------------------------------------------
FAST_PATHS["dist_sample"] = callable(getattr(ProbabilisticTensorDictModule, "_dist_sample", None))


def _draw_public(dist: Distribution, interaction_type: InteractionType) -> torch.Tensor:
    if interaction_type is InteractionType.MODE:
        return dist.mode
    if interaction_type in (InteractionType.MEAN, InteractionType.DETERMINISTIC):
        try:
            return dist.mean
        except NotImplementedError:  # no closed form: an empirical mean, as tensordict takes
            return (dist.rsample((1000,)) if dist.has_rsample else dist.sample((1000,))).mean(0)
    return dist.rsample() if dist.has_rsample else dist.sample()


def _generator_attrs_known() -> bool:
    try:
        module = ProbabilisticTensorDictModule(in_keys=["loc", "scale"], out_keys=["a"], distribution_class=Normal)
        seeded = ProbabilisticTensorDictModule(
            in_keys=["loc", "scale"], out_keys=["a"], distribution_class=Normal, generator=torch.Generator()
        )
        return module._generator is None and module._generator_key is None and seeded._generator is not None
    except Exception:
        return False


FAST_PATHS["generator_attrs"] = _generator_attrs_known()


def draws_with_the_default_generator(module: ProbabilisticTensorDictModule) -> bool:
    """Whether ``module`` samples with torch's default generator (no ``generator=`` given).

    ``False`` when the installed tensordict keeps its generator elsewhere: the caller then
    keeps tensordict's own sampling, which honours it.
    """
    if not FAST_PATHS["generator_attrs"]:
        return False  # pragma: no cover
    return module._generator is None and module._generator_key is None


def tensordict_draw(module: ProbabilisticTensorDictModule, dist: Distribution, interaction_type: Any) -> Any:
    """The sample tensordict's own forward would draw from ``dist`` for ``interaction_type``."""
    if FAST_PATHS["dist_sample"]:
        return ProbabilisticTensorDictModule._dist_sample(module, dist, interaction_type=interaction_type)
    return _draw_public(dist, interaction_type)  # pragma: no cover


class DistSampleHook(ProbabilisticTensorDictModule):
    """Routes tensordict's private sampling step to the public :meth:`deterministic_action`.

    ``ProbabilisticTensorDictModule.forward`` draws its sample in a private method; a
    subclass that wants its own deterministic action (``MEAN``/``MODE``/``DETERMINISTIC``)
    overrides :meth:`deterministic_action` instead. On a tensordict without that method the
    hook is not installed, and tensordict's own choice of deterministic action applies to
    its forward (tdrl's lean forward calls :meth:`deterministic_action` itself).
    """

    def deterministic_action(self, dist: Distribution, interaction_type: Any) -> torch.Tensor | None:
        """The action for a non-random interaction type, or ``None`` to let tensordict decide."""
        return None

    if FAST_PATHS["dist_sample"]:

        def _dist_sample(self, dist: Distribution, interaction_type: Any = None, **kwargs: Any) -> Any:
            if interaction_type is None:
                interaction_type = self.default_interaction_type
            action = self.deterministic_action(dist, interaction_type)
            if action is not None:
                return action
            return super()._dist_sample(dist, interaction_type=interaction_type, **kwargs)


# --- tensors and optimisation ----------------------------------------------------------------------------------------
def tensor_version(tensor: torch.Tensor) -> object:
    """The tensor's in-place version counter, for caches keyed on a tensor's contents.

    Where torch does not expose one, a new object each call, equal to nothing before it,
    so such a cache never hits.
    """
    version = getattr(tensor, "_version", None)
    return object() if version is None else version


_HAS_FOREACH = all(hasattr(torch, name) for name in ("_foreach_copy_", "_foreach_lerp_"))
FAST_PATHS["foreach"] = _HAS_FOREACH


def foreach_copy_(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> None:
    """``target.copy_(source)`` for each pair, fused into one kernel launch where torch can."""
    if _HAS_FOREACH:
        torch._foreach_copy_(list(targets), list(sources))
        return
    for target, source in zip(targets, sources):  # pragma: no cover
        target.copy_(source)


def foreach_lerp_(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor], weight: float) -> None:
    """``target.lerp_(source, weight)`` for each pair, fused where torch can."""
    if _HAS_FOREACH:
        torch._foreach_lerp_(list(targets), list(sources), weight)
        return
    for target, source in zip(targets, sources):  # pragma: no cover
        target.lerp_(source, weight)


@contextlib.contextmanager
def no_distribution_validation() -> Iterator[None]:
    """Turns off ``torch.distributions``' default argument validation inside the block.

    A distribution built with an explicit ``validate_args=True`` still validates. The
    previous default is restored on exit, exceptions included.
    """
    if torch.compiler.is_compiling():
        # torch.compile cannot trace a class attribute being set; the distributions
        # tdrl builds in a loss pass validate_args=False themselves (see the callers)
        yield
        return
    previous = getattr(Distribution, "_validate_args", __debug__)
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


# --- torch's loss kernels -------------------------------------------------------------------------------------------

_REDUCTIONS = {"mean": 1, "sum": 2}  # the enum torch's loss kernels take (torch.nn._reduction)


def _loss_kernel_of(distance: str, reduction: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The kernel ``F.mse_loss`` / ``F.smooth_l1_loss`` end in, with the reduction bound."""
    enum = _REDUCTIONS[reduction]
    # torch's stubs type the kernels' reduction as a str; they take the enum (an int), as F passes it
    if distance == "l2":
        return functools.partial(torch._C._nn.mse_loss, reduction=enum)  # type: ignore[arg-type]
    return functools.partial(torch._C._nn.smooth_l1_loss, reduction=enum, beta=1.0)  # type: ignore[arg-type]


def _loss_kernels_match() -> bool:
    """Whether torch's loss kernels take (input, target, reduction enum) as ``F.mse_loss`` passes them."""
    import torch.nn.functional as F

    try:
        a, b = torch.tensor([0.5, -2.0, 3.0]), torch.tensor([1.0, 0.0, 1.5])
        return all(
            torch.equal(_loss_kernel_of(name, r)(a, b), functional(a, b, reduction=r))
            for name, functional in (("l2", F.mse_loss), ("smooth_l1", F.smooth_l1_loss))
            for r in _REDUCTIONS
        )
    except Exception:  # a renamed kernel or a changed signature: the callers use the functional API
        return False


_LOSS_KERNELS = _loss_kernels_match()


def loss_kernel(distance: str, reduction: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The kernel ``F.mse_loss`` (``"l2"``) or ``F.smooth_l1_loss`` ends in, or None.

    On inputs of equal shape the functionals only add a broadcast (two views, two autograd
    nodes) before calling it. None when the kernels differ from what this torch's
    functionals pass them (checked once, at import), or for another distance or reduction.
    """
    if _LOSS_KERNELS and reduction in _REDUCTIONS and distance in ("l2", "smooth_l1"):
        return _loss_kernel_of(distance, reduction)
    return None


def params_leaf_chain(params: TensorDictBase, key: tuple[str, ...]) -> tuple[tuple[dict, str, Any], ...] | None:
    """The entry dicts on the way from ``params`` to its leaf at ``key``, each with the object it holds.

    A loss that keeps a copy of its network running on ``params`` checks on each call that
    the leaf (and each sub-TensorDict above it) is still the one it saw: a few dict
    lookups, where :func:`params_leaf` walks from the module down. ``None`` where
    tensordict's internals are not where the fast paths look (the caller then reads the
    leaf with :func:`params_leaf` each time).
    """
    if not FAST_PATHS["tensordict"]:
        return None
    node: Any = getattr(params, "_param_td", params)
    chain = []
    for part in key:
        if type(node) is not TensorDict:
            return None
        entries = node._tensordict
        node = entries.get(part)
        chain.append((entries, part, node))
    return tuple(chain) if isinstance(node, torch.Tensor) else None


def td_entries(tensordict: Any) -> dict | None:
    """The entry dict of a plain ``TensorDict`` (string key -> tensor or sub-TensorDict), read-only use.

    ``None`` for anything else, or where tensordict's internals are not where the fast paths
    look: the caller then goes through ``get``.
    """
    if type(tensordict) is TensorDict and FAST_PATHS["tensordict"]:
        return tensordict._tensordict
    return None


def module_children(module: nn.Module) -> dict[str, nn.Module | None]:
    """The module's own registered submodules by name, ``None`` entries included (read, not written)."""
    children = getattr(module, "_modules", None)
    if isinstance(children, dict):
        return children
    return dict(module.named_children())  # pragma: no cover


class ConversionNotice(nn.Module):
    """An ``nn.Module`` told when ``to`` / ``double`` / ``cuda`` / ... give its tensors new storage.

    Every such conversion goes through ``nn.Module._apply`` (a private name of torch, hence
    here); after it, :meth:`_tensors_converted` runs on the module it was called on.
    """

    def _tensors_converted(self) -> None:
        """Called after a conversion of the module's parameters and buffers; does nothing here."""

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        out = super()._apply(fn, *args, **kwargs)
        self._tensors_converted()
        return out
