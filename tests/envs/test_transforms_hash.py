"""Hash (transform), SipHash and RandomProjectionHash: the contract, repertoire and inverse, TorchRL parity."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.data import RandomProjectionHash, SipHash
from tdrl.envs import Hash, TransformedEnv
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests


class TestHash(TransformContractTests):
    def make_transform(self):
        return Hash(in_keys=["observation"], out_keys=["obs_hash"])


class TestHashSeeded(TransformContractTests):
    def make_transform(self):
        return Hash(in_keys=["observation", "reward"], out_keys=["obs_hash", "reward_hash"], seed="salt")


def test_equal_inputs_share_a_hash_and_batches_hash_per_element():
    t = Hash(in_keys=["x"], out_keys=["h"])
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    h = t(TensorDict({"x": x}, [3]))["h"]
    assert h.shape == (3, 32)
    assert torch.equal(h[0], h[2])
    assert not torch.equal(h[0], h[1])
    assert torch.equal(h[1], Hash.reproducible_hash(x[1]))
    nested = t(TensorDict({"x": x.reshape(3, 1, 2).expand(3, 2, 2)}, [3, 2]))["h"]
    assert nested.shape == (3, 2, 32)


def test_strings_hash_as_in_torchrl_and_the_seed_changes_them():
    assert not torch.equal(Hash.reproducible_hash("abc"), Hash.reproducible_hash("abc", seed="s"))
    assert torch.equal(Hash.reproducible_hash("abc", seed="s"), Hash.reproducible_hash("sabc"))
    assert torch.equal(Hash.reproducible_hash(None), Hash.reproducible_hash(""))
    torchrl_envs = pytest.importorskip("torchrl.envs")
    for text, seed in (("hello", None), ("", None), ("state 3", "seed")):
        assert torch.equal(Hash.reproducible_hash(text, seed), torchrl_envs.Hash.reproducible_hash(text, seed))


def test_repertoire_and_inverse_give_the_input_back():
    repertoire: dict = {}
    t = Hash(in_keys=["x"], out_keys=["h"], repertoire=repertoire)
    x = torch.tensor([[1.0, 2.0], [5.0, 6.0]])
    h = t(TensorDict({"x": x}, [2]))["h"]
    assert len(repertoire) == 2
    assert torch.equal(t.get_input_from_hash(h[1]), x[1])
    assert t.get_input_from_hash(torch.zeros(32, dtype=torch.uint8)) is None
    inverse = Hash(in_keys=["x"], out_keys=["h"], in_keys_inv=["x"], out_keys_inv=["h"])
    inverse(TensorDict({"x": x}, [2]))
    back = inverse.inv(TensorDict({"h": h}, [2]))
    assert torch.equal(back["x"], x)
    with pytest.raises(KeyError, match="never produced by this transform"):
        inverse.inv(TensorDict({"h": torch.zeros(2, 32, dtype=torch.uint8)}, [2]))


def test_errors_name_the_problem():
    with pytest.raises(RuntimeError, match="keeps no repertoire"):
        Hash(in_keys=["x"], out_keys=["h"]).get_input_from_hash(torch.zeros(32))
    with pytest.raises(TypeError, match="hash_fn must be callable"):
        Hash(in_keys=["x"], out_keys=["h"], hash_fn=3)
    with pytest.raises(TypeError, match="hash_fn must return a tensor"):
        TransformedEnv(CountingEnv(), Hash(in_keys=["observation"], out_keys=["h"], hash_fn=lambda v: "no"))


def test_custom_hash_fn_sets_the_spec():
    t = Hash(
        in_keys=["observation"], out_keys=["h"], hash_fn=lambda v, seed: (v.sum() * len(seed)).reshape(1), seed="ab"
    )
    env = TransformedEnv(CountingEnv(), t)
    assert env.observation_spec["h"].shape == (1,)
    assert env.rollout(2)["next", "h"].flatten().tolist() == [2.0, 4.0]


def test_sip_hash_and_random_projection_match_torchrl():
    pytest.importorskip("torchrl")
    from torchrl.data.map.hash import RandomProjectionHash as TheirProjection
    from torchrl.data.map.hash import SipHash as TheirSip

    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(SipHash()(x), TheirSip()(x))
    assert SipHash(as_tensor=False)(x) == TheirSip(as_tensor=False)(x)
    torch.manual_seed(3)
    ours = RandomProjectionHash(n_components=4)(x)
    torch.manual_seed(3)
    theirs = TheirProjection(n_components=4)(x)
    assert torch.equal(ours, theirs)


def test_sip_hash_errors():
    with pytest.raises(ValueError, match=r"expected a \[batch, features\] tensor, got shape \(3,\)"):
        SipHash()(torch.zeros(3))
    rph = RandomProjectionHash(n_components=2)
    rph(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="fitted to 3 features, got 4"):
        rph(torch.zeros(2, 4))
