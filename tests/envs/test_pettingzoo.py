"""PettingZoo backend: groups, specs, AEC turns and action masks, done flags, seeding, errors, TorchRL parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")
mpe2 = pytest.importorskip("mpe2")
from mpe2 import simple_adversary_v3, simple_spread_v3, simple_tag_v3  # noqa: E402

from tdrl.envs import PettingZooEnv, PettingZooWrapper, check_env_specs, step_mdp  # noqa: E402
from tdrl.specs import Bounded, Categorical, OneHot  # noqa: E402
from tdrl.testing import EnvContractTests, relay_env  # noqa: E402


def _tictactoe():
    with warnings.catch_warnings():  # pettingzoo >= 1.27 warns on importing a task module
        warnings.simplefilter("ignore", DeprecationWarning)
        from pettingzoo.classic import tictactoe_v3
    return tictactoe_v3.env()


class _MultiAgentContract(EnvContractTests):
    """The env contract, with the two checks that assume one agent written for grouped entries."""

    def test_reset_matches_specs(self, env):
        td = env.reset()
        for key in env.full_observation_spec.keys(True, True):
            assert env.full_observation_spec[key].is_in(td.get(key)), key
        for key in env.done_keys:
            assert td.get(key).shape == env.full_done_spec[key].shape, key
            assert not td.get(key).any(), key

    def test_rollout_shape(self, env):
        ro = env.rollout(self.rollout_steps, break_when_any_done=False)
        assert ro.batch_size == (self.rollout_steps,)
        continues = ~ro["next", "done"][:-1, 0]
        for key in env.observation_keys:  # the root at t+1 is the next observation at t unless the episode ended
            now, before = ro.get(key)[1:][continues], ro.get(("next", key))[:-1][continues]
            assert torch.equal(now, before), key


class TestSpreadContract(_MultiAgentContract):
    def make_env(self):
        return PettingZooEnv("simple_spread_v3", parallel=True, N=2, max_cycles=4, seed=0)


class TestTagContinuousContract(_MultiAgentContract):
    def make_env(self):
        return PettingZooEnv("simple_tag_v3", parallel=True, continuous_actions=True, return_state=True, seed=0)


class TestTicTacToeContract(_MultiAgentContract):
    def make_env(self):
        return PettingZooWrapper(_tictactoe(), use_mask=True, seed=0)


def test_parallel_default_groups_by_name_prefix():
    env = PettingZooWrapper(simple_adversary_v3.parallel_env())
    assert env.group_map == {"adversary": ["adversary_0"], "agent": ["agent_0", "agent_1"]}
    assert env.full_observation_spec["adversary", "observation"].shape == (1, 8)
    assert env.full_observation_spec["agent", "observation"].shape == (2, 10)
    td = env.rand_step(env.reset())
    assert td["next", "agent", "reward"].shape == (2, 1)
    assert td["next", "agent", "done"].shape == (2, 1)
    assert td["next", "done"].shape == (1,)


def test_aec_default_is_one_group_per_agent_and_mask_follows_turns():
    env = PettingZooWrapper(_tictactoe(), use_mask=True, seed=0)
    assert env.group_map == {"player_1": ["player_1"], "player_2": ["player_2"]}
    td = env.reset()
    turns = []
    for _ in range(4):
        turns.append((bool(td["player_1", "mask"]), bool(td["player_2", "mask"])))
        td = env.step(env.rand_action(td))["next"].clone()
    assert turns == [(True, False), (False, True), (True, False), (False, True)]


def test_group_map_of_uneven_agents_is_refused_at_construction():
    agents = simple_tag_v3.parallel_env().possible_agents
    with pytest.raises(ValueError, match=r"group 'all'.*different observation spaces"):
        PettingZooWrapper(simple_tag_v3.parallel_env(), group_map={"all": agents})


def test_group_map_premade_object_is_asked_for_the_map():
    class OneGroupPerAgent:  # the duck type of MarlGroupMapType
        def get_group_map(self, agent_names):
            return {name: [name] for name in agent_names}

    env = PettingZooWrapper(simple_spread_v3.parallel_env(N=2), group_map=OneGroupPerAgent())
    assert env.group_map == {"agent_0": ["agent_0"], "agent_1": ["agent_1"]}
    check_env_specs(env)


@pytest.mark.parametrize(
    ("group_map", "match"),
    [
        ({"agent": ["agent_0"]}, r"leaves out agents \['agent_1'\]"),
        ({"a": ["agent_0", "agent_1"], "b": ["agent_1"]}, "agent 'agent_1' is in groups 'a' and 'b'"),
        ({"agent": ["agent_0", "agent_1", "agent_7"]}, "names agent 'agent_7'"),
        ({"agent": ["agent_0", "agent_1"], "empty": []}, "group 'empty' of group_map has no agents"),
    ],
)
def test_bad_group_map_is_refused(group_map, match):
    with pytest.raises(ValueError, match=match):
        PettingZooWrapper(simple_spread_v3.parallel_env(N=2), group_map=group_map)


def test_action_specs_discrete_one_hot_and_continuous():
    discrete = PettingZooEnv("simple_spread_v3", parallel=True, N=3)
    assert discrete.full_action_spec["agent", "action"] == Categorical(5, shape=(3,))
    one_hot = PettingZooEnv("simple_spread_v3", parallel=True, N=3, categorical_actions=False)
    assert isinstance(one_hot.full_action_spec["agent", "action"], OneHot)
    assert one_hot.full_action_spec["agent", "action"].shape == (3, 5)
    continuous = PettingZooEnv("simple_spread_v3", parallel=True, N=3, continuous_actions=True)
    spec = continuous.full_action_spec["agent", "action"]
    assert isinstance(spec, Bounded)
    assert spec.shape == (3, 5)
    assert torch.equal(spec.space.low, torch.zeros(3, 5))
    assert torch.equal(spec.space.high, torch.ones(3, 5))
    for env in (discrete, one_hot, continuous):
        check_env_specs(env)


def test_matches_raw_pettingzoo_with_the_same_seed_and_actions():
    env = PettingZooEnv("simple_spread_v3", parallel=True, N=2, continuous_actions=True, seed=5)
    raw = simple_spread_v3.parallel_env(N=2, continuous_actions=True)
    raw.reset(seed=5)  # the wrapper's construction reset
    observations, _ = raw.reset()
    td = env.reset()
    for _ in range(6):
        expected = np.stack([observations[a] for a in ("agent_0", "agent_1")])
        assert torch.equal(td["agent", "observation"], torch.from_numpy(expected))
        td = env.rand_action(td)
        actions = {a: td["agent", "action"][i].numpy() for i, a in enumerate(("agent_0", "agent_1"))}
        observations, rewards, _, _, _ = raw.step(actions)
        td = env.step(td)
        reward = torch.tensor([[rewards["agent_0"]], [rewards["agent_1"]]], dtype=torch.float32)
        assert torch.equal(td["next", "agent", "reward"], reward)
        td = td["next"].clone()


def test_competitive_groups_get_their_own_rewards_and_episode_truncates():
    env = PettingZooEnv("simple_tag_v3", parallel=True, max_cycles=5, seed=1)
    rollout = env.rollout(10)
    assert rollout.batch_size == (5,)  # max_cycles steps, then every agent is truncated
    last = rollout[-1]["next"]
    for group in ("adversary", "agent"):
        assert last[group, "truncated"].all()
        assert not last[group, "terminated"].any()
    assert last["done"].item()
    assert last["truncated"].item()
    assert not last["terminated"].item()
    assert not rollout["next", "done"][:-1].any()
    # simple_tag's adversaries share one reward; the prey's reward is its own
    adversary, agent = rollout["next", "adversary", "reward"], rollout["next", "agent", "reward"]
    assert torch.equal(adversary[:, 0], adversary[:, 1])
    assert adversary.shape == (5, 3, 1)
    assert agent.shape == (5, 1, 1)


def test_tictactoe_random_masked_actions_are_always_legal():
    env = PettingZooWrapper(_tictactoe(), use_mask=True, seed=0)
    td = env.reset()
    games = steps = 0
    while games < 30:
        board = td["player_1", "observation", "observation"][0]  # [3, 3, 2]: marks of the player to see it
        empty = (board.sum(-1) == 0).reshape(9)
        player = "player_1" if td["player_1", "mask"].item() else "player_2"
        assert torch.equal(td[player, "action_mask"][0], empty)  # the mask is the set of empty cells
        marks_before = int(board.sum())
        td = env.step(env.rand_action(td))
        steps += 1
        action = td[player, "action"].item()
        assert empty[action], f"illegal move {action} on board {board.tolist()}"
        nxt = td["next"]
        # a legal move adds one mark (an illegal one ends the game with the board unchanged)
        assert int(nxt["player_1", "observation", "observation"].sum()) == marks_before + 1
        if nxt["done"].item():
            rewards = (nxt["player_1", "reward"].item(), nxt["player_2", "reward"].item())
            assert rewards in {(1.0, -1.0), (-1.0, 1.0), (0.0, 0.0)}  # a win or a draw, never a forfeit
            assert nxt["player_1", "done"].item()
            assert nxt["player_2", "done"].item()
            games += 1
            td = env.reset()
        else:
            td = nxt.clone()
    assert steps >= 30 * 5  # a game takes at least five moves


def test_action_mask_is_set_on_the_action_spec():
    env = PettingZooWrapper(_tictactoe(), use_mask=True, seed=0)
    td = env.rand_action(env.reset())  # every group's action is read; only player_1's is played
    td["player_1", "action"] = torch.tensor([4])
    td = env.step(td)["next"]
    spec = env.full_action_spec["player_2", "action"]
    assert torch.equal(spec.mask, td["player_2", "action_mask"])
    assert not spec.mask[0, 4]
    draws = torch.stack([spec.rand() for _ in range(200)])
    assert not (draws == 4).any()


def test_seeding_reproduces_rollouts_and_different_seeds_differ():
    def rollout(seed):
        env = PettingZooEnv("simple_spread_v3", parallel=True, N=2, seed=seed)
        torch.manual_seed(0)
        return env.rollout(8)

    a, b, c = rollout(3), rollout(3), rollout(4)
    for key in a.keys(True, True):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["agent", "observation"], c["agent", "observation"])


def test_set_seed_restarts_the_episode_from_the_seed():
    env = PettingZooEnv("simple_spread_v3", parallel=True, N=2)
    env.set_seed(7)
    first = env.reset()["agent", "observation"]
    env.set_seed(7)
    assert torch.equal(env.reset()["agent", "observation"], first)


def test_available_envs_and_task_names():
    names = PettingZooEnv.available_envs
    assert "classic/tictactoe_v3" in names
    assert "mpe/simple_spread_v3" in names
    env = PettingZooEnv("mpe/simple_spread_v3", parallel=True, N=2)
    assert env.task_name == "mpe/simple_spread_v3"
    env = PettingZooEnv("tictactoe_v3", parallel=False, use_mask=True)
    assert env.task_name == "classic/tictactoe_v3"
    assert not env.parallel


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="use_mask=True"):
        PettingZooWrapper(_tictactoe())
    with pytest.raises(ValueError, match=r"unknown task 'simple_sprad_v3'.*simple_spread_v3"):
        PettingZooEnv("simple_sprad_v3", parallel=True)
    with pytest.raises(TypeError, match="ParallelEnv or AECEnv"):
        PettingZooWrapper(object())
    with pytest.raises(ValueError, match="no batch dims"):
        PettingZooWrapper(simple_spread_v3.parallel_env(), batch_size=[2])
    with pytest.raises(TypeError, match="unexpected arguments"):
        PettingZooWrapper(simple_spread_v3.parallel_env(), frame_skip=2)
    with pytest.raises(ValueError, match="return_state=False"):
        PettingZooWrapper(_tictactoe(), use_mask=True, return_state=True)


def test_done_on_any_false_waits_for_every_agent():
    env = PettingZooEnv("simple_spread_v3", parallel=True, N=2, max_cycles=3, done_on_any=False)
    rollout = env.rollout(5)
    assert rollout.batch_size == (3,)  # every agent is truncated together at max_cycles
    assert rollout["next", "done"][-1].item()


def test_stepping_after_the_episode_ended_says_to_reset():
    env = PettingZooEnv("simple_spread_v3", parallel=True, N=2, max_cycles=2)
    td = env.reset()
    for _ in range(2):
        td = env.step(env.rand_action(td))["next"].clone()
    assert td["done"].item()
    with pytest.raises(RuntimeError, match=r"episode is over.*env.reset\(\)"):
        env.step(env.rand_action(td))


def test_agents_that_leave_are_masked_and_done_and_infos_are_written():
    env = PettingZooWrapper(relay_env(), use_mask=True, done_on_any=False)
    assert env.group_map == {"runner": ["runner_0", "runner_1"]}
    spec = env.full_observation_spec["runner"]
    assert set(spec.keys(True, True)) == {"observation", "action_mask", "mask", ("info", "distance")}
    check_env_specs(env)
    rollout = env.rollout(10, policy=lambda td: td.set(("runner", "action"), torch.tensor([1, 1])))
    assert rollout.batch_size == (4,)  # the episode ends when the last agent does (done_on_any=False)
    nxt = rollout["next", "runner"]
    assert nxt["mask"].tolist() == [[True, True], [True, False], [True, False], [False, False]]
    assert nxt["done"][..., 0].tolist() == [[False, False], [False, True], [False, True], [True, True]]
    assert nxt["terminated"][..., 0].tolist() == [[False, False], [False, True], [False, True], [False, True]]
    # runner_1 left after step 2: it writes zeros from then on, not stale data
    assert nxt["observation"][:, 1].tolist() == [[1, 1], [2, 1], [0, 0], [0, 0]]
    assert nxt["reward"][:, 1, 0].tolist() == [1, 1, 0, 0]
    assert nxt["info", "distance"][:, 0].tolist() == [9, 8, 7, 6]
    assert rollout["runner", "action_mask"][0].tolist() == [[True, True, False]] * 2
    assert rollout["runner", "action_mask"][1].tolist() == [[True, True, True]] * 2
    assert not rollout["next", "done"][:-1].any()


def test_an_agent_leaving_without_use_mask_is_refused():
    env = PettingZooWrapper(relay_env(), done_on_any=False)
    td = env.reset()
    td = env.step(env.rand_action(td))["next"].clone()
    td = env.step(env.rand_action(td))["next"].clone()
    with pytest.raises(ValueError, match=r"agent 'runner_1' is no longer in the env.*use_mask=True"):
        env.step(env.rand_action(td))


def _replay(actions: dict):
    """A policy that writes the recorded actions of each group, one step after the other."""
    step = iter(range(10**6))

    def policy(td):
        t = next(step)
        for group, action in actions.items():
            td.set((group, "action"), action[t])
        return td

    return policy


@pytest.mark.parametrize("break_when_any_done", [False, True])
@pytest.mark.parametrize("continuous", [False, True])
def test_fast_rollout_equals_stepping_the_same_actions(continuous, break_when_any_done):
    def make():
        return PettingZooEnv("simple_tag_v3", parallel=True, max_cycles=4, continuous_actions=continuous, seed=3)

    env = make()
    assert env._rollout_fast(env.reset(), 2, False) is not None  # the policy-free rollout takes the fast path
    env = make()
    fast = env.rollout(11, break_when_any_done=break_when_any_done)  # crosses two resets when not breaking
    assert fast.batch_size == ((4,) if break_when_any_done else (11,))
    actions = {group: fast[group, "action"] for group in env.group_map}
    slow = make().rollout(11, policy=_replay(actions), break_when_any_done=break_when_any_done)
    assert set(fast.keys(True, True)) == set(slow.keys(True, True))
    for key in slow.keys(True, True):
        assert fast.get(key).dtype == slow.get(key).dtype, key
        assert torch.equal(fast.get(key), slow.get(key)), key
    if not break_when_any_done:  # the env goes on from where the fast rollout left it
        after = env.rollout(2, auto_reset=False, tensordict=step_mdp(fast[-1]), break_when_any_done=False)
        both = {group: torch.cat([fast[group, "action"], after[group, "action"]]) for group in env.group_map}
        reference = make().rollout(13, policy=_replay(both), break_when_any_done=False)
        assert torch.equal(after["next", "agent", "observation"], reference["next", "agent", "observation"][11:])


def test_fast_rollout_is_not_taken_where_it_does_not_apply():
    masked = PettingZooWrapper(_tictactoe(), use_mask=True, seed=0)  # AEC, action masks
    assert masked._rollout_fast(masked.reset(), 3, False) is None
    with_state = PettingZooEnv("simple_spread_v3", parallel=True, N=2, return_state=True, seed=0)
    assert with_state._rollout_fast(with_state.reset(), 3, False) is None
    spread = PettingZooEnv("simple_spread_v3", parallel=True, N=2, seed=0)
    extra = spread.reset().set("other", torch.zeros(1))  # a root entry the fast path does not carry
    assert spread._rollout_fast(extra, 3, False) is None


def _legal_moves_only(batch) -> int:
    """Checks every move played in ``batch`` against the mover's action mask; returns the number of moves."""
    moves = 0
    for player in ("player_1", "player_2"):
        acting = batch[player, "mask"][:, 0]
        action = batch[player, "action"][acting, 0]
        mask = batch[player, "action_mask"][acting, 0]
        assert mask.gather(-1, action[:, None]).all(), f"{player} played an illegal move"
        moves += int(acting.sum())
    # a forfeit (illegal move) ends a game with rewards -1/0; legal games end in (1, -1), (-1, 1) or (0, 0)
    ends = batch["next", "done"][:, 0]
    rewards = torch.stack([batch["next", p, "reward"][ends, 0, 0] for p in ("player_1", "player_2")], -1)
    assert all(tuple(r) in {(1.0, -1.0), (-1.0, 1.0), (0.0, 0.0)} for r in rewards.tolist())
    return moves


def test_collector_random_frames_follow_the_action_masks():
    from tdrl.collectors import SyncDataCollector

    env = PettingZooWrapper(_tictactoe(), use_mask=True, seed=0)
    # no policy: every frame is random
    collector = SyncDataCollector(env, None, frames_per_batch=120, total_frames=240)
    assert sum(_legal_moves_only(batch) for batch in collector) == 240
    collector.shutdown()

    def first_cell(td):  # a policy that always plays cell 0 (illegal once taken)
        for player in ("player_1", "player_2"):
            td.set((player, "action"), torch.zeros(1, dtype=torch.int64))
        return td

    env = PettingZooWrapper(_tictactoe(), use_mask=True, seed=1)
    collector = SyncDataCollector(env, first_cell, frames_per_batch=100, total_frames=200, init_random_frames=100)
    random_batch, policy_batch = list(collector)
    collector.shutdown()
    assert _legal_moves_only(random_batch) == 100
    assert (policy_batch["player_1", "action"] == 0).all()  # after init_random_frames the policy plays


def test_fast_rollout_stops_on_done_with_break_when_all_done():
    env = PettingZooEnv("simple_spread_v3", parallel=True, N=2, max_cycles=3, seed=0)
    rollout = env.rollout(10, break_when_any_done=False, break_when_all_done=True)
    assert rollout.batch_size == (3,)  # one env, no batch dims: all done is done
    assert rollout["next", "done"][-1].item()
