"""``step_and_maybe_reset`` computes its NextObservationDelta layout once per spec or transform change."""

from __future__ import annotations

from unittest import mock

from tdrl.envs import TransformedEnv
from tdrl.envs.transforms import NextObservationDelta, next_obs
from tdrl.testing import CountingEnv


def _step(env):
    return env.step_and_maybe_reset(env.rand_action(env.reset()))


def test_the_layout_is_computed_once_and_follows_an_appended_transform():
    env = TransformedEnv(CountingEnv())
    with mock.patch.object(next_obs, "_delta_layout", wraps=next_obs._delta_layout) as layout:
        for _ in range(4):
            out, root = _step(env)
        assert layout.call_count == 1
    assert ("next", "observation") in out.keys(True, True)
    env.append_transform(NextObservationDelta(["observation"]))  # a transform change: the layout is rebuilt
    out, root = _step(env)
    assert ("next", "observation") not in out.keys(True, True)
    assert ("next", "delta", "observation") in out.keys(True, True)
    assert "delta" not in root.keys()
