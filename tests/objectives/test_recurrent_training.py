"""Sequence training equals stepping: losses and value estimates over ``[B, T]`` sequences in recurrent mode.

A batch collected with an LSTM policy stores every step's input state (and, under
``"next"``, the state after the step). With the collection's parameters, a sequence of
``[B, T]`` steps drawn by a ``SliceSampler`` and run in recurrent mode (from the state
stored at its first step, restarting at ``is_init``) must reproduce what the policy
computed while stepping, and so must every loss and value estimate built on it: the same
numbers as the step-mode computation that reads each step's stored state.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SliceSampler, SliceSamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import InitTracker, TransformedEnv
from tdrl.modules import (
    EGreedyModule,
    GRUModule,
    LSTMModule,
    ProbabilisticActor,
    QValueModule,
    ValueOperator,
    set_recurrent_mode,
)
from tdrl.objectives import ClipPPOLoss, DQNLoss
from tdrl.objectives.value import GAE, TD0Estimator, TDLambdaEstimator
from tdrl.testing import RecallEnv

ENVS, STEPS, DELAY, HIDDEN = 4, 12, 2, 6  # episodes of 3 steps: 4 per collected row


def _env(recurrent: nn.Module) -> TransformedEnv:
    env = TransformedEnv(RecallEnv(n_cues=3, delay=DELAY, batch_size=[ENVS]), InitTracker())
    env.append_transform(recurrent.make_tensordict_primer())
    env.set_seed(0)
    return env


def _features(kind: str) -> nn.Module:
    cls = LSTMModule if kind == "lstm" else GRUModule
    return cls(input_size=4, hidden_size=HIDDEN, in_key="observation", out_key="embed")


def _ppo_parts(kind: str) -> tuple:
    torch.manual_seed(0)
    features = _features(kind)
    logits = TensorDictModule(nn.Linear(HIDDEN, 3), ["embed"], ["logits"])
    actor = ProbabilisticActor(
        TensorDictSequential(features, logits),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        return_log_prob=True,
    )
    critic = TensorDictSequential(features, ValueOperator(nn.Linear(HIDDEN, 1), in_keys=["embed"]))
    return features, actor, critic


def _collect(env: TransformedEnv, policy: nn.Module) -> TensorDictBase:
    collector = SyncDataCollector(env, policy, frames_per_batch=ENVS * STEPS, total_frames=2 * ENVS * STEPS)
    batches = list(collector)
    collector.shutdown()
    return batches[-1]  # the second batch starts mid-episode-stream, from states carried over


def _chunked(data: TensorDictBase, slice_len: int) -> TensorDictBase:
    """The batch flattened, with a chunk id per step (``slice_len`` steps of one row each)."""
    chunks = STEPS // slice_len
    flat = data.reshape(-1)
    chunk = (torch.arange(ENVS).unsqueeze(1) * chunks + torch.arange(STEPS) // slice_len).reshape(-1)
    flat.set("chunk", chunk)
    return flat


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("slices", ["chunks", "episodes"])
def test_slice_sampled_sequences_reproduce_the_collected_outputs(kind: str, slices: str) -> None:
    features, actor, _ = _ppo_parts(kind)
    data = _collect(_env(features), actor)
    assert data["is_init"][:, 1:].any(), "rows should hold episode starts"
    if slices == "chunks":  # 6-step pieces of a row: two episodes each, so resets inside
        slice_len, sampler = 6, SliceSampler(slice_len=6, traj_key="chunk")
    else:  # whole episodes, by the collector's trajectory ids
        slice_len, sampler = DELAY + 1, SliceSampler(slice_len=DELAY + 1, traj_key=("collector", "traj_ids"))
    buffer = ReplayBuffer(storage=LazyTensorStorage(ENVS * STEPS), sampler=sampler, batch_size=4 * slice_len)
    buffer.extend(_chunked(data, 6))
    batch = buffer.sample().reshape(-1, slice_len)
    if slices == "chunks":
        assert batch["is_init"][:, 1:].any(), "the sampled sequences should restart inside"
    stored = batch.select("embed", "logits").clone()
    with set_recurrent_mode(True), torch.no_grad():
        replayed = actor(batch.exclude("embed", "logits"))
    torch.testing.assert_close(replayed["embed"], stored["embed"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(replayed["logits"], stored["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("estimator", ["gae", "td0", "td_lambda"])
@pytest.mark.parametrize("with_params", [False, True])
def test_value_estimates_over_sequences_equal_estimates_on_stored_states(
    kind: str, estimator: str, with_params: bool
) -> None:
    features, actor, critic = _ppo_parts(kind)
    data = _collect(_env(features), actor)
    if estimator == "gae":
        value_estimator = GAE(gamma=0.9, lmbda=0.8, value_network=critic)
    elif estimator == "td0":
        value_estimator = TD0Estimator(gamma=0.9, value_network=critic)
    else:
        value_estimator = TDLambdaEstimator(gamma=0.9, lmbda=0.8, value_network=critic)
    kwargs = {"params": TensorDict.from_module(critic)} if with_params else {}
    with torch.no_grad():
        stepped = value_estimator(data.clone(), **kwargs)  # step mode: every step reads its stored state
        with set_recurrent_mode(True):
            sequenced = value_estimator(data.clone(), **kwargs)
    for key in ("state_value", ("next", "state_value"), "advantage", "value_target"):
        torch.testing.assert_close(sequenced[key], stepped[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_clip_ppo_loss_over_slice_sampled_sequences_equals_step_mode(kind: str) -> None:
    features, actor, critic = _ppo_parts(kind)
    data = _collect(_env(features), actor)
    with torch.no_grad(), set_recurrent_mode(True):
        GAE(gamma=0.9, lmbda=0.8, value_network=critic)(data)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ENVS * STEPS),
        sampler=SliceSamplerWithoutReplacement(slice_len=6, traj_key="chunk", truncated_key=None),
        batch_size=24,
    )
    buffer.extend(_chunked(data, 6))
    batch = buffer.sample().reshape(-1, 6)
    loss = ClipPPOLoss(actor, critic, entropy_coef=0.01)
    stepped = loss(batch.clone())
    with set_recurrent_mode(True):
        sequenced = loss(batch.clone())
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(sequenced[key], stepped[key], rtol=1e-5, atol=1e-6)
    # recurrent mode backpropagates through time: the LSTM's recurrent weights get a different gradient
    sequenced["loss_objective"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in features.parameters())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("slices", ["chunks", "episodes"])
def test_dqn_loss_over_slice_sampled_sequences_equals_step_mode(kind: str, slices: str) -> None:
    torch.manual_seed(0)
    features = _features(kind)
    env = _env(features)
    head = TensorDictModule(nn.Linear(HIDDEN, 3), ["embed"], ["action_value"])
    qnet = TensorDictSequential(features, head, QValueModule(spec=env.action_spec))
    policy = TensorDictSequential(qnet, EGreedyModule(env.action_spec, eps_init=0.5, eps_end=0.5))
    data = _collect(env, policy)
    slice_len = 6 if slices == "chunks" else DELAY + 1
    traj_key = "chunk" if slices == "chunks" else ("collector", "traj_ids")
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(ENVS * STEPS),
        sampler=SliceSampler(slice_len=slice_len, traj_key=traj_key),
        batch_size=4 * slice_len,
    )
    buffer.extend(_chunked(data, 6))
    batch = buffer.sample().reshape(-1, slice_len)
    loss = DQNLoss(qnet, action_space=env.action_spec, delay_value=True)
    loss.make_value_estimator("td0", gamma=0.9)
    stepped = loss(batch.clone())
    with set_recurrent_mode(True):
        sequenced = loss(batch.clone())
    torch.testing.assert_close(sequenced["loss"], stepped["loss"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gae_over_sequences_matches_torchrl(kind: str) -> None:
    trl_modules = pytest.importorskip("torchrl.modules")
    trl_value = pytest.importorskip("torchrl.objectives.value")
    features, actor, critic = _ppo_parts(kind)
    data = _collect(_env(features), actor)
    rnn = features.lstm if kind == "lstm" else features.gru
    twin_cls = trl_modules.LSTMModule if kind == "lstm" else trl_modules.GRUModule
    twin = twin_cls(input_size=rnn.input_size, hidden_size=rnn.hidden_size,
                    in_keys=list(features.in_keys), out_keys=list(features.out_keys))  # fmt: skip
    (twin.lstm if kind == "lstm" else twin.gru).load_state_dict(rnn.state_dict())
    twin_critic = TensorDictSequential(twin, critic[1])
    plain = data.exclude("collector").to_tensordict()
    with torch.no_grad():
        with set_recurrent_mode(True):
            ours = GAE(gamma=0.9, lmbda=0.8, value_network=critic)(plain.clone())
        with trl_modules.set_recurrent_mode(True):
            gae = trl_value.GAE(gamma=0.9, lmbda=0.8, value_network=twin_critic, deactivate_vmap=True)
            theirs = gae(plain.clone())
    for key in ("state_value", ("next", "state_value"), "advantage", "value_target"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
