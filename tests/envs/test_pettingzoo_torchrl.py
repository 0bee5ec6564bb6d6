"""Differential tests: tdrl's PettingZooWrapper against TorchRL 0.14.1's on the same task, seed and actions.

Both wrap a fresh PettingZoo env built the same way; they must agree on the group map, on
every spec key with its shape and dtype, and, step after step with the same actions (drawn
from tdrl's masked action spec), on every entry either writes: observations, action masks,
agent masks, rewards, per-agent and root done flags, the global state.
"""

from __future__ import annotations

import warnings

import pytest
import torch

pytest.importorskip("pettingzoo")
pytest.importorskip("mpe2")
pytest.importorskip("torchrl")
from mpe2 import simple_spread_v3, simple_tag_v3
from torchrl.envs.libs.pettingzoo import PettingZooWrapper as TorchRLWrapper

from tdrl.envs import PettingZooWrapper
from tdrl.testing import relay_env


def _tictactoe():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pettingzoo.classic import tictactoe_v3
    return tictactoe_v3.env()


def _assert_same_entries(theirs, ours, where):
    assert sorted(map(str, theirs.keys(True, True))) == sorted(map(str, ours.keys(True, True))), where
    for key in theirs.keys(True, True):
        assert theirs[key].dtype == ours[key].dtype, (where, key)
        assert torch.equal(theirs[key], ours[key]), (where, key, theirs[key], ours[key])


CASES = {
    "tictactoe-aec": (_tictactoe, {"use_mask": True, "seed": 3}, 40),
    "spread-discrete": (lambda: simple_spread_v3.parallel_env(N=2, max_cycles=10), {"seed": 1}, 25),
    "spread-continuous": (
        lambda: simple_spread_v3.parallel_env(N=2, max_cycles=10, continuous_actions=True),
        {"seed": 1},
        25,
    ),
    "tag-two-groups": (
        lambda: simple_tag_v3.parallel_env(max_cycles=10),
        {"seed": 2, "use_mask": True, "return_state": True},
        25,
    ),
    "tag-one-hot": (lambda: simple_tag_v3.parallel_env(max_cycles=10), {"seed": 2, "categorical_actions": False}, 12),
    # agents that leave early: masks, done flags and zeros for the gone agent; info and action-mask paths
    "relay-leaving-agents": (lambda: relay_env(info_note=False), {"use_mask": True, "done_on_any": False}, 10),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_specs_and_rollout_as_torchrl(case):
    make, kwargs, steps = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchRL warns that it was tested with pettingzoo 1.24.3
        theirs = TorchRLWrapper(make(), **kwargs)
    ours = PettingZooWrapper(make(), **kwargs)
    assert ours.group_map == theirs.group_map
    for name in ("full_observation_spec", "full_action_spec", "full_reward_spec", "full_done_spec"):
        spec_theirs, spec_ours = getattr(theirs, name), getattr(ours, name)
        assert sorted(map(str, spec_theirs.keys(True, True))) == sorted(map(str, spec_ours.keys(True, True))), name
        for key in spec_theirs.keys(True, True):
            assert spec_theirs[key].shape == spec_ours[key].shape, (name, key)
            assert spec_theirs[key].dtype == spec_ours[key].dtype, (name, key)
    td_theirs, td_ours = theirs.reset(), ours.reset()
    _assert_same_entries(td_theirs, td_ours, "reset")
    episodes = 0
    for t in range(steps):
        ours.rand_action(td_ours)
        for group in ours.group_map:
            td_theirs[group, "action"] = td_ours[group, "action"].clone()
        td_theirs, td_ours = theirs.step(td_theirs), ours.step(td_ours)
        _assert_same_entries(td_theirs["next"], td_ours["next"], f"step {t}")
        if td_ours["next", "done"].item():
            episodes += 1
            td_theirs, td_ours = theirs.reset(), ours.reset()
            _assert_same_entries(td_theirs, td_ours, f"reset after step {t}")
        else:
            td_theirs, td_ours = td_theirs["next"].clone(), td_ours["next"].clone()
    assert episodes >= 1  # the comparison crossed an episode boundary
