"""VMAS backend: specs, rollouts, partial resets, seeding, action encodings, groups, errors, TorchRL parity."""

from __future__ import annotations

import pytest
import torch

vmas = pytest.importorskip("vmas")

from tdrl.envs import check_env_specs  # noqa: E402
from tdrl.envs.libs.vmas import VmasEnv, VmasWrapper, _default_group_map  # noqa: E402
from tdrl.specs import Bounded, Categorical, OneHot, Unbounded  # noqa: E402
from tdrl.testing import EnvContractTests  # noqa: E402


class TestVmasContract(EnvContractTests):
    def make_env(self):
        return VmasEnv("navigation", num_envs=3, max_steps=3, seed=0, n_agents=2)


class TestVmasDiscreteContract(EnvContractTests):
    def make_env(self):
        return VmasEnv("balance", num_envs=2, continuous_actions=False, seed=0, n_agents=2)


def _raw_navigation(num_envs=4, **kwargs):
    return vmas.make_env("navigation", num_envs=num_envs, seed=0, n_agents=3, **kwargs)


def test_specs_follow_vmas_spaces():
    raw = _raw_navigation(max_steps=5)
    env = VmasWrapper(raw)
    assert env.batch_size == (4,)
    assert env.group_map == {"agents": ["agent_0", "agent_1", "agent_2"]}
    obs = env.full_observation_spec["agents", "observation"]
    assert isinstance(obs, Unbounded)
    assert obs.shape == (4, 3, raw.observation_space[0].shape[0])
    action = env.full_action_spec["agents", "action"]
    assert isinstance(action, Bounded)
    assert action.shape == (4, 3, 2)
    u_range = raw.agents[0].u_range
    assert torch.equal(action.space.high, torch.full((4, 3, 2), float(u_range)))
    assert env.full_reward_spec["agents", "reward"].shape == (4, 3, 1)
    assert sorted(env.done_keys) == ["done", "terminated"]
    info_keys = sorted(env.full_observation_spec["agents", "info"].keys())
    assert info_keys == sorted(raw.scenario.info(raw.agents[0]))
    check_env_specs(env)


def test_rollout_matches_raw_vmas_steps():
    """The same actions through tdrl and through VMAS's own step loop give the same observations and rewards."""
    env = VmasEnv("navigation", num_envs=4, seed=0, n_agents=3)
    actions = [env.full_action_spec["agents", "action"].rand() for _ in range(4)]
    env.set_seed(5)
    td = env.reset()
    ours = []
    for action in actions:
        td.set(("agents", "action"), action)
        td = env.step(td)
        ours.append(td["next"].clone())
        td = env._next_root(td)
    raw = _raw_navigation()
    raw.seed(5)
    raw.reset()
    for action, step in zip(actions, ours):
        obs, rews, dones, _ = raw.step(list(action.unbind(1)))
        assert torch.equal(step["agents", "observation"], torch.stack(obs, 1))
        assert torch.equal(step["agents", "reward"], torch.stack(rews, 1).unsqueeze(-1))
        assert torch.equal(step["done"], dones.unsqueeze(-1))


def test_max_steps_sets_done_and_terminated():
    env = VmasEnv("navigation", num_envs=2, max_steps=3, seed=0, n_agents=2)
    ro = env.rollout(7, break_when_any_done=False)
    done = ro["next", "done"].squeeze(-1)
    expected = torch.tensor([False, False, True, False, False, True, False]).expand(2, 7)
    assert torch.equal(done, expected)
    assert torch.equal(ro["next", "terminated"], ro["next", "done"])
    # the step after a done starts a new episode: its root is a fresh reset, not the last next observation
    assert not torch.equal(ro["agents", "observation"][:, 3], ro["next", "agents", "observation"][:, 2])


def test_rollout_stops_at_first_done():
    env = VmasEnv("navigation", num_envs=2, max_steps=3, seed=0, n_agents=2)
    assert env.rollout(10).batch_size == (2, 3)


def test_partial_reset_resets_only_flagged_envs():
    env = VmasEnv("navigation", num_envs=3, seed=0, n_agents=2)
    td = env.reset()
    for _ in range(3):
        td = env.rand_step(td)
        td = env._next_root(td)
    before = td["agents", "observation"].clone()
    td.set("_reset", torch.tensor([[False], [True], [False]]))
    out = env.reset(td)
    after = out["agents", "observation"]
    assert torch.equal(after[0], before[0])
    assert torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])
    # the reset sub-env is where a fresh reset puts it: its step counter restarted at 0
    assert env.env.steps.tolist() == [3.0, 0.0, 3.0]


def test_seeding_reproduces_rollouts_and_differs_across_seeds():
    def rollout(seed):
        env = VmasEnv("navigation", num_envs=2, seed=seed, n_agents=2)
        torch.manual_seed(0)
        return env.rollout(4)

    a, b, c = rollout(1), rollout(1), rollout(2)
    assert torch.equal(a["next", "agents", "observation"], b["next", "agents", "observation"])
    assert not torch.equal(a["agents", "observation"][:, 0], c["agents", "observation"][:, 0])
    # set_seed reseeds later resets, whatever the env was built with
    starts = []
    for built_with in (None, 7):
        env = VmasEnv("navigation", num_envs=2, n_agents=2, seed=built_with)
        assert env.set_seed(1) == 2
        starts.append(env.reset()["agents", "observation"])
    assert torch.equal(starts[0], starts[1])


def test_categorical_and_one_hot_actions_move_agents_alike():
    """Index k and the one-hot vector with a 1 at k are the same action."""
    cat = VmasEnv("navigation", num_envs=3, continuous_actions=False, seed=0, n_agents=2)
    hot = VmasEnv("navigation", num_envs=3, continuous_actions=False, categorical_actions=False, seed=0, n_agents=2)
    spec = cat.full_action_spec["agents", "action"]
    assert isinstance(spec, Categorical)
    assert spec.shape == (3, 2)
    assert spec.n == 9
    hot_spec = hot.full_action_spec["agents", "action"]
    assert isinstance(hot_spec, OneHot)
    assert hot_spec.shape == (3, 2, 9)
    index = torch.tensor([[1, 4], [8, 0], [3, 3]])
    outs = []
    for env, action in ((cat, index), (hot, torch.nn.functional.one_hot(index, 9))):
        env.set_seed(0)
        td = env.reset()
        td.set(("agents", "action"), action)
        outs.append(env.step(td)["next", "agents", "observation"])
    assert torch.equal(outs[0], outs[1])
    check_env_specs(hot)


def test_several_groups_route_actions_to_the_right_agents():
    env = VmasEnv("simple_adversary", num_envs=2, seed=0)
    assert env.group_map == {"adversary": ["adversary_0"], "agent": ["agent_0", "agent_1"]}
    assert sorted(env.action_keys) == [("adversary", "action"), ("agent", "action")]
    assert env.full_reward_spec["agent", "reward"].shape == (2, 2, 1)
    check_env_specs(env)
    # agents with different observation sizes cannot share a group
    with pytest.raises(ValueError, match=r"group 'all' do not share one observation spec.*ONE_GROUP_PER_AGENT"):
        VmasEnv("simple_adversary", num_envs=2, group_map={"all": ["agent_0", "adversary_0", "agent_1"]})


def test_regrouped_agents_get_their_own_actions_and_rewards():
    """Agents regrouped in another order receive their own actions: the data only moves to another entry."""
    default = VmasEnv("navigation", num_envs=2, seed=0, n_agents=3)
    regrouped = VmasEnv(
        "navigation", num_envs=2, seed=0, n_agents=3, group_map={"b": ["agent_2", "agent_0"], "a": ["agent_1"]}
    )
    action = default.full_action_spec["agents", "action"].rand()  # [2, 3 agents, 2]
    default.set_seed(0)
    td = default.reset()
    td.set(("agents", "action"), action)
    nxt = default.step(td)["next"]
    regrouped.set_seed(0)
    td = regrouped.reset()
    td.set(("b", "action"), action[:, [2, 0]])
    td.set(("a", "action"), action[:, [1]])
    nxt_regrouped = regrouped.step(td)["next"]
    for key in ("observation", "reward"):
        assert torch.equal(nxt_regrouped["b", key], nxt["agents", key][:, [2, 0]])
        assert torch.equal(nxt_regrouped["a", key], nxt["agents", key][:, [1]])


def test_premade_grouping_object_is_used():
    class OnePerAgent:
        def get_group_map(self, agent_names):
            return {name: [name] for name in agent_names}

    env = VmasEnv("navigation", num_envs=2, seed=0, n_agents=2, group_map=OnePerAgent())
    assert env.group_map == {"agent_0": ["agent_0"], "agent_1": ["agent_1"]}
    assert env.full_observation_spec["agent_1", "observation"].shape == (2, 1, 18)
    check_env_specs(env)


def test_default_group_map_follows_torchrl():
    assert _default_group_map(["agent_0", "agent_1"]) == {"agents": ["agent_0", "agent_1"]}
    assert _default_group_map(["good_0", "bad_0", "good_1"]) == {"good": ["good_0", "good_1"], "bad": ["bad_0"]}
    assert _default_group_map(["eve", "agent_0"]) == {"agents": ["eve", "agent_0"]}


@pytest.mark.parametrize(
    ("group_map", "match"),
    [
        ({"agents": ["agent_0"]}, "leaves out agents \\['agent_1'\\]"),
        ({"a": ["agent_0", "agent_1"], "b": ["agent_1"]}, "puts agent 'agent_1' in groups 'a' and 'b'"),
        ({"agents": ["agent_0", "agnet_1"]}, "did you mean 'agent_1'"),
        ({"done": ["agent_0", "agent_1"]}, "group name 'done'"),
        ({"agents": []}, "non-empty list"),
    ],
)
def test_bad_group_map_is_refused_with_the_problem(group_map, match):
    with pytest.raises(ValueError, match=match):
        VmasEnv("navigation", num_envs=2, n_agents=2, group_map=group_map)


def test_wrapper_errors_name_the_fix():
    raw = _raw_navigation(num_envs=2)
    with pytest.raises(TypeError, match=r"vmas\.make_env"):
        VmasWrapper(object())
    with pytest.raises(TypeError, match="needs env="):
        VmasWrapper()
    with pytest.raises(ValueError, match="batch size must be \\(2,\\)"):
        VmasWrapper(raw, batch_size=[3])
    with pytest.raises(ValueError, match="runs on cpu"):
        VmasWrapper(raw, device="meta")
    with pytest.raises(ValueError, match="from_pixels"):
        VmasWrapper(raw, from_pixels=True)
    with pytest.raises(ValueError, match="Did you mean \\['navigation'\\]"):
        VmasEnv("navigaton", num_envs=2)
    with pytest.raises(ValueError, match="dict_spaces"):
        VmasWrapper(_raw_navigation(num_envs=2, dict_spaces=True))


def test_action_outside_the_box_raises_value_error_with_the_fix():
    env = VmasEnv("navigation", num_envs=2, seed=0, n_agents=2)
    td = env.reset()
    td.set(("agents", "action"), torch.full((2, 2, 2), 5.0))
    with pytest.raises(ValueError, match="clamp_actions=True"):
        env.step(td)
    clamped = VmasEnv("navigation", num_envs=2, seed=0, n_agents=2, clamp_actions=True)
    td = clamped.reset()
    td.set(("agents", "action"), torch.full((2, 2, 2), 5.0))
    assert clamped.step(td)["next", "agents", "observation"].isfinite().all()


def test_terminated_truncated_adds_truncated():
    env = VmasEnv("navigation", num_envs=2, max_steps=2, seed=0, n_agents=2, terminated_truncated=True)
    assert sorted(env.done_keys) == ["done", "terminated", "truncated"]
    ro = env.rollout(2)
    assert ro["next", "truncated"][:, -1].all()
    assert not ro["next", "terminated"].any()
    check_env_specs(env)


def test_dict_observations_become_nested_keys():
    from vmas.scenarios.navigation import Scenario

    class DictObs(Scenario):
        def observation(self, agent):
            flat = super().observation(agent)
            return {"pos": flat[:, :2], "rest": flat[:, 2:]}

    env = VmasEnv(DictObs(), num_envs=2, seed=0, n_agents=2)
    assert env.full_observation_spec["agents", "observation", "pos"].shape == (2, 2, 2)
    check_env_specs(env)


def test_available_envs_lists_vmas_scenarios():
    assert "navigation" in VmasEnv.available_envs
    assert "simple_spread" in VmasWrapper.available_envs


def test_render_returns_a_frame():
    env = VmasEnv("navigation", num_envs=2, seed=0, n_agents=2)
    env.reset()
    try:
        frame = env.render(env_index=1)
    except RuntimeError as err:  # no OpenGL on this machine (the message names pyglet and Xvfb)
        pytest.skip(f"VMAS cannot render here: {err}")
    assert frame.dtype.name == "uint8"
    assert frame.ndim == 3
    assert frame.shape[-1] == 3
    with pytest.raises(ValueError, match="env_index=2"):
        env.render(env_index=2)
    env.close()


# --- differential test against TorchRL's VmasEnv --------------------------------------------------------------------
def _drive(env, actions, next_root):
    """Seeded reset, then the given actions; the resets in between are the env's own."""
    env.set_seed(3)
    td = env.reset()
    roots, nexts = [td.clone()], []
    for action in actions:
        for key, value in action.items():
            td.set(key, value.clone())
        td = env.step(td)
        nexts.append(td["next"].clone())
        td = next_root(env, td)
        roots.append(td.clone())
    return roots, nexts


def _torchrl_next_root(env, td):
    td = env.step_mdp(td)
    if td["done"].any():
        td.set("_reset", td["done"].clone())
        td = env.reset(td)
    return td


@pytest.mark.parametrize(
    ("scenario", "kwargs"),
    [
        ("navigation", {"n_agents": 3}),
        ("simple_adversary", {}),
        ("balance", {"continuous_actions": False}),
        ("navigation", {"continuous_actions": False, "categorical_actions": False}),
    ],
)
def test_matches_torchrl_vmas_env(scenario, kwargs):
    """Same scenario and seed as TorchRL 0.14.1: same spec keys, shapes, dtypes and classes, and the same data."""
    torchrl_vmas = pytest.importorskip("torchrl.envs.libs.vmas")
    ours = VmasEnv(scenario, num_envs=5, max_steps=4, seed=1, **kwargs)
    theirs = torchrl_vmas.VmasEnv(scenario, num_envs=5, max_steps=4, seed=1, **kwargs)
    assert ours.group_map == theirs.group_map
    assert ours.batch_size == theirs.batch_size
    for name in ("full_observation_spec", "full_action_spec", "full_reward_spec", "full_done_spec"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert sorted(map(str, a.keys(True, True))) == sorted(map(str, b.keys(True, True))), name
        for key in b.keys(True, True):
            assert (a[key].shape, a[key].dtype) == (b[key].shape, b[key].dtype), (name, key)
            assert type(a[key]).__name__ == type(b[key]).__name__.replace("Continuous", ""), (name, key)
            if isinstance(a[key], Bounded):
                assert torch.equal(a[key].space.low, b[key].space.low), (name, key)
                assert torch.equal(a[key].space.high, b[key].space.high), (name, key)
    actions = [{key: ours.full_action_spec[key].rand() for key in ours.action_keys} for _ in range(9)]
    our_roots, our_nexts = _drive(ours, actions, lambda env, td: env._next_root(td))
    their_roots, their_nexts = _drive(theirs, actions, _torchrl_next_root)
    for a, b in zip(our_nexts, their_nexts):
        assert sorted(map(str, a.keys(True, True))) == sorted(map(str, b.keys(True, True)))
        for key in b.keys(True, True):
            assert torch.equal(a[key], b[key]), key
    for a, b in zip(our_roots, their_roots):  # observations and flags of each step's input, resets included
        for key in [*ours.observation_keys, *ours.done_keys]:
            assert torch.equal(a[key], b[key]), key
