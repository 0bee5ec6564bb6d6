"""What users install: the extras' names, the one version, the declared tensordict range."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import tensordict
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

import tdrl

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 685, as pip >= 23.3 compares extras


def test_extras_are_spelled_as_pip_normalizes_them():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "dm-control" in extras
    for name, requirements in extras.items():
        assert name == _normalized(name), f"extra {name!r}: write it {_normalized(name)!r}"
        for text in requirements:
            requirement = Requirement(text)
            for extra in requirement.extras:
                assert extra == _normalized(extra), f"{name}: {text!r} names the extra {extra!r}"
            if requirement.name == "tdrl":
                assert requirement.extras <= set(extras), f"{name}: {text!r} names an extra tdrl lacks"


def test_the_version_is_written_once_and_the_metadata_reads_it():
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tdrl.__version__"}
    assert importlib.metadata.version("tdrl") == tdrl.__version__


def test_the_license_is_an_spdx_expression_with_its_file():
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def _tensordict_range():
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        if requirement.name == "tensordict":
            return requirement.specifier
    pytest.fail("tensordict is not a dependency")


def test_the_installed_tensordict_is_inside_the_declared_range():
    specifier = _tensordict_range()
    assert Version(tensordict.__version__) in specifier, (tensordict.__version__, str(specifier))


def test_the_tensordict_range_is_closed_above_at_a_minor():
    upper = [s for s in _tensordict_range() if s.operator == "<"]
    assert len(upper) == 1, "give the next untested minor as an upper bound"
    assert Version(upper[0].version).micro == 0


def test_the_peers_range_sits_inside_the_declared_one():
    # the `compare` extra (TorchRL 0.14.1) narrows tensordict; it must stay a tested subset
    narrowed = next(
        Requirement(t).specifier
        for t in PYPROJECT["project"]["optional-dependencies"]["compare"]
        if Requirement(t).name == "tensordict"
    )
    for candidate in ("0.14.3", "0.14.9"):
        if Version(candidate) in narrowed:
            assert Version(candidate) in _tensordict_range()
