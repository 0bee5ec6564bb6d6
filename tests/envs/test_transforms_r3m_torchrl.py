"""Differential tests against TorchRL 0.14.1: R3MTransform and VIPTransform.

With the same weights (tdrl's state_dict loaded into TorchRL's transform, which also proves
the two pipelines have the same layout and parameter names), the same frames give the
same embeddings and specs, in eval and in train mode, and the same published-checkpoint
file loads into the same network. TorchRL builds its ResNets with torchvision, so these
tests need torchvision as well as TorchRL; they skip without either.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from tensordict import TensorDict

torchrl = pytest.importorskip("torchrl")

_SIZE = 16
_KEEP: list = []  # the operator declarations below live as long as their Library object


def _torchvision():
    """torchvision, or a skip.

    A torchvision wheel built for CUDA torch cannot load its C++ operators on a CPU-only torch
    (the case on PyPI for Linux), and its import then fails while registering a fake kernel
    for ``torchvision::nms``. Declaring the two operators it registers that way lets the rest
    of torchvision import; its models and ``resize``, all these tests use, are plain torch.
    """
    try:
        return importlib.import_module("torchvision")
    except ImportError as err:
        pytest.skip(f"TorchRL's R3M and VIP need torchvision ({err})")
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _KEEP.append(lib)
    return importlib.import_module("torchvision")


@pytest.fixture(scope="module")
def libs():
    _torchvision()
    import torchrl.envs as torchrl_envs

    import tdrl.envs as tdrl_envs

    return torchrl_envs, tdrl_envs


def _pair(libs, cls: str, *args, **kwargs):
    """tdrl's transform and TorchRL's, with tdrl's (random) weights in both."""
    theirs_lib, ours_lib = libs
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours = getattr(ours_lib, cls)(*args, **kwargs)
    theirs = getattr(theirs_lib, cls)(*args, **kwargs)
    # the same layout, parameter and buffer names (ObservationNorm's standard_normal flag
    # included): each side loads the other's state_dict strictly
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _frames(*shape):
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (*shape, 20, 24, 3), generator=gen, dtype=torch.uint8)


CASES = [
    ("R3MTransform", ("resnet18",), {"in_keys": ["pixels"]}),
    ("R3MTransform", ("resnet34",), {"in_keys": ["pixels"], "out_keys": ["embedding"]}),
    ("R3MTransform", ("resnet50",), {"in_keys": ["pixels"], "tensor_pixels_keys": ["raw"]}),
    ("R3MTransform", ("resnet18",), {"in_keys": ["wrist", "pixels"]}),
    ("R3MTransform", ("resnet18",), {"in_keys": ["pixels", "wrist"], "stack_images": False}),
    ("VIPTransform", ("resnet50",), {}),
    ("VIPTransform", ("resnet50",), {"in_keys": ["pixels", "wrist"]}),
]


def _data(kwargs, batch):
    keys = kwargs.get("in_keys", ["pixels"])
    return TensorDict({key: _frames(*batch) + i for i, key in enumerate(keys)}, batch)


def _assert_same_entries(ours, theirs):
    assert set(ours.keys(True, True)) == set(theirs.keys(True, True))
    for key in ours.keys(True, True):
        a, b = ours[key], theirs[key]
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{key!r} differs from TorchRL's")


@pytest.mark.parametrize(("cls", "args", "kwargs"), CASES)
@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_same_embeddings_as_torchrl(libs, cls, args, kwargs, batch):
    ours, theirs = _pair(libs, cls, *args, size=_SIZE, **kwargs)
    data = _data(kwargs, batch)
    _assert_same_entries(ours(data.clone()), theirs(data.clone()))


@pytest.mark.parametrize(("cls", "args", "kwargs"), [CASES[0], CASES[2], CASES[5]])
def test_same_network_step_in_train_mode_as_torchrl(libs, cls, args, kwargs):
    """Batch statistics of a few small images are nearly degenerate, so train-mode batch-norm
    magnifies rounding differences upstream (tdrl's ObservationNorm rounds differently, by
    1e-7) to 1e-4: the network steps are compared on the same normalized images."""
    ours, theirs = _pair(libs, cls, *args, size=_SIZE, **kwargs)
    ours.train()
    theirs.train()
    images = torch.randn(4, 3, _SIZE, _SIZE, generator=torch.Generator().manual_seed(2))
    key = kwargs.get("in_keys", ["pixels"])[0]
    data = TensorDict({key: images}, [4])
    _assert_same_entries(ours.network(data.clone()), theirs[-1](data.clone()))
    ours_stats, theirs_stats = ours.state_dict(), theirs.state_dict()
    for name, value in ours_stats.items():  # the running statistics were updated alike
        torch.testing.assert_close(value, theirs_stats[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(("cls", "args", "kwargs"), CASES)
def test_same_specs_as_torchrl(libs, cls, args, kwargs):
    import torchrl.data as theirs_specs

    import tdrl.specs as ours_specs

    ours, theirs = _pair(libs, cls, *args, size=_SIZE, **kwargs)
    keys = kwargs.get("in_keys", ["pixels"])
    specs = []
    for lib in (ours_specs, theirs_specs):
        pixels = {key: lib.Bounded(0, 255, shape=(2, 20, 24, 3), dtype=torch.uint8) for key in keys}
        specs.append(lib.Composite(pixels, shape=(2,)))
    empty = {name: ours_specs.Composite(shape=(2,)) for name in ("full_reward_spec", "full_done_spec")}
    output_spec = ours_specs.Composite(full_observation_spec=specs[0], **empty, shape=(2,))
    out_ours = ours.transform_output_spec(output_spec)["full_observation_spec"]
    out_theirs = theirs.transform_observation_spec(specs[1])
    assert set(out_ours.keys(True, True)) == set(out_theirs.keys(True, True))
    for key in out_ours.keys(True, True):
        assert out_ours[key].shape == out_theirs[key].shape, key
        assert out_ours[key].dtype == out_theirs[key].dtype, key


@pytest.mark.parametrize(
    ("cls", "model", "root", "filename"),
    [("R3MTransform", "resnet18", "r3m", "r3m_18.pt"), ("VIPTransform", "resnet50", "vip", "model.pt")],
)
def test_published_checkpoint_layout_loads_as_in_torchrl(libs, tmp_path, cls, model, root, filename):
    theirs_lib, ours_lib = libs
    source = getattr(ours_lib, cls)(model, ["pixels"], size=_SIZE).network.convnet
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.05)
    entries = {f"module.convnet.{k}": v for k, v in source.state_dict().items()}
    entries["module.lang_enc.weight"] = torch.zeros(2)
    torch.save({root: entries}, tmp_path / filename)
    kwargs = {"in_keys": ["pixels"], "size": _SIZE, "download": True, "download_path": str(tmp_path)}
    ours = getattr(ours_lib, cls)(model, **kwargs)
    theirs = getattr(theirs_lib, cls)(model, **kwargs)
    data = _data({}, (2,))
    _assert_same_entries(ours(data.clone()), theirs(data.clone()))


def test_torchvision_weights_load_as_in_torchrl(libs, monkeypatch):
    """``download="IMAGENET1K_V1"``: torchvision's ImageNet backbone (its classifier dropped), as TorchRL.

    The weights file is replaced by a fixed state dict (no network here)."""
    models = _torchvision().models
    theirs_lib, ours_lib = libs
    with torch.random.fork_rng():
        torch.manual_seed(3)
        imagenet = models.resnet18().state_dict()

    def offline_weights(self, *args, **kwargs):
        return imagenet

    monkeypatch.setattr(type(models.ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline_weights)
    ours = ours_lib.R3MTransform("resnet18", ["pixels"], size=_SIZE, download="IMAGENET1K_V1")
    theirs = theirs_lib.R3MTransform("resnet18", ["pixels"], size=_SIZE, download="IMAGENET1K_V1")
    for name, value in ours.network.convnet.state_dict().items():
        assert torch.equal(value, imagenet[name]), name
    data = _data({}, (2,))
    _assert_same_entries(ours(data.clone()), theirs(data.clone()))
    with pytest.raises(ValueError, match=r"'IMAGENET9K' is not a torchvision ResNet18_Weights member"):
        ours_lib.R3MTransform("resnet18", ["pixels"], download="IMAGENET9K")
