"""MarlGroupMapType and check_marl_grouping: TorchRL's group maps of multi-agent envs."""

from __future__ import annotations

import pytest

from tdrl.envs import MarlGroupMapType, check_marl_grouping
from tdrl.envs import utils as env_utils

NAMES = ["agent_0", "agent_1", "adversary_0"]


def test_ready_made_group_maps():
    assert env_utils.MarlGroupMapType is MarlGroupMapType
    assert MarlGroupMapType.ALL_IN_ONE_GROUP.get_group_map(NAMES) == {"agents": NAMES}
    per_agent = MarlGroupMapType.ONE_GROUP_PER_AGENT.get_group_map(NAMES)
    assert per_agent == {name: [name] for name in NAMES}
    for grouping in MarlGroupMapType:
        check_marl_grouping(grouping.get_group_map(NAMES), NAMES)


def test_a_hand_written_group_map_is_accepted():
    check_marl_grouping({"agent": ["agent_0", "agent_1"], "adversary": ["adversary_0"]}, NAMES)


@pytest.mark.parametrize(
    ("group_map", "names", "match"),
    [
        ({"agents": []}, [], "no agents"),
        ({"agents": ["a", "a"]}, ["a", "a"], r"unique; \['a'\]"),
        ({"x": ["a"], "y": ["b"], "z": ["a"]}, ["a", "b"], "3 groups for 2 agents"),
        ({"x": [], "y": ["a", "b"]}, ["a", "b"], "group 'x' is empty"),
        ({"x": ["a", "c"]}, ["a", "b"], "agent 'c', which is not in the env"),
        ({"x": ["a"], "y": ["a", "b"]}, ["a", "b"], "in groups 'x' and 'y'"),
        ({"x": ["a"]}, ["a", "b"], "agent 'b' is in no group"),
    ],
)
def test_bad_group_maps_say_what_is_wrong(group_map, names, match):
    with pytest.raises(ValueError, match=match):
        check_marl_grouping(group_map, names)


def test_same_verdicts_as_torchrl():
    torchrl_utils = pytest.importorskip("torchrl.envs.utils")
    cases = [
        ({"agents": NAMES}, NAMES),
        ({"x": ["agent_0"], "y": ["agent_1", "adversary_0"]}, NAMES),
        ({"x": ["agent_0"]}, NAMES),
        ({"x": ["agent_0"], "y": ["agent_0"]}, ["agent_0"]),
        ({"x": []}, ["agent_0"]),
    ]
    for group_map, names in cases:
        outcomes = []
        for check in (check_marl_grouping, torchrl_utils.check_marl_grouping):
            try:
                check(group_map, names)
                outcomes.append(True)
            except ValueError:
                outcomes.append(False)
        assert outcomes[0] == outcomes[1], group_map
    for ours, theirs in zip(MarlGroupMapType, torchrl_utils.MarlGroupMapType):
        assert ours.name == theirs.name
        assert ours.value == theirs.value
        assert ours.get_group_map(NAMES) == theirs.get_group_map(NAMES)
