"""Policy export: a tdrl policy captured with torch.export runs where tdrl and tensordict are not.

The flow is TorchRL's export tutorial's: select the policy's outputs with
``select_out_keys``, capture it with ``torch.export.export(policy, args=(), kwargs={...},
strict=False)`` under the exploration type wanted, save it with ``torch.export.save``. A
subprocess that cannot import tdrl or tensordict loads the ``.pt2`` file and must give the
same actions as the tdrl policy, for MLP, CNN (with the env's image transforms in front) and
LSTM policies, deterministic and (with a fixed seed) stochastic.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential

from tdrl.envs import Compose, GrayScale, Resize, ToTensorImage
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import (
    MLP,
    ConvNet,
    EGreedyModule,
    GRUModule,
    LSTMModule,
    NormalParamExtractor,
    ProbabilisticActor,
    QValueModule,
    TanhNormal,
)
from tdrl.specs import Bounded, Categorical

# Loads the program and the inputs, runs every input (reseeding torch before each call),
# saves the outputs. tdrl and tensordict cannot be imported: a finder at the head of
# sys.meta_path refuses them, and -I keeps the worktree off sys.path.
_RUNNER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tdrl", "tensordict"):
                raise ImportError(f"{name} must not be imported by an exported policy")
            return None

    sys.meta_path.insert(0, Refuse())
    import torch

    program = torch.export.load(sys.argv[1]).module()
    calls = torch.load(sys.argv[2], weights_only=True)
    outputs = []
    state = None
    for call in calls:
        kwargs = dict(call["inputs"])
        if state is not None:  # a recurrent policy: its next state is the following input
            kwargs.update(zip(call["state_keys"], state))
        torch.manual_seed(call["seed"])
        out = program(**kwargs)
        out = out if isinstance(out, tuple) else (out,)
        state = out[1:] if call["state_keys"] else None
        outputs.append(list(out))
    torch.save(outputs, sys.argv[3])
    assert not any(m.split(".")[0] in ("tdrl", "tensordict") for m in sys.modules), "imported tdrl"
    """
)


def _run_without_tdrl(tmp_path, program, calls):
    path = tmp_path / "policy.pt2"
    torch.export.save(program, path)
    torch.save(calls, tmp_path / "calls.pt")
    done = subprocess.run(
        [sys.executable, "-I", "-c", _RUNNER, str(path), str(tmp_path / "calls.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(tmp_path / "out.pt", weights_only=True)


def _tdrl_outputs(policy, calls, out_keys, state_keys=()):
    """What the tdrl policy itself gives for the same calls (TensorDict in, TensorDict out)."""
    outputs = []
    state = None
    for call in calls:
        kwargs = dict(call["inputs"])
        if state is not None:
            kwargs.update(zip(state_keys, state))
        torch.manual_seed(call["seed"])
        out = policy(**kwargs)
        out = out if isinstance(out, tuple) else (out,)
        assert len(out) == len(out_keys)
        state = out[1:] if state_keys else None
        outputs.append(list(out))
    return outputs


def _check(tmp_path, policy, calls, exploration, state_keys=()):
    with set_exploration_type(exploration):
        program = torch.export.export(policy, args=(), kwargs=dict(calls[0]["inputs"]), strict=False)
        expected = _tdrl_outputs(policy, calls, policy.out_keys, state_keys)
    for call in calls:
        call["state_keys"] = list(state_keys)
    got = _run_without_tdrl(tmp_path, program, calls)
    assert len(got) == len(expected)
    for step, (mine, theirs) in enumerate(zip(got, expected)):
        for a, b in zip(mine, theirs):
            assert torch.equal(a, b), f"call {step}: exported {a} != tdrl {b}"
    return expected


def _calls(make_input, n=6, seeds=None):
    return [{"inputs": make_input(i), "seed": 100 + i if seeds is None else seeds[i]} for i in range(n)]


def _q_policy(n_obs=4, n_actions=3):
    """A Q policy trained (briefly) to prefer the action of the largest of its first observations."""
    spec = Categorical(n_actions)
    net = MLP(in_features=n_obs, out_features=n_actions, num_cells=[32, 32])
    optim = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        obs = torch.randn(64, n_obs)
        loss = (net(obs) - obs[:, :n_actions]).pow(2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    return spec, TensorDictSequential(
        TensorDictModule(net, ["observation"], ["action_value"]), QValueModule(spec=spec)
    ).requires_grad_(False)


def test_an_mlp_q_policy_exports_and_runs_without_tdrl(tmp_path):
    _, policy = _q_policy()
    calls = _calls(lambda i: {"observation": torch.randn(4)})
    actions = _check(tmp_path, policy.select_out_keys("action"), calls, ExplorationType.DETERMINISTIC)
    assert len({int(a[0]) for a in actions}) > 1  # the inputs pick different actions


def test_an_epsilon_greedy_policy_with_a_fixed_seed_draws_the_same_actions(tmp_path):
    spec, policy = _q_policy()
    explore = TensorDictSequential(policy, EGreedyModule(spec, eps_init=0.5)).select_out_keys("action")
    obs = torch.randn(4)
    calls = _calls(lambda i: {"observation": obs}, n=12)
    actions = _check(tmp_path, explore, calls, ExplorationType.RANDOM)
    assert len({int(a[0]) for a in actions}) > 1  # exploration did pick other actions


def test_a_cnn_policy_with_the_env_image_transforms_in_front_exports(tmp_path):
    spec = Categorical(5)
    net = torch.nn.Sequential(ConvNet(num_cells=[8, 8], kernel_sizes=3, strides=1), torch.nn.LazyLinear(5))
    net(torch.zeros(1, 1, 16, 16))  # materializes the lazy layer
    cnn = TensorDictSequential(TensorDictModule(net, ["pixels"], ["action_value"]), QValueModule(spec=spec))
    preprocess = Compose(ToTensorImage(in_keys=["pixels"]), Resize(16, 16, in_keys=["pixels"]), GrayScale(["pixels"]))
    policy = TensorDictSequential(preprocess, cnn.requires_grad_(False)).select_out_keys("action")
    calls = _calls(lambda i: {"pixels": torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8)})
    _check(tmp_path, policy, calls, ExplorationType.DETERMINISTIC)


@pytest.mark.parametrize("exploration", [ExplorationType.DETERMINISTIC, ExplorationType.RANDOM])
def test_a_tanh_normal_actor_exports_deterministic_or_sampling(tmp_path, exploration):
    net = torch.nn.Sequential(MLP(in_features=3, out_features=4, num_cells=[32]), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -2.0, "high": 2.0},
        spec=Bounded(-2.0, 2.0, shape=(2,)),
    ).requires_grad_(False)
    obs = torch.randn(3)
    calls = _calls(lambda i: {"observation": obs}, seeds=[7, 7, 8, 9, 10, 11])
    actions = _check(tmp_path, actor.select_out_keys("action"), calls, exploration)
    if exploration is ExplorationType.RANDOM:  # same seed, same sample; other seeds, other samples
        assert torch.equal(actions[0][0], actions[1][0])
        assert not torch.equal(actions[1][0], actions[2][0])


@pytest.mark.parametrize(("kind", "python_based"), [("lstm", False), ("lstm", True), ("gru", False)])
def test_a_recurrent_policy_exports_and_carries_its_state(tmp_path, kind, python_based):
    states = ("h", "c") if kind == "lstm" else ("h",)
    module = LSTMModule if kind == "lstm" else GRUModule
    rnn = module(
        input_size=3,
        hidden_size=16,
        num_layers=2,
        in_keys=["observation", *states, "is_init"],
        out_keys=["features", *(("next", s) for s in states)],
        python_based=python_based,
    )
    head = TensorDictModule(torch.nn.Linear(16, 2), ["features"], ["action"])
    policy = TensorDictSequential(rnn, head).requires_grad_(False)
    policy = policy.select_out_keys("action", *(("next", s) for s in states))

    def step_input(i):
        return {
            "observation": torch.randn(3),
            **{s: torch.zeros(2, 16) for s in states},
            "is_init": torch.tensor([i == 0 or i == 4]),  # a new episode at steps 0 and 4
        }

    calls = _calls(step_input, n=7)
    outputs = _check(tmp_path, policy, calls, ExplorationType.DETERMINISTIC, state_keys=states)
    assert not torch.equal(outputs[1][1], outputs[2][1])  # the state moved


def test_onnx_export_gives_the_same_actions(tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _, policy = _q_policy()
    policy = policy.select_out_keys("action")
    obs = torch.randn(4)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        program = torch.onnx.export(policy, (), kwargs={"observation": obs}, dynamo=True)
        expected = policy(observation=obs)
    path = tmp_path / "policy.onnx"
    program.save(str(path))
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: obs.numpy()})
    assert int(got) == int(expected)
