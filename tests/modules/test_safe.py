"""SafeModule: TorchRL's spec-aware TensorDictModule (projection with safe=True)."""

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tdrl.modules import SafeModule
from tdrl.specs import Bounded, Composite, Unbounded


def test_safe_projects_each_output_with_a_spec_and_leaves_the_others():
    class Two(nn.Module):
        def forward(self, x):
            return 10 * x, 10 * x

    spec = Composite(a=Bounded(-1.0, 1.0, shape=(3,)))
    module = SafeModule(Two(), in_keys=["x"], out_keys=["a", "b"], spec=spec, safe=True)
    td = module(TensorDict({"x": torch.ones(4, 3)}, [4]))
    assert torch.equal(td["a"], torch.ones(4, 3))
    assert torch.equal(td["b"], torch.full((4, 3), 10.0))
    assert set(module.spec.keys()) == {"a"}


def test_unsafe_module_writes_what_the_network_gives_and_keeps_its_spec():
    spec = Bounded(-1.0, 1.0, shape=(3,))
    module = SafeModule(nn.Identity(), in_keys=["x"], out_keys=["y"], spec=spec)
    td = module(TensorDict({"x": torch.full((3,), 5.0)}, []))
    assert torch.equal(td["y"], torch.full((3,), 5.0))
    assert module.spec["y"] == spec


def test_bad_specs_are_refused_naming_the_fix():
    with pytest.raises(ValueError, match="safe=True"):
        SafeModule(nn.Identity(), in_keys=["x"], out_keys=["y"], safe=True)
    with pytest.raises(ValueError, match="Composite keyed by out key"):
        SafeModule(nn.Identity(), in_keys=["x"], out_keys=["y", "z"], spec=Unbounded(3))
    with pytest.raises(ValueError, match="not out_keys"):
        SafeModule(nn.Identity(), in_keys=["x"], out_keys=["y"], spec=Composite(w=Unbounded(3)))
    with pytest.raises(TypeError, match="TensorSpec"):
        SafeModule(nn.Identity(), in_keys=["x"], out_keys=["y"], spec="bounded")


def test_same_outputs_as_torchrl():
    torchrl_modules = pytest.importorskip("torchrl.modules")
    from torchrl.data import Bounded as TBounded

    torch.manual_seed(0)
    net = nn.Linear(5, 3)
    ours = SafeModule(net, in_keys=["obs"], out_keys=["action"], spec=Bounded(-1.0, 1.0, shape=(3,)), safe=True)
    theirs = torchrl_modules.SafeModule(
        net, in_keys=["obs"], out_keys=["action"], spec=TBounded(-1.0, 1.0, shape=(3,)), safe=True
    )
    obs = torch.randn(6, 5) * 100
    a = ours(TensorDict({"obs": obs}, [6]))["action"]
    b = theirs(TensorDict({"obs": obs}, [6]))["action"]
    torch.testing.assert_close(a, b)
    assert a.abs().max() <= 1.0
