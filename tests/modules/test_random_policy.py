"""RandomPolicy: one class at TorchRL's import paths, leaf and Composite specs, a spec filled in later."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.collectors import Collector
from tdrl.modules import RandomPolicy
from tdrl.specs import Bounded, Categorical, Composite, OneHot
from tdrl.testing import ContinuousActionMock, CountingEnv


def test_one_class_at_every_torchrl_path():
    import tdrl.collectors
    import tdrl.collectors.utils
    import tdrl.envs.utils
    import tdrl.modules
    import tdrl.modules.exploration

    classes = {
        tdrl.modules.RandomPolicy,
        tdrl.modules.exploration.RandomPolicy,
        tdrl.envs.utils.RandomPolicy,
        tdrl.collectors.RandomPolicy,
        tdrl.collectors.utils.RandomPolicy,
    }
    assert len(classes) == 1
    assert "RandomPolicy" in tdrl.modules.__all__
    assert "RandomPolicy" in tdrl.collectors.__all__


def test_leaf_spec_writes_in_bounds_actions_under_action_key():
    spec = Bounded(-2.0, 3.0, shape=(4,))
    policy = RandomPolicy(spec, action_key="act")
    draws = torch.stack([policy(TensorDict())["act"] for _ in range(200)])
    assert draws.shape == (200, 4)
    assert spec.is_in(draws[0])
    assert ((draws >= -2) & (draws <= 3)).all()
    assert draws.std(0).min() > 0.5  # uniform on [-2, 3] has std 1.44: not a constant


def test_composite_spec_writes_every_leaf():
    spec = Composite(action=Categorical(3), nested=Composite(other=OneHot(2)))
    td = RandomPolicy(spec)(TensorDict())
    assert Categorical(3).is_in(td["action"])
    assert OneHot(2).is_in(td["nested", "other"])


def test_the_policy_keeps_its_own_copy_of_the_spec():
    spec = Bounded(-1.0, 1.0, shape=(2,))
    policy = RandomPolicy(spec)
    assert policy.action_spec is not spec
    assert policy.action_spec == spec


def test_spec_left_out_is_filled_by_a_collector():
    env = ContinuousActionMock()
    collector = Collector(env, RandomPolicy(), frames_per_batch=6, total_frames=6)
    batch = next(iter(collector))
    assert env.action_spec.is_in(batch["action"][0])
    assert batch["action"].shape[0] == 6


def test_set_action_spec_from_env_keeps_a_spec_already_set():
    own = Categorical(7, shape=(1,))
    policy = RandomPolicy(own)
    policy.set_action_spec_from_env(CountingEnv())
    assert policy.action_spec == own
    lazy = RandomPolicy()
    lazy.set_action_spec_from_env(CountingEnv())
    assert lazy.action_spec == CountingEnv().full_action_spec


def test_a_policy_without_spec_says_how_to_give_one():
    with pytest.raises(RuntimeError, match=r"no action spec.*RandomPolicy\(env.action_spec\)"):
        RandomPolicy()(TensorDict())
    with pytest.raises(TypeError, match="TensorSpec or Composite, got dict"):
        RandomPolicy({"action": Categorical(2)})  # type: ignore[arg-type]


def test_same_draws_as_torchrl_under_the_same_seed():
    trl_specs = pytest.importorskip("torchrl.data")
    trl_modules = pytest.importorskip("torchrl.modules")
    low, high = torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([1.0, 5.0, 3.0])
    torch.manual_seed(3)
    ours = RandomPolicy(Bounded(low, high, shape=(3,)))(TensorDict())["action"]
    torch.manual_seed(3)
    theirs = trl_modules.RandomPolicy(trl_specs.Bounded(low, high, shape=(3,)))(TensorDict())["action"]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_action_mask_beside_the_action_restricts_the_draws():
    policy = RandomPolicy(Composite({"team": Composite({"action": Categorical(5, shape=(2,))}, shape=(2,))}))
    mask = torch.tensor([[False, False, True, False, True], [True, False, False, False, False]])
    td = TensorDict({"team": TensorDict({"action_mask": mask}, [2])})
    assert policy.reads_masks(td)
    draws = torch.stack([policy(td.clone())["team", "action"] for _ in range(100)])
    assert set(draws[:, 0].tolist()) == {2, 4}
    assert set(draws[:, 1].tolist()) == {0}
    # without a mask in the input, every value is drawn again (the spec's own mask, none here)
    free = torch.stack([policy(TensorDict())["team", "action"] for _ in range(200)])
    assert set(free[:, 0].tolist()) == {0, 1, 2, 3, 4}
    assert not policy.reads_masks(TensorDict())


def test_one_hot_action_mask_and_the_specs_own_mask_as_fallback():
    own = torch.tensor([True, True, False])
    policy = RandomPolicy(OneHot(3, mask=own))
    step_mask = torch.tensor([False, False, True])
    assert {int(policy(TensorDict(action_mask=step_mask))["action"].long().argmax()) for _ in range(20)} == {2}
    assert {int(policy(TensorDict())["action"].long().argmax()) for _ in range(100)} == {0, 1}
