"""R3MTransform and VIPTransform: the transform contract, specs, stacking, weights and errors.

Everything here runs without torchvision and without network: the ResNets are tdrl's own
and the published checkpoints are replaced by files of the same layout in torch.hub's
cache directory. The comparison with TorchRL's transforms is in test_transforms_r3m_torchrl.py.
"""

from __future__ import annotations

import re
import sys
import urllib.error

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import CatTensors, R3MTransform, TransformedEnv, VIPTransform
from tdrl.envs.transforms._resnet import resnet
from tdrl.envs.utils import check_env_specs
from tdrl.specs import Bounded, Composite
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv

_SIZE = 16  # the side the networks see: small, so that ResNet-50 stays fast


def _pixels_env(batch_size=(), second_camera: bool = False):
    env = TransformTestEnv(pixels=(12, 10), batch_size=batch_size)
    if second_camera:  # a second RGB entry: a copy of the first under another name
        return TransformedEnv(env, CatTensors(["pixels"], "wrist", del_keys=False))
    return env


def _exact(make):
    """``make()`` with the same random weights at each call (the contract builds the transform several
    times and compares), in float64: float32 convolutions round differently for different batch sizes
    (a whole rollout at once vs one step at a time), by ~1e-6, which the contract's tolerance sees."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return make().to(torch.float64)


class TestR3M(TransformContractTests):
    rollout_steps = 6

    def make_transform(self):
        return _exact(lambda: R3MTransform("resnet18", in_keys=["pixels"], size=_SIZE))

    def make_env(self):
        return _pixels_env()

    def make_batched_env(self):
        return _pixels_env(batch_size=[3])


class TestR3MKeepsRawFrames(TestR3M):
    def make_transform(self):
        return _exact(lambda: R3MTransform("resnet18", in_keys=["pixels"], size=_SIZE, tensor_pixels_keys=["raw"]))


class TestR3MStacked(TestR3M):
    def make_transform(self):
        return _exact(lambda: R3MTransform("resnet18", in_keys=["pixels", "wrist"], size=_SIZE))

    def make_env(self):
        return _pixels_env(second_camera=True)

    def make_batched_env(self):
        return _pixels_env(batch_size=[3], second_camera=True)


class TestR3MSeparate(TestR3MStacked):
    def make_transform(self):
        return _exact(lambda: R3MTransform("resnet18", in_keys=["pixels", "wrist"], size=_SIZE, stack_images=False))


class TestVIP(TestR3M):
    rollout_steps = 4

    def make_transform(self):
        return _exact(lambda: VIPTransform("resnet50", size=_SIZE))


@pytest.mark.parametrize(
    ("make", "key", "dim"),
    [
        (lambda: R3MTransform("resnet18", ["pixels"], size=_SIZE), "r3m_vec", 512),
        (lambda: R3MTransform("resnet34", ["pixels"], size=_SIZE), "r3m_vec", 512),
        (lambda: R3MTransform("resnet50", ["pixels"], size=_SIZE), "r3m_vec", 2048),
        (lambda: VIPTransform("resnet50", size=_SIZE), "vip_vec", 1024),
    ],
)
def test_embedding_spec_replaces_the_frames(make, key, dim):
    env = TransformedEnv(_pixels_env(batch_size=[2]), make())
    spec = env.observation_spec
    assert "pixels" not in spec.keys()
    assert spec[key].shape == (2, dim)
    assert spec[key].dtype == torch.float32
    out = env.rollout(2, break_when_any_done=False)
    assert out["next", key].shape == (2, 2, dim)
    assert "pixels" not in out["next"].keys()


def test_stacked_images_are_one_entry_in_sorted_key_order():
    frames = torch.randint(0, 256, (2, 12, 10, 3), dtype=torch.uint8)
    other = torch.randint(0, 256, (2, 12, 10, 3), dtype=torch.uint8)
    stacked = R3MTransform("resnet18", ["wrist", "pixels"], size=_SIZE)
    td = stacked(TensorDict({"pixels": frames, "wrist": other}, [2]))
    assert set(td.keys()) == {"r3m_vec"}
    single = R3MTransform("resnet18", ["pixels"], size=_SIZE)
    single.network.load_state_dict(stacked.network.state_dict())
    alone = [single(TensorDict({"pixels": x}, [2]))["r3m_vec"] for x in (frames, other)]
    torch.testing.assert_close(td["r3m_vec"], torch.cat(alone, -1))  # "pixels" < "wrist"


def test_separate_images_get_their_own_entries():
    frames = torch.randint(0, 256, (12, 10, 3), dtype=torch.uint8)
    r3m = R3MTransform("resnet18", ["pixels", "wrist"], size=_SIZE, stack_images=False)
    td = r3m(TensorDict({"pixels": frames, "wrist": frames.clone()}, []))
    assert set(td.keys()) == {"r3m_vec_0", "r3m_vec_1"}
    torch.testing.assert_close(td["r3m_vec_0"], td["r3m_vec_1"])


def test_embedding_is_the_resnet_on_normalized_resized_images():
    frames = torch.randint(0, 256, (2, 3, _SIZE, _SIZE, 3), dtype=torch.uint8)  # at the target size: no resize
    r3m = R3MTransform("resnet18", ["pixels"], size=_SIZE)
    out = r3m(TensorDict({"pixels": frames}, [2, 3]))["r3m_vec"]
    net = resnet("resnet18")
    net.fc = torch.nn.Identity()
    net.load_state_dict(r3m[-1].convnet.state_dict())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    images = (frames.permute(0, 1, 4, 2, 3).float() / 255 - mean) / std
    expected = net.eval()(images.flatten(0, 1)).view(2, 3, 512)
    torch.testing.assert_close(out, expected)


def test_gradients_flow_only_with_requires_grad():
    frames = torch.randint(0, 256, (2, 12, 10, 3), dtype=torch.uint8)
    frozen = R3MTransform("resnet18", ["pixels"], size=_SIZE)
    assert not frozen(TensorDict({"pixels": frames}, [2]))["r3m_vec"].requires_grad
    tuned = R3MTransform("resnet18", ["pixels"], size=_SIZE, requires_grad=True)
    tuned(TensorDict({"pixels": frames}, [2]))["r3m_vec"].sum().backward()
    assert tuned[-1].convnet.conv1.weight.grad is not None


def test_eval_by_default_train_uses_batch_statistics():
    r3m = R3MTransform("resnet18", ["pixels"], size=_SIZE)
    assert not r3m[-1].training
    frames = torch.randint(0, 256, (4, 12, 10, 3), dtype=torch.uint8)
    before = r3m[-1].convnet.bn1.running_mean.clone()
    r3m(TensorDict({"pixels": frames}, [4]))
    assert torch.equal(r3m[-1].convnet.bn1.running_mean, before)
    r3m.train()
    r3m(TensorDict({"pixels": frames}, [4]))
    assert not torch.equal(r3m[-1].convnet.bn1.running_mean, before)


def test_to_dtype_changes_the_embedding_spec():
    env = TransformedEnv(_pixels_env(), R3MTransform("resnet18", ["pixels"], size=_SIZE))
    r3m = env.transform
    assert r3m.device is None
    assert r3m.dtype is None
    r3m.to(torch.float64)
    assert r3m.dtype == torch.float64
    assert env.observation_spec["r3m_vec"].dtype == torch.float64
    check_env_specs(env)
    r3m.to("cpu")
    assert r3m.device == torch.device("cpu")


def _fake_checkpoint(path, root: str, net: torch.nn.Module) -> None:
    """A file laid out as the published ones: {root: {"module.convnet.<name>": tensor, other heads}}."""
    entries = {f"module.convnet.{k}": v for k, v in net.state_dict().items()}
    entries["module.lang_enc.weight"] = torch.zeros(2)  # R3M's language head: not part of the encoder
    torch.save({root: entries}, path)


@pytest.mark.parametrize(
    ("cls", "model", "root", "filename"),
    [(R3MTransform, "resnet18", "r3m", "r3m_18.pt"), (VIPTransform, "resnet50", "vip", "model.pt")],
)
def test_download_loads_the_published_layout_from_the_hub_cache(tmp_path, cls, model, root, filename):
    source = cls(model, ["pixels"], size=_SIZE)[-1].convnet
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.05)
    _fake_checkpoint(tmp_path / filename, root, source)
    loaded = cls(model, ["pixels"], size=_SIZE, download=True, download_path=str(tmp_path))
    for name, value in source.state_dict().items():
        assert torch.equal(loaded[-1].convnet.state_dict()[name], value), name


def test_download_failure_names_the_url_and_the_fix(monkeypatch, tmp_path):
    def offline(url, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    url = "https://pytorch.s3.amazonaws.com/models/rl/r3m/r3m_50.pt"
    with pytest.raises(RuntimeError, match=re.escape(url) + ".*no network.*download=False"):
        R3MTransform("resnet50", ["pixels"], download=True, download_path=str(tmp_path))
    with pytest.raises(RuntimeError, match=re.escape("models/rl/vip/model.pt")):
        VIPTransform("resnet50", download=True)


def test_a_checkpoint_without_the_encoder_is_refused(tmp_path):
    torch.save({"something": {}}, tmp_path / "r3m_18.pt")
    with pytest.raises(RuntimeError, match=r"no 'r3m' entry.*delete the cached file"):
        R3MTransform("resnet18", ["pixels"], download=True, download_path=str(tmp_path))


def test_torchvision_weights_without_torchvision_say_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now raises ImportError
    with pytest.raises(ImportError, match=r"IMAGENET1K_V1.*tdrl\[vision\]"):
        R3MTransform("resnet18", ["pixels"], download="IMAGENET1K_V1")


def test_torchvision_weights_refuse_a_download_path():
    with pytest.raises(ValueError, match="download_path"):
        R3MTransform("resnet18", ["pixels"], download="IMAGENET1K_V1", download_path="/tmp")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"model_name 'resnet101'.*\['resnet18', 'resnet34', 'resnet50'\]"):
        R3MTransform("resnet101", ["pixels"])
    with pytest.raises(ValueError, match=r"model_name 'resnet18'.*\['resnet50'\]"):
        VIPTransform("resnet18")
    with pytest.raises(ValueError, match="out_keys must hold one key"):
        R3MTransform("resnet18", ["a", "b"], out_keys=["x", "y"])
    with pytest.raises(ValueError, match="must hold 2 keys"):
        R3MTransform("resnet18", ["a", "b"], out_keys=["x"], stack_images=False)
    with pytest.raises(ValueError, match=r"tensor_pixels_keys.*must hold 2 keys"):
        R3MTransform("resnet18", ["a", "b"], tensor_pixels_keys=["raw"])
    with pytest.raises(ValueError, match="size must be a positive int"):
        R3MTransform("resnet18", ["pixels"], size=0)


def test_non_rgb_entries_are_refused():
    spec = Composite(pixels=Bounded(0, 255, shape=(8, 8, 4), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"'pixels'.*\(4, 8, 8\)"):
        R3MTransform("resnet18", ["pixels"], size=_SIZE).transform_observation_spec(spec)
    network = R3MTransform("resnet18", ["pixels"], size=_SIZE).network
    with pytest.raises(ValueError, match=r"'pixels' must hold RGB images \[\*, 3, H, W\].*\(2, 4, 8, 8\)"):
        network(TensorDict({"pixels": torch.zeros(2, 4, 8, 8)}, [2]))
    with pytest.raises(ValueError, match=r"'pixels' must hold RGB images.*\(2, 4, 8, 8\)"):
        network.transform_observation_spec(Composite(pixels=Bounded(0.0, 1.0, shape=(2, 4, 8, 8))))
    with pytest.raises(KeyError, match="camera"):
        TransformedEnv(_pixels_env(), R3MTransform("resnet18", ["camera"], size=_SIZE))


def test_train_mode_embeds_a_rollout_step_by_step():
    env = TransformedEnv(_pixels_env(), R3MTransform("resnet18", ["pixels"], size=_SIZE))
    assert env.transform.time_vectorizable
    env.transform.train()  # batch-norm on batch statistics: a whole rollout at once would differ
    assert not env.transform.time_vectorizable
    env.transform.eval()
    assert env.transform.time_vectorizable


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_network_on_cuda_embeds_cpu_frames_on_the_cpu():
    env = TransformedEnv(_pixels_env(batch_size=[2]), R3MTransform("resnet18", ["pixels"], size=_SIZE))
    env.transform.to("cuda")
    assert env.transform.device == torch.device("cuda")
    out = env.rollout(2, break_when_any_done=False)
    assert out["next", "r3m_vec"].device == torch.device("cpu")  # where the spec says, with the frames
    assert env.observation_spec["r3m_vec"].device == torch.device("cpu")
