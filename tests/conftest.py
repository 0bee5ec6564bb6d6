"""Shared fixtures: every test starts from the same torch RNG state and restores it after."""

from __future__ import annotations

import warnings

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*out of date.*")
        yield
    torch.set_rng_state(state)
