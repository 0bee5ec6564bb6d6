"""tdrl._compat: each private-name fast path and its public fallback behave alike, on the installed tensordict.

The suite runs on both ends of the supported tensordict range (``scripts/test.sh``), so
these tests pin both versions of every function on both ends. The last test keeps the
rule that no other module of tdrl touches a private name of tensordict or torch.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
from pathlib import Path

import pytest
import tensordict
import torch
from tensordict import LazyStackedTensorDict, NonTensorData, TensorDict
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import distributions as D
from torch import nn

from tdrl import _compat

READS = [_compat._td_read_fast, _compat._td_read_public]
WRITES = [_compat._td_write_fast, _compat._td_write_public]
BUILDS = [_compat._td_unchecked_fast, _compat._td_unchecked_public]
FLAT_BUILDS = [_compat._td_flat_fast, _compat._td_unchecked_public]


def test_the_fast_paths_are_taken_on_the_tested_tensordict_range():
    # Both ends of the declared range keep these internals; a tensordict that moves one of
    # them turns its entry False (and tdrl takes the public fallback) rather than breaking.
    assert _compat.FAST_PATHS == {
        "tensordict": True,
        "module_hooks": True,
        "module_call": True,
        "tdmodule_layout": True,
        "parameter_slots": True,
        "dist_sample": True,
        "generator_attrs": True,
        "foreach": True,
        "rnn_weights": True,
    }, tensordict.__version__
    assert _compat.td_read is _compat._td_read_fast
    assert _compat.td_attach is _compat._td_attach_fast
    assert _compat.td_write is _compat._td_write_fast
    assert _compat.module_call_is_forward is _compat._module_call_is_forward_fast
    assert _compat.has_forward_hooks is _compat._has_forward_hooks_fast


# --- TensorDict entries ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attach", [_compat._td_attach_fast, _compat._td_attach_public])
def test_attach_is_set_and_keeps_its_checks(attach):
    td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    sub = TensorDict({"h": torch.ones(3, 4)}, [3])
    attach(td, "next", sub)
    assert td.get("next") is sub
    assert td.get(("next", "h")) is sub.get("h")
    named = TensorDict({"x": torch.zeros(3)}, [3], names=["env"])
    attach(named, "next", TensorDict({"h": torch.ones(3)}, [3]))
    assert named.get("next").names == ["env"]  # set's name refinement, not skipped
    with pytest.raises(RuntimeError):
        attach(TensorDict({"x": torch.zeros(3)}, [3]), "next", TensorDict({"h": torch.ones(2)}, [2]))
    locked = TensorDict({"x": torch.zeros(3)}, [3]).lock_()
    with pytest.raises(RuntimeError):
        attach(locked, "next", TensorDict({"h": torch.ones(3)}, [3]))


@pytest.mark.parametrize("pop", [_compat._td_pop_fast, _compat._td_pop_public])
def test_pop_is_tensordicts_pop(pop):
    sub = TensorDict({"h": torch.ones(3)}, [3])
    td = TensorDict({"x": torch.zeros(3), "next": sub}, [3])
    assert pop(td, "next") is sub
    assert list(td.keys()) == ["x"]
    assert pop(td, "missing") is None
    locked = TensorDict({"x": torch.zeros(3)}, [3]).lock_()
    with pytest.raises(RuntimeError):
        pop(locked, "x")


def test_rnn_weights_are_what_getattr_finds():
    lstm = nn.LSTM(3, 4, num_layers=2, proj_size=2)
    assert [w is getattr(lstm, n) for n, w in zip(lstm._flat_weights_names, _compat.rnn_weights(lstm))] == [True] * 10


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("read", READS)
def test_write_then_read_gives_back_the_tensor_itself(read, write):
    td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    value = torch.ones(3, 5)
    assert write(td, "y", value) is td
    assert td.get("y") is value
    assert read(td, "y") is value


@pytest.mark.parametrize("read", READS)
def test_read_of_a_missing_key_is_none_and_other_entries_come_from_tensordict(read):
    td = TensorDict({"x": torch.zeros(3), "sub": {"y": torch.ones(3)}}, [3])
    assert read(td, "missing") is None
    assert read(td, ("sub", "missing")) is None
    assert read(td, ("missing", "y")) is None
    assert torch.equal(read(td, ("sub", "y")), torch.ones(3))
    assert read(td, "sub") is td.get("sub")


@pytest.mark.parametrize("write", WRITES)
def test_write_keeps_tensordicts_checks(write):
    td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    with pytest.raises(RuntimeError, match="batch dimension mismatch"):
        write(td, "y", torch.zeros(4))
    with pytest.raises(RuntimeError, match="locked"):
        write(td.lock_(), "y", torch.zeros(3))


@pytest.mark.parametrize("write", WRITES)
def test_write_on_a_tensordict_with_a_device_and_on_nested_keys(write):
    td = TensorDict({}, [2], device="cpu")
    write(td, ("a", "b"), torch.zeros(2, 1))
    assert td["a", "b"].shape == (2, 1)
    assert td["a"].device == torch.device("cpu")
    write(td, "c", torch.zeros(2))
    assert td["c"].device == torch.device("cpu")


@pytest.mark.parametrize("read", READS)
def test_read_matches_get(read):
    td = TensorDict({"x": torch.zeros(2), "sub": {"y": torch.ones(2)}}, [2])
    td.set("note", NonTensorData("hello", batch_size=[2]))
    for key in ("x", "sub", ("sub", "y"), "note", "missing"):
        expected = td.get(key, None)
        got = read(td, key)
        assert type(got) is type(expected)
        if isinstance(expected, torch.Tensor):
            assert got is expected


@pytest.mark.parametrize(("read", "write"), list(zip(READS, WRITES)))
def test_other_tensordict_types_take_the_get_set_road(read, write):
    stacked = LazyStackedTensorDict.lazy_stack([TensorDict({"x": torch.zeros(1)}, []) for _ in range(2)])
    write(stacked, "y", torch.ones(2, 1))
    assert torch.equal(read(stacked, "y"), torch.ones(2, 1))


@pytest.mark.parametrize("build", BUILDS)
def test_unchecked_build_equals_the_public_constructor(build):
    source = {"obs": torch.arange(6.0).reshape(3, 2), "nested": TensorDict({"r": torch.ones(3, 1)}, [3])}
    built = build(dict(source), torch.Size([3]), None)
    expected = TensorDict(source, batch_size=[3])
    assert type(built) is TensorDict
    assert built.batch_size == expected.batch_size
    assert built.device is None
    assert (built == expected).all()
    on_cpu = build({"a": torch.zeros(2)}, torch.Size([2]), torch.device("cpu"))
    assert on_cpu.device == torch.device("cpu")


@pytest.mark.parametrize("build", FLAT_BUILDS)
def test_flat_build_keeps_tensors_and_sub_tensordicts_as_given(build):
    sub = TensorDict({"r": torch.ones(3, 1)}, [3])
    obs = torch.arange(6.0).reshape(3, 2)
    built = build({"obs": obs, "nested": sub}, torch.Size([3]), None)
    expected = TensorDict({"obs": obs, "nested": sub}, batch_size=[3])
    assert type(built) is TensorDict
    assert built.batch_size == expected.batch_size
    assert built.device is None
    assert (built == expected).all()
    assert built.get("obs") is obs  # taken by reference, as the constructor does
    assert built.get("nested") is sub
    assert built.get(("nested", "r")) is sub.get("r")
    assert build({"a": torch.zeros(2)}, torch.Size([2]), torch.device("cpu")).device == torch.device("cpu")


# --- modules ---------------------------------------------------------------------------------------------------------
def test_forward_hooks_are_seen_and_unknown_layouts_assume_hooks():
    net = nn.Linear(2, 2)
    assert not _compat.has_forward_hooks(net)
    handle = net.register_forward_hook(lambda *args: None)
    assert _compat.has_forward_hooks(net)
    handle.remove()
    handle = net.register_forward_pre_hook(lambda *args: None)
    assert _compat.has_forward_hooks(net)
    handle.remove()
    assert not _compat.has_forward_hooks(net)
    assert _compat._has_forward_hooks_unknown(net)  # the fallback sends every call down nn.Module.__call__


def test_tdmodule_layout_is_read_from_the_module():
    plain = TensorDictModule(nn.Identity(), in_keys=["x"], out_keys=["y"])
    named = TensorDictModule(lambda input: input, in_keys={"input": "obs"}, out_keys=["y"])
    assert _compat.tdmodule_kwarg_names(plain) is None
    assert _compat.tdmodule_kwarg_names(named) == ["input"]
    assert _compat.tdmodule_is_plain_call(plain)
    assert _compat.tdsequential_is_plain_call(TensorDictSequential(plain))
    assert not _compat.tdsequential_is_plain_call(TensorDictSequential(plain, selected_out_keys=["y"]))


def test_module_buffers_are_the_live_buffers_none_included():
    module = nn.Module()
    module.register_buffer("loc", None)
    module.register_buffer("scale", torch.ones(2))
    buffers = _compat.module_buffers(module)
    assert buffers["loc"] is None
    assert buffers["scale"] is module.scale
    module.loc = torch.zeros(2)
    assert _compat.module_buffers(module)["loc"] is module.loc


def test_load_state_dict_pre_hook_runs_before_loading_and_survives_a_deepcopy():
    import copy

    calls = []

    def hook(module, state_dict, prefix, *args):
        calls.append(prefix)
        if module.stat is None:
            module.stat = torch.empty_like(state_dict[prefix + "stat"])

    inner = nn.Module()
    inner.register_buffer("stat", None)
    _compat.register_load_state_dict_pre_hook(inner, hook)
    outer = nn.Sequential(inner)
    outer.load_state_dict({"0.stat": torch.tensor([3.0])})
    assert calls == ["0."]
    assert torch.equal(inner.stat, torch.tensor([3.0]))
    clone = copy.deepcopy(outer)
    clone[0].stat = None
    clone.load_state_dict({"0.stat": torch.tensor([4.0])})
    assert torch.equal(clone[0].stat, torch.tensor([4.0]))


# --- probabilistic modules -------------------------------------------------------------------------------------------
class _Fixed(_compat.DistSampleHook):
    def deterministic_action(self, dist, interaction_type):
        return torch.full_like(dist.mean, 7.0) if interaction_type is InteractionType.MODE else None


def _normal_actor(cls=ProbabilisticTensorDictModule):
    head = cls(in_keys=["loc", "scale"], out_keys=["action"], distribution_class=D.Normal)
    return ProbabilisticTensorDictSequential(
        TensorDictModule(lambda x: (x, torch.ones_like(x)), in_keys=["obs"], out_keys=["loc", "scale"]), head
    )


def test_dist_sample_hook_gives_the_subclass_action_in_tensordicts_forward():
    from tensordict.nn import set_interaction_type

    actor = _normal_actor(_Fixed)
    td = TensorDict({"obs": torch.zeros(3, 1)}, [3])
    with set_interaction_type(InteractionType.MODE):
        assert torch.equal(actor(td.clone())["action"], torch.full((3, 1), 7.0))
    with set_interaction_type(InteractionType.MEAN):  # the subclass declines: tensordict's own mean
        assert torch.equal(actor(td.clone())["action"], torch.zeros(3, 1))


@pytest.mark.parametrize("itype", [InteractionType.MODE, InteractionType.MEAN, InteractionType.DETERMINISTIC])
def test_tensordict_draw_and_its_public_fallback_agree_on_deterministic_draws(itype):
    module = _normal_actor().module[1]
    dist = D.Normal(torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0]))
    expected = torch.tensor([0.5, -1.0])
    assert torch.equal(_compat.tensordict_draw(module, dist, itype), expected)
    assert torch.equal(_compat._draw_public(dist, itype), expected)


def test_public_draw_estimates_a_mean_without_a_closed_form():
    class NoMean(D.Normal):
        @property
        def mean(self):
            raise NotImplementedError

    torch.manual_seed(0)
    estimate = _compat._draw_public(NoMean(torch.tensor([2.0]), torch.tensor([0.1])), InteractionType.MEAN)
    assert abs(estimate.item() - 2.0) < 0.05
    sample = _compat._draw_public(NoMean(torch.tensor([2.0]), torch.tensor([0.1])), InteractionType.RANDOM)
    assert sample.shape == (1,)


# --- tensors and optimisation ----------------------------------------------------------------------------------------
def test_the_default_generator_is_told_from_a_given_one():
    def head(**kwargs):
        return ProbabilisticTensorDictModule(
            in_keys=["loc", "scale"], out_keys=["a"], distribution_class=D.Normal, **kwargs
        )

    assert _compat.draws_with_the_default_generator(head())
    assert not _compat.draws_with_the_default_generator(head(generator=torch.Generator()))


@pytest.mark.parametrize("leaf", [_compat._params_leaf_fast, _compat._params_leaf_public])
def test_params_leaf_is_the_live_parameter_of_a_tensordictparams(leaf):
    from tensordict.nn import TensorDictParams

    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    params = TensorDictParams(TensorDict.from_module(net))
    for key in params.keys(True, True):
        key = key if isinstance(key, tuple) else (key,)
        assert leaf(params, key) is params.get(key)
    plain = TensorDict({"a": {"b": torch.ones(2)}}, [])
    assert leaf(plain, ("a", "b")) is plain.get(("a", "b"))


def test_tensor_version_moves_on_in_place_changes():
    t = torch.zeros(2)
    before = _compat.tensor_version(t)
    assert _compat.tensor_version(t) == before
    t.add_(1)
    assert _compat.tensor_version(t) != before


def test_foreach_updates_match_their_loops():
    targets = [torch.zeros(3), torch.zeros(2, 2)]
    sources = [torch.arange(3.0), torch.ones(2, 2)]
    _compat.foreach_copy_(targets, sources)
    assert all(torch.equal(t, s) for t, s in zip(targets, sources))
    _compat.foreach_lerp_(targets, [torch.zeros(3), torch.zeros(2, 2)], 0.25)
    assert torch.allclose(targets[0], 0.75 * torch.arange(3.0))
    assert torch.allclose(targets[1], torch.full((2, 2), 0.75))


def test_distribution_validation_is_off_inside_and_restored_after_even_on_error():
    before = D.Distribution._validate_args
    with _compat.no_distribution_validation():
        D.Normal(torch.zeros(1), -torch.ones(1))  # an invalid scale: not checked inside
        with pytest.raises(ValueError, match="scale"):
            D.Normal(torch.zeros(1), -torch.ones(1), validate_args=True)  # an explicit request still checks
    assert D.Distribution._validate_args == before
    with pytest.raises(RuntimeError, match="boom"), _compat.no_distribution_validation():
        raise RuntimeError("boom")
    assert D.Distribution._validate_args == before


# --- the rule: private names of tensordict and torch only in tdrl/_compat.py ----------------------------------------
TDRL = Path(_compat.__file__).resolve().parent
_FOREIGN_ROOTS = ("torch", "tensordict")


_ENUM_HOOKS = {"_missing_", "_generate_next_value_", "_ignore_", "_order_", "_name_", "_value_"}  # enum's public API


def _private(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return name.startswith("_") and not dunder and name not in _ENUM_HOOKS


def _instance_names() -> dict[type, set[str]]:
    """Private instance attributes of the torch/tensordict classes tdrl builds on (set in their __init__)."""
    probes = [
        TensorDict({"a": torch.zeros(1)}, [1]),
        TensorDictModule(nn.Identity(), in_keys=["x"], out_keys=["y"]),
        ProbabilisticTensorDictModule(in_keys=["loc", "scale"], out_keys=["a"], distribution_class=D.Normal),
        D.Normal(torch.zeros(1), torch.ones(1)),
    ]
    probes.append(TensorDictSequential(probes[1]))
    return {type(p): {n for n in vars(p) if _private(n)} for p in probes}


_INSTANCE_NAMES = _instance_names()


def _foreign_private_names(cls: type) -> set[str]:
    """Private names that ``cls`` gets from torch or tensordict (class and instance attributes)."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base.__module__.split(".")[0] not in _FOREIGN_ROOTS:
            continue
        names |= {n for n in vars(base) if _private(n)}
        names |= _INSTANCE_NAMES.get(base, set())
    return names


@functools.cache
def _tdrl_classes() -> dict[str, type]:
    """Every class defined in tdrl, by name (to resolve ``SomeTdrlClass._name`` imported inside a function)."""
    modules = [importlib.import_module(_module_name(path, TDRL)) for path in TDRL.rglob("*.py")]
    return {
        name: obj
        for module in modules
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__.startswith("tdrl")
    }


@functools.cache
def _all_tdrl_private_names() -> frozenset[str]:
    return frozenset(n for cls in _tdrl_classes().values() for n in _tdrl_private_names(cls))


def _tdrl_private_names(cls: type) -> set[str]:
    return {n for base in cls.__mro__ if base.__module__.startswith("tdrl") for n in vars(base) if _private(n)}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _violations(path: Path, root: Path = TDRL) -> list[str]:
    tree = ast.parse(path.read_text())
    module = importlib.import_module(_module_name(path, root))
    everywhere = set()
    for cls in (TensorDict, TensorDictModule, ProbabilisticTensorDictModule, TensorDictSequential, D.Normal):
        everywhere |= _foreign_private_names(cls)
    everywhere |= {n for root in (torch, tensordict) for n in dir(root) if _private(n)}
    out = []

    def where(node: ast.AST) -> str:
        return f"{path.relative_to(root.parent)}:{node.lineno}: {ast.unparse(node)[:80]}"

    # inside tdrl classes built on torch/tensordict classes: no inherited private name, no override of one
    for cls_node in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        cls = getattr(module, cls_node.name, None)
        if not inspect.isclass(cls):
            continue
        inherited = _foreign_private_names(cls) - {n for n in vars(cls) if n in _tdrl_private_names(cls)}
        for node in ast.walk(cls_node):
            if isinstance(node, ast.FunctionDef) and node.name in _foreign_private_names(cls):
                out.append(f"{path.relative_to(root.parent)}:{node.lineno}: overrides the private {node.name}")
            elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in inherited:
                out.append(where(node))
    # anywhere: a private attribute of something that is not tdrl's own
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue  # checked above, against the class's own bases
            if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                continue  # likewise
            owner = None
            if isinstance(base, ast.Name):
                owner = getattr(module, base.id, None) or _tdrl_classes().get(base.id)
            if inspect.isclass(owner) and owner.__module__.startswith("tdrl"):
                if node.attr in _tdrl_private_names(owner):
                    continue
            elif inspect.ismodule(owner) and owner.__name__.startswith("tdrl"):
                continue
            elif owner is None and node.attr in _all_tdrl_private_names():
                continue  # e.g. self._storage._empty: a name tdrl's own classes define (the check's blind spot)
            if node.attr in everywhere:
                out.append(where(node))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in _FOREIGN_ROOTS:
            if any(_private(part) for part in node.module.split(".")) or any(_private(a.name) for a in node.names):
                out.append(where(node))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in everywhere:
            out.append(where(node))  # getattr(x, "_name"), x.__dict__["_name"]
    return out


def test_no_module_but_compat_touches_a_private_name_of_tensordict_or_torch():
    files = [p for p in TDRL.rglob("*.py") if p.name != "_compat.py"]
    assert len(files) > 50
    found = [v for path in sorted(files) for v in _violations(path)]
    assert not found, "private names of tensordict/torch outside tdrl/_compat.py:\n" + "\n".join(found)


def test_the_private_name_check_finds_what_it_is_meant_to(tmp_path, monkeypatch):
    # the check itself is tested: a module that reaches into a TensorDict and a module is flagged
    package = tmp_path / "tdrl_probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text(
        "import torch\n"
        "from tensordict import TensorDict\n"
        "def f(td, module):\n"
        "    x = td._tensordict\n"
        "    y = module._forward_hooks\n"
        "    z = getattr(td, '_batch_size')\n"
        "    return torch._foreach_add_\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = _violations(package / "bad.py", package)
    assert len(found) == 4, found


def test_parameter_slots_swap_what_the_module_computes_with_and_fill_slots_restores():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    net.register_buffer("scale", torch.ones(1))
    x = torch.randn(4, 2)
    slots = _compat.parameter_slots(net, ["0.weight", "2.bias", "scale"])
    assert slots is not None
    new = [torch.zeros(3, 2), torch.full((1,), 5.0), torch.zeros(1)]
    expected = nn.functional.linear(torch.relu(net[0].bias.expand(4, 3)), net[2].weight, new[1])
    before = net(x)
    saved = _compat.fill_slots(slots, new)
    assert net[0].weight is new[0]
    assert net.scale is new[2]
    torch.testing.assert_close(net(x), expected)
    _compat.fill_slots(slots, saved)
    torch.testing.assert_close(net(x), before)
    assert isinstance(net[0].weight, nn.Parameter)


def test_parameter_slots_is_none_for_a_name_that_is_no_parameter():
    net = nn.Sequential(nn.Linear(2, 3))
    assert _compat.parameter_slots(net, ["0.missing"]) is None
    assert _compat.parameter_slots(net, ["5.weight"]) is None


def test_module_call_checks_see_hooks_and_compiled_modules():
    layer = nn.Linear(2, 2)
    assert _compat.module_call_is_forward(layer)
    assert not _compat.global_module_hooks()
    for register in (
        layer.register_forward_hook,
        layer.register_forward_pre_hook,
        layer.register_full_backward_hook,
        layer.register_full_backward_pre_hook,
    ):
        handle = register(lambda *args: None)
        assert not _compat.module_call_is_forward(layer), register.__name__
        handle.remove()
    assert _compat.module_call_is_forward(layer)
    handle = nn.modules.module.register_module_forward_pre_hook(lambda *args: None)
    assert _compat.global_module_hooks()
    handle.remove()
    assert not _compat.global_module_hooks()
