"""RecallEnv: the cue is seen once, only the last action is rewarded, and a seeded env repeats itself."""

from __future__ import annotations

import pytest
import torch

from tdrl.envs import check_env_specs
from tdrl.testing import EnvContractTests, RecallEnv


class TestRecallEnv(EnvContractTests):
    def make_env(self):
        return RecallEnv(n_cues=3, delay=2)


class TestRecallEnvBatched(EnvContractTests):
    def make_env(self):
        return RecallEnv(n_cues=2, delay=4, batch_size=[5])


def _play(env: RecallEnv, answer) -> torch.Tensor:
    """One episode where the last action is ``answer(cue)``; returns the rewards ``[*B, T]``."""
    td = env.reset()
    cue = td["observation"][..., : env.n_cues].argmax(-1)
    rewards = []
    for t in range(env.delay + 1):
        action = answer(cue) if t == env.delay else torch.zeros_like(cue)
        td = env.step(td.set("action", action))
        rewards.append(td["next", "reward"].squeeze(-1))
        td = td["next"].clone()
    assert td["done"].all()
    return torch.stack(rewards, -1)


def test_only_the_cue_step_shows_the_cue_and_only_the_query_step_is_flagged():
    env = RecallEnv(n_cues=4, delay=3, batch_size=[6])
    env.set_seed(3)
    data = env.rollout(4)
    obs = data["observation"]
    assert (obs[:, 0, :4].sum(-1) == 1).all()
    assert (obs[:, 1:, :4] == 0).all()
    assert (obs[..., 4] == torch.tensor([0.0, 0.0, 0.0, 1.0])).all()
    # the query step looks the same whatever the cue: nothing to act on without memory
    assert (obs[:, -1] == obs[0, -1]).all()
    assert data["next", "terminated"].squeeze(-1).tolist() == [[False, False, False, True]] * 6


def test_the_last_action_earns_one_when_it_names_the_cue():
    env = RecallEnv(n_cues=3, delay=2, batch_size=[8])
    right = _play(env, lambda cue: cue)
    assert (right[:, -1] == 1).all()
    assert (right[:, :-1] == 0).all()
    wrong = _play(env, lambda cue: (cue + 1) % 3)
    assert (wrong == 0).all()


def test_a_seeded_env_repeats_its_cues_and_partial_resets_keep_the_others():
    a, b = RecallEnv(n_cues=5, delay=1, batch_size=[16]), RecallEnv(n_cues=5, delay=1, batch_size=[16])
    a.set_seed(7)
    b.set_seed(7)
    assert torch.equal(a.rollout(6, break_when_any_done=False)["observation"],
                       b.rollout(6, break_when_any_done=False)["observation"])  # fmt: skip
    td = a.reset()
    cues = td["observation"][:, :5].clone()
    mask = torch.zeros(16, 1, dtype=torch.bool)
    mask[3] = True
    td = a.reset(td.set("_reset", mask))
    assert torch.equal(td["observation"][:3, :5], cues[:3])
    assert torch.equal(td["observation"][4:, :5], cues[4:])
    check_env_specs(a)


@pytest.mark.parametrize(("kwargs", "match"), [({"n_cues": 1}, "n_cues must be an integer >= 2"),
                                               ({"delay": 0}, "delay must be an integer >= 1")])  # fmt: skip
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecallEnv(**kwargs)
