"""The API reference covers the whole public API, each object once (without running Sphinx).

``docs/_ext/tdrl_apigen.py`` writes the API pages from the ``__all__`` lists at every docs
build; these tests run it in-process into a temporary folder and read what it wrote.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^\.\. (?:auto(?:class|exception|function)|py:data):: (\w+)$", re.MULTILINE)


def _apigen():
    spec = importlib.util.spec_from_file_location("tdrl_apigen", ROOT / "docs" / "_ext" / "tdrl_apigen.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _public_modules_on_disk() -> dict[str, bool]:
    """Every module of the tdrl source tree without an underscore part: {name: is_package}."""
    found = {}
    for path in sorted((ROOT / "tdrl").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        if not any(part.startswith("_") for part in parts):
            found[".".join(parts)] = is_package
    return found


@pytest.fixture(scope="module")
def apigen():
    return _apigen()


@pytest.fixture(scope="module")
def model(apigen):
    return apigen.build_model()


@pytest.fixture(scope="module")
def pages(apigen, model, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("api")
    apigen.write(out, apigen.render(model))
    return {p.stem: p.read_text() for p in out.glob("*.rst")}


def test_every_public_module_defines_all():
    missing = [name for name in _public_modules_on_disk() if not hasattr(importlib.import_module(name), "__all__")]
    assert not missing, f"public modules without __all__ (the API docs skip them): {missing}; add __all__ or a _name"


def test_the_generator_finds_every_public_module(apigen):
    assert sorted(apigen.discover()) == sorted(_public_modules_on_disk())


def test_every_package_and_every_module_with_names_of_its_own_has_a_page(model, pages):
    on_disk = _public_modules_on_disk()
    for name, is_package in on_disk.items():
        module = importlib.import_module(name)
        parent = importlib.import_module(name.rpartition(".")[0]) if "." in name else None
        own_names = [n for n in module.__all__ if parent is None or getattr(parent, n, None) is not getattr(module, n)]
        if is_package or own_names or not module.__all__:
            assert name in pages, f"{name} has no API page"
    assert set(model.pages) == set(pages) - {"index"}
    assert re.findall(r"^   (tdrl\S*)$", pages["index"], re.MULTILINE) == model.pages


def test_every_public_name_is_documented_once_and_linked_from_every_page_listing_it(model, pages):
    documented = {page: DIRECTIVE.findall(text) for page, text in pages.items()}
    for page, names in documented.items():
        assert len(names) == len(set(names)), f"{page} documents a name twice"
    for module_name in _public_modules_on_disk():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            path = f"{module_name}.{name}"
            entry = model.entry_for(path)
            obj = getattr(module, name)
            if entry.kind == "module":
                assert entry.page in pages
                assert obj.__name__ == entry.page
            else:
                assert entry.name in documented[entry.page], f"{path}: not documented on {entry.page}"
                assert getattr(importlib.import_module(entry.page), entry.name) is obj
            if path != entry.path:
                if module_name in pages:  # a page that re-exports it links to where it is documented
                    assert f"   * - ``{name}``\n     - :{_role(entry.kind)}:`{entry.path}`" in pages[module_name]
                if entry.kind != "module":  # and the documented entry lists this import path
                    assert f"``{path}``" in pages[entry.page], f"{path} not listed under {entry.path}"


def _role(kind: str) -> str:
    return {"class": "class", "exception": "exc", "function": "func", "data": "data", "module": "mod"}[kind]


def test_no_object_is_documented_under_two_names(pages):
    seen = {}
    for page, text in pages.items():
        if page == "index":
            continue
        for name in DIRECTIVE.findall(text):
            obj = getattr(importlib.import_module(page), name)
            if isinstance(obj, (str, tuple, int, float)):  # constants: equal values may be one object
                continue
            assert id(obj) not in seen, f"{page}.{name} is documented as {seen[id(obj)]} too"
            seen[id(obj)] = f"{page}.{name}"


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("tdrl.envs.TransformedEnv", "tdrl.envs.transforms.TransformedEnv"),
        ("tdrl.envs.transforms.env.TransformedEnv", "tdrl.envs.transforms.TransformedEnv"),
        ("tdrl.envs.GymEnv", "tdrl.envs.libs.gym.GymEnv"),
        ("tdrl.envs.libs.GymEnv", "tdrl.envs.libs.gym.GymEnv"),
        ("tdrl.data.Bounded", "tdrl.specs.Bounded"),
        ("tdrl.specs.BoundedTensorSpec", "tdrl.specs.Bounded"),
        ("tdrl.collectors.Collector", "tdrl.collectors.SyncDataCollector"),
        ("tdrl.data.ReplayBuffer", "tdrl.data.replay_buffers.ReplayBuffer"),
        ("tdrl.envs.ExplorationType", "tdrl.envs.utils.ExplorationType"),
        ("tdrl.modules.NormalParamExtractor", "tdrl.modules.distributions.NormalParamExtractor"),
        ("tdrl.modules.actors.LOG_PROB_KEY", "tdrl.modules.LOG_PROB_KEY"),
        ("tdrl.objectives.value.functional", "tdrl.objectives.value.functional"),
    ],
)
def test_an_object_is_documented_in_the_package_that_owns_it(model, path, canonical):
    assert model.canonical[path] == canonical


def test_every_constant_has_a_docstring(apigen, model):
    constants = [e for e in model.entries if e.kind == "data"]
    assert constants
    for entry in constants:
        docs = [apigen.attribute_doc(model.modules[p.rpartition(".")[0]], p.rpartition(".")[2]) for p in entry.paths]
        assert any(docs), f"{entry.path} has no docstring under its assignment"


def test_cross_references_resolve_through_any_import_path(apigen, model):
    resolve = apigen.resolve
    assert resolve(model, "tdrl.envs.TransformedEnv") == "tdrl.envs.transforms.TransformedEnv"
    assert resolve(model, "PrioritizedSampler", "tdrl.data.replay_buffers") == (
        "tdrl.data.replay_buffers.samplers.PrioritizedSampler"
    )
    assert resolve(model, "LossModule.make_value_estimator", "tdrl.objectives") == (
        "tdrl.objectives.LossModule.make_value_estimator"
    )
    assert resolve(model, "Categorical", "tdrl.modules") == "tdrl.modules.distributions.Categorical"
    assert resolve(model, "Categorical", "tdrl.specs") == "tdrl.specs.Categorical"
    assert resolve(model, "NoSuchName", "tdrl.envs") is None


def test_internal_names_are_told_apart_from_typos(apigen):
    assert apigen.is_internal("tdrl.data.replay_buffers._layout.TensorLayout")
    assert apigen.is_internal("ShapeLike")  # a type alias in tdrl.specs.base
    assert not apigen.is_internal("tdrl.envs.NoSuchClass")
    assert not apigen.is_internal("train")  # a function, not a type: a reference to it must resolve


def test_pages_show_public_bases_and_only_tdrl_docstrings(apigen, model):
    from tdrl.envs import EnvBase
    from tdrl.envs.transforms import Compose
    from tdrl.modules import MLP
    from tdrl.modules.distributions import MaskedOneHotCategorical, OneHotCategorical
    from tdrl.testing import CountingEnv

    documented = {id(e.obj) for e in model.entries}
    assert apigen.public_bases(CountingEnv, documented) == [EnvBase]  # not the private _MockBase
    assert apigen.public_bases(MaskedOneHotCategorical, documented) == [OneHotCategorical]
    assert apigen.foreign_docstring(MLP.forward)  # would show nn.Module.forward's docstring
    assert not apigen.foreign_docstring(Compose.forward)  # shows Transform.forward's


def test_writing_removes_pages_of_modules_that_are_gone(apigen, tmp_path):
    (tmp_path / "tdrl.gone.rst").write_text("stale")
    apigen.write(tmp_path, {"index.rst": "x", "tdrl.rst": "y"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.rst", "tdrl.rst"]
