"""Shared fixtures: every test starts from the same torch RNG state and restores it after."""

from __future__ import annotations

import multiprocessing
import warnings

import pytest
import torch

# Importing torchrl (installed for the differential tests) switches the process-wide start
# method to "spawn" unless one is already fixed, after which every worker process a later
# test starts pays seconds of re-imports. Fixing the platform default here keeps it.
multiprocessing.get_start_method(allow_none=False)


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*out of date.*")
        yield
    torch.set_rng_state(state)
