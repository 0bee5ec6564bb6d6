"""SyncDataCollector: frame counts, episode boundaries, trajectory ids, policies, resume, and bad input."""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    NormalParamExtractor,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch import nn

from tdrl.collectors import Collector, SyncDataCollector, split_trajectories
from tdrl.envs import ExplorationType, SerialEnv
from tdrl.envs import ParallelEnv as _ParallelEnv
from tdrl.envs.common import EnvBase
from tdrl.specs import Composite, Unbounded
from tdrl.testing import ContinuousActionMock, CountingEnv, NestedKeyMock

# fork explicitly: importing torchrl elsewhere in the suite makes "spawn" the default (slow to start)
ParallelEnv = functools.partial(_ParallelEnv, mp_start_method="fork")


@pytest.fixture(autouse=True)
def _seed():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def _check_counting_batch(batch, max_steps):
    """CountingEnv invariants: next = root + 1; a step after a done starts from 0; ids change at resets."""
    obs, nxt = batch["observation"][..., 0], batch["next", "observation"][..., 0]
    done = batch["next", "done"][..., 0]
    ids = batch["collector", "traj_ids"]
    assert torch.equal(nxt, obs + 1), "a frame mixes two episodes"
    assert torch.equal(done, nxt == max_steps)
    follows = obs[..., 1:]
    assert torch.equal(follows == 0, done[..., :-1]), "the step after a done is not a fresh episode"
    changed = ids[..., 1:] != ids[..., :-1]
    assert torch.equal(changed, done[..., :-1]), "traj_ids do not change exactly at resets"


def test_frames_are_counted_exactly():
    collector = SyncDataCollector(CountingEnv(max_steps=4), None, frames_per_batch=30, total_frames=100)
    sizes = [batch.numel() for batch in collector]
    assert sizes == [30] * 4
    assert len(collector) == 4
    assert collector._frames == 120  # total reached, exceeded by less than one batch


def test_alias_and_batch_contents():
    assert Collector is SyncDataCollector
    collector = SyncDataCollector(CountingEnv(max_steps=3), None, frames_per_batch=10, total_frames=30)
    ids_seen = []
    for batch in collector:
        assert batch.batch_size == (10,)
        _check_counting_batch(batch, 3)
        for key in [
            "observation",
            "action",
            "done",
            ("next", "reward"),
            ("next", "terminated"),
            ("collector", "traj_ids"),
        ]:
            assert key in batch.keys(True, True), key
        ids_seen.append(batch["collector", "traj_ids"])
    ids = torch.cat(ids_seen)
    assert torch.equal(ids, torch.sort(ids).values)  # ids grow along time, across batches


def _zero_action(td):
    return td.set("action", torch.zeros(*td.batch_size, 1, dtype=torch.int64))


@pytest.mark.parametrize("policy", [None, _zero_action], ids=["random-open-loop", "policy-closed-loop"])
@pytest.mark.parametrize("env_kind", ["batched", "serial", "parallel"])
def test_batched_env_partial_resets(env_kind, policy):
    if env_kind == "batched":
        env, lengths = CountingEnv(max_steps=3, batch_size=[2]), [3, 3]
    else:
        cls = SerialEnv if env_kind == "serial" else ParallelEnv
        env = cls(2, [functools.partial(CountingEnv, max_steps=2), functools.partial(CountingEnv, max_steps=3)])
        lengths = [2, 3]
    collector = SyncDataCollector(env, policy, frames_per_batch=14, total_frames=28)
    ids = []
    for batch in collector:
        assert batch.batch_size == (2, 7)
        for i, n in enumerate(lengths):
            _check_counting_batch(batch[i], n)
        ids.append(batch["collector", "traj_ids"])
    ids = torch.cat(ids, -1)
    assert ids[0, 0] == 0
    assert ids[1, 0] == 1
    assert len(set(ids[0].tolist()) & set(ids[1].tolist())) == 0  # ids are unique across envs
    env.close()


def test_nested_keys():
    collector = SyncDataCollector(NestedKeyMock(max_steps=3), None, frames_per_batch=6, total_frames=6)
    batch = next(iter(collector))
    assert batch["data", "states"].shape == (6, 2)
    assert batch["agent", "action"].shape == (6, 2)
    assert batch["next", "data", "states"].shape == (6, 2)
    root, nxt = batch["data", "states"], batch["next", "data", "states"]
    done = batch["next", "done"][:, 0]
    assert torch.allclose(root[1:][~done[:-1]], nxt[:-1][~done[:-1]])


def _normal_policy(obs_dim: int = 3, act_dim: int = 2) -> ProbabilisticTensorDictSequential:
    net = nn.Sequential(nn.Linear(obs_dim, 2 * act_dim), NormalParamExtractor())
    return ProbabilisticTensorDictSequential(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        ProbabilisticTensorDictModule(
            in_keys=["loc", "scale"],
            out_keys=["action"],
            distribution_class=torch.distributions.Normal,
            return_log_prob=True,
        ),
    )


def test_tensordict_policy_outputs_are_stored():
    policy = _normal_policy()
    collector = SyncDataCollector(ContinuousActionMock(max_steps=4), policy, frames_per_batch=8, total_frames=8)
    batch = next(iter(collector))
    keys = batch.keys(True, True)
    for key in ["loc", "scale", "action"]:
        assert key in keys
    log_prob_key = next(k for k in keys if isinstance(k, str) and k.endswith("log_prob"))
    assert batch[log_prob_key].shape[0] == 8
    # the stored action is the one the stored loc/scale produced
    d = torch.distributions.Normal(batch["loc"], batch["scale"])
    assert torch.allclose(d.log_prob(batch["action"]), batch[log_prob_key], atol=1e-5)
    # the policy saw the root observation of each step
    loc, _scale = policy[0].module(batch["observation"])
    assert torch.allclose(loc, batch["loc"], atol=1e-6)


def test_tdrl_probabilistic_actor_and_exploration_type():
    from tdrl.modules import ProbabilisticActor, TanhNormal

    env = ContinuousActionMock(max_steps=5)
    net = nn.Sequential(nn.Linear(3, 4), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=True,
    )
    batch = next(iter(SyncDataCollector(env, actor, frames_per_batch=10, total_frames=10)))
    assert batch["sample_log_prob"].shape == (10,)
    assert (batch["action"].abs() <= 1).all()
    det = SyncDataCollector(
        env, actor, frames_per_batch=10, total_frames=10, exploration_type=ExplorationType.DETERMINISTIC
    )
    batch = next(iter(det))
    again = actor.get_dist(batch.select("observation")).deterministic_sample
    assert torch.allclose(batch["action"], again, atol=1e-5)


def test_plain_module_policy_on_observation_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, observation):
            return torch.tanh(self.lin(observation))

    batch = next(iter(SyncDataCollector(ContinuousActionMock(), Net(), frames_per_batch=4, total_frames=4)))
    assert batch["action"].shape == (4, 2)


class _RecurrentPolicy(nn.Module):
    """Counts the steps since reset in a carried ``hidden`` entry (written under "next")."""

    def forward(self, td):
        hidden = td.get("hidden", None)
        if hidden is None:
            hidden = torch.zeros(*td.batch_size, 1)
        td.set("hidden", hidden)
        td.set("action", torch.zeros(*td.batch_size, 1, dtype=torch.int64))
        td.set(("next", "hidden"), hidden + 1)
        return td


@pytest.mark.parametrize("batch_size", [(), (2,)])
def test_recurrent_state_is_carried_and_reset(batch_size):
    env = CountingEnv(max_steps=3, batch_size=batch_size)
    collector = SyncDataCollector(
        env, _RecurrentPolicy(), frames_per_batch=10 * max(1, env.batch_size.numel()), total_frames=-1
    )
    batch = next(iter(collector))
    # hidden counts steps since the episode started, exactly like the observation
    assert torch.equal(batch["hidden"], batch["observation"])
    assert torch.equal(batch["next", "hidden"], batch["next", "observation"])


def test_max_frames_per_traj_truncates():
    collector = SyncDataCollector(
        CountingEnv(max_steps=100), None, frames_per_batch=10, total_frames=10, max_frames_per_traj=4
    )
    batch = next(iter(collector))
    assert batch["next", "observation"][:, 0].tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    assert batch["next", "truncated"][:, 0].tolist() == [False, False, False, True] * 2 + [False, False]
    assert torch.equal(batch["next", "done"], batch["next", "truncated"])
    assert batch["collector", "traj_ids"].tolist() == [0] * 4 + [1] * 4 + [2] * 2


def test_reset_at_each_iter_and_postproc():
    calls = []

    def postproc(td):
        calls.append(td.numel())
        td.set("seen", torch.ones(td.shape))
        return td

    collector = SyncDataCollector(
        CountingEnv(max_steps=100), None, frames_per_batch=3, total_frames=9, reset_at_each_iter=True, postproc=postproc
    )
    batches = list(collector)
    for batch in batches:
        assert batch["observation"][:, 0].tolist() == [0, 1, 2]
        assert "seen" in batch.keys()
    assert [b["collector", "traj_ids"].tolist() for b in batches] == [[0] * 3, [1] * 3, [2] * 3]
    assert calls == [3, 3, 3]


def test_split_trajs():
    collector = SyncDataCollector(CountingEnv(max_steps=3), None, frames_per_batch=8, total_frames=8, split_trajs=True)
    batch = next(iter(collector))
    assert batch.batch_size == (3, 3)
    assert batch["collector", "mask"].tolist() == [[True] * 3, [True] * 3, [True, True, False]]
    assert batch["next", "observation"][..., 0].tolist() == [[1, 2, 3], [1, 2, 3], [1, 2, 0]]


def test_init_random_frames_use_random_actions_then_the_policy():
    calls = []

    class Policy(nn.Module):
        def forward(self, td):
            calls.append(1)
            td.set("action", torch.ones(*td.batch_size, 1, dtype=torch.int64))
            td.set("extra", torch.full((*td.batch_size, 1), 5.0))
            return td

    collector = SyncDataCollector(
        CountingEnv(max_steps=50), Policy(), frames_per_batch=20, total_frames=40, init_random_frames=20
    )
    first, second = list(collector)
    assert (first["extra"] == 0).all()  # the policy's outputs are zeros during random frames
    assert (second["extra"] == 5).all()
    assert (second["action"] == 1).all()
    assert first["action"].float().mean() < 0.99  # random Categorical(2) actions
    assert len(calls) == 20 + 1  # the second batch, plus the first (validation) step


@pytest.mark.parametrize("cls", [SerialEnv, ParallelEnv])
def test_sub_batched_workers_closed_loop(cls):
    env = cls(
        2,
        [
            functools.partial(CountingEnv, max_steps=2, batch_size=[2]),
            functools.partial(CountingEnv, max_steps=3, batch_size=[2]),
        ],
    )
    collector = SyncDataCollector(env, _zero_action, frames_per_batch=24, total_frames=24)
    batch = next(iter(collector))
    assert batch.batch_size == (2, 2, 6)
    for i, n in enumerate((2, 3)):
        for j in range(2):
            _check_counting_batch(batch[i, j], n)
    env.close()


def test_same_seed_same_data_serial_and_parallel_collectors():
    out = []
    for cls in (SerialEnv, ParallelEnv):
        env = cls(2, functools.partial(ContinuousActionMock, max_steps=3))
        torch.manual_seed(1)
        collector = SyncDataCollector(env, None, frames_per_batch=12, total_frames=24)
        collector.set_seed(3)
        out.append(torch.cat([b["next", "observation"] for b in collector], 1))
        env.close()
    assert torch.equal(out[0], out[1])


def test_state_dict_resumes_an_identical_stream():
    def make():
        # the simulator's own state is not in a state_dict: resume from batch boundaries that are resets
        return SyncDataCollector(
            CountingEnv(max_steps=3), None, frames_per_batch=8, total_frames=40, reset_at_each_iter=True
        )

    a = make()
    it = iter(a)
    next(it), next(it)
    state = a.state_dict()
    rest_a = list(it)
    b = make()
    b.load_state_dict(state)
    rest_b = list(b)
    assert len(rest_a) == len(rest_b) == 3
    assert rest_a[0]["collector", "traj_ids"][0] > 0
    assert not (rest_a[0]["action"] == rest_a[1]["action"]).all()  # random actions, replayed identically
    for x, y in zip(rest_a, rest_b):
        for key in x.keys(True, True):
            assert torch.equal(x[key], y[key]), key


def test_update_policy_weights_and_state_dict_policy():
    policy = TensorDictModule(nn.Linear(3, 2), in_keys=["observation"], out_keys=["action"])
    collector = SyncDataCollector(ContinuousActionMock(), policy, frames_per_batch=4, total_frames=-1)
    zeros = {k: torch.zeros_like(v) for k, v in policy.state_dict().items()}
    collector.update_policy_weights_(zeros)
    batch = collector.next()
    assert (batch["action"] == 0).all()
    assert "policy_state_dict" in collector.state_dict()


class _InPlaceEnv(EnvBase):
    """Writes its observation into the same tensor every step (the collector must copy it)."""

    def __init__(self):
        super().__init__()
        self.observation_spec = Composite(observation=Unbounded(shape=(1,)), shape=())
        self.action_spec = Unbounded(shape=(1,))
        self.obs = torch.zeros(1)

    def _reset(self, td):
        self.obs.zero_()
        return TensorDict({"observation": self.obs}, [])

    def _step(self, td):
        self.obs += 1
        return TensorDict(
            {
                "observation": self.obs,
                "reward": torch.zeros(1),
                "done": torch.zeros(1, dtype=torch.bool),
                "terminated": torch.zeros(1, dtype=torch.bool),
                "truncated": torch.zeros(1, dtype=torch.bool),
            },
            [],
        )

    def _set_seed(self, seed):
        pass


def test_env_writing_in_place_is_copied():
    batch = next(iter(SyncDataCollector(_InPlaceEnv(), None, frames_per_batch=6, total_frames=6)))
    assert batch["next", "observation"][:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert batch["observation"][:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_gym_env_with_transforms():
    from tdrl.envs import Compose, DoubleToFloat, StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv

    env = TransformedEnv(GymEnv("Pendulum-v1"), Compose(DoubleToFloat(), StepCounter(max_steps=5)))
    policy = TensorDictModule(nn.Linear(3, 1), in_keys=["observation"], out_keys=["action"])
    collector = SyncDataCollector(env, policy, frames_per_batch=12, total_frames=12, progress_bar=True)
    batch = next(iter(collector))
    assert batch["step_count"][:, 0].tolist() == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert batch["collector", "traj_ids"].tolist() == [0] * 5 + [1] * 5 + [2] * 2
    collector.shutdown()


def _stacks_then_norm(max_steps, batch_size=(), scale=None):
    """CountingEnv through CatFrames, then (with ``scale``) ObservationNorm rewriting the stacks (kept inside)."""
    from tdrl.envs import CatFrames, Compose, ObservationNorm, TransformedEnv

    chain = Compose(CatFrames(N=3, dim=-1, in_keys=["observation"]))
    if scale is not None:
        chain.append(ObservationNorm(loc=0.5, scale=scale, in_keys=["observation"]))
    return TransformedEnv(CountingEnv(max_steps=max_steps, batch_size=list(batch_size)), chain)


@pytest.mark.parametrize("policy", [None, _zero_action], ids=["random", "policy"])
@pytest.mark.parametrize("batch_size", [(), (2,)], ids=["single", "batched"])
def test_cat_frames_with_its_stacks_inside_collects_the_stacks_of_raw_frames(batch_size, policy):
    # the stacks stay inside CatFrames (ObservationNorm rewrites them): across batches and resets, a collected
    # stack is the normalized stack of raw frames that the root-carried CatFrames collects
    batches = []
    for scale in (None, 2.0):
        env = _stacks_then_norm(3, batch_size, scale)
        collector = SyncDataCollector(env, policy, frames_per_batch=10, total_frames=30)
        batches.append(torch.cat(list(collector), -1))
        collector.shutdown()
    plain, normed = batches
    assert plain["next", "done"].sum() >= 8
    for key in ("observation", ("next", "observation")):
        assert torch.equal(normed[key], plain[key] * 2.0 + 0.5), key


def test_split_trajectories_from_done_only():
    td = TensorDict({"x": torch.arange(5), ("next", "done"): torch.tensor([False, True, False, False, True])}, [5])
    out = split_trajectories(td)
    assert out["x"].tolist() == [[0, 1, 0], [2, 3, 4]]


# --- bad input ----------------------------------------------------------------------------


def test_frames_per_batch_not_a_multiple_of_the_env_batch():
    with pytest.raises(ValueError, match=r"frames_per_batch=10 is not a multiple .* 3 .*Use 9 or 12"):
        SyncDataCollector(CountingEnv(batch_size=[3]), None, frames_per_batch=10)
    with pytest.raises(ValueError, match="total_frames"):
        SyncDataCollector(CountingEnv(), None, frames_per_batch=10, total_frames=0)


def test_policy_without_action():
    policy = TensorDictModule(nn.Linear(1, 2), in_keys=["observation"], out_keys=["not_action"])
    collector = SyncDataCollector(CountingEnv(), policy, frames_per_batch=4)
    with pytest.raises(KeyError, match=r"did not write the action 'action'.*not_action"):
        collector.next()


def test_policy_with_wrong_action_shape():
    policy = TensorDictModule(nn.Linear(3, 5), in_keys=["observation"], out_keys=["action"])
    collector = SyncDataCollector(ContinuousActionMock(), policy, frames_per_batch=4)
    with pytest.raises(ValueError, match=r"wrote 'action' with shape \(5,\), but the env expects \(2,\)"):
        collector.next()


def test_create_env_fn_that_raises():
    def factory():
        raise RuntimeError("simulator license expired")

    with pytest.raises(RuntimeError, match="simulator license expired") as info:
        SyncDataCollector(factory, None, frames_per_batch=4)
    assert any("create_env_fn" in note for note in info.value.__notes__)
    with pytest.raises(TypeError, match="not a tdrl EnvBase"):
        SyncDataCollector(lambda: object(), None, frames_per_batch=4)


@pytest.mark.parametrize("cls", [SerialEnv, ParallelEnv])
def test_random_batches_open_loop_equal_closed_loop(cls):
    """Random actions on a batched env run without a round trip per step; the data are the same."""
    out = []
    for max_frames in (None, 10_000):  # max_frames_per_traj forces the per-step (closed-loop) road
        env = cls(2, [functools.partial(CountingEnv, max_steps=2), functools.partial(CountingEnv, max_steps=3)])
        torch.manual_seed(4)
        collector = SyncDataCollector(env, None, frames_per_batch=10, total_frames=20, max_frames_per_traj=max_frames)
        out.append(list(collector))
        env.close()
    for a, b in zip(*out):
        assert set(a.keys(True, True)) == set(b.keys(True, True))
        for key in a.keys(True, True):
            assert torch.equal(a[key], b[key]), key


def test_reset_when_done_false_leaves_the_env_alone():
    collector = SyncDataCollector(
        CountingEnv(max_steps=3), None, frames_per_batch=5, total_frames=5, reset_when_done=False
    )
    batch = next(iter(collector))
    assert batch["next", "observation"][:, 0].tolist() == [1, 2, 3, 4, 5]  # CountingEnv keeps counting
    assert batch["collector", "traj_ids"].tolist() == [0] * 5
    truncating = SyncDataCollector(
        CountingEnv(max_steps=100),
        None,
        frames_per_batch=6,
        total_frames=6,
        reset_when_done=False,
        max_frames_per_traj=2,
    )
    batch = next(iter(truncating))
    assert batch["next", "observation"][:, 0].tolist() == [1, 2, 1, 2, 1, 2]
    assert batch["collector", "traj_ids"].tolist() == [0, 0, 1, 1, 2, 2]


def test_rollout_does_not_count_frames_and_storing_device():
    collector = SyncDataCollector(
        CountingEnv(max_steps=3), None, frames_per_batch=4, total_frames=8, storing_device="cpu"
    )
    batch = collector.rollout()
    assert batch.numel() == 4
    assert collector._frames == 0
    assert batch.device == torch.device("cpu") or batch.device is None
    assert len(list(collector)) == 2


def test_a_policy_with_lazy_layers_is_materialized_when_the_collector_is_built():
    from tdrl.modules import MLP

    env = ContinuousActionMock(max_steps=5)
    policy = TensorDictModule(MLP(out_features=2, num_cells=[8]), in_keys=["observation"], out_keys=["action"])
    assert any(nn.parameter.is_lazy(p) for p in policy.parameters())
    collector = SyncDataCollector(env, policy, frames_per_batch=4, total_frames=4)
    assert not any(nn.parameter.is_lazy(p) for p in policy.parameters())  # a loss made now copies real weights
    assert next(iter(collector)).batch_size == (4,)
    collector.shutdown()


def test_a_replay_buffer_given_to_the_collector_receives_each_batch():
    from tdrl.data import LazyTensorStorage, ReplayBuffer

    rb = ReplayBuffer(storage=LazyTensorStorage(100))
    collector = SyncDataCollector(
        ContinuousActionMock(max_steps=5), None, frames_per_batch=4, total_frames=12, replay_buffer=rb
    )
    yielded = list(collector)
    assert yielded == [None, None, None]
    assert len(rb) == 12
    collector.shutdown()
    with pytest.raises(TypeError, match="replay_buffer must have an extend"):
        SyncDataCollector(ContinuousActionMock(), None, frames_per_batch=4, total_frames=4, replay_buffer=object())


def test_a_hook_on_a_module_policy_runs_at_every_step():
    """The collector calls a hook-free module policy's forward directly; a hook sends it through its call."""
    env = ContinuousActionMock()
    policy = TensorDictModule(nn.Linear(3, 2), in_keys=["observation"], out_keys=["action"])
    collector = SyncDataCollector(env, policy, frames_per_batch=6, total_frames=12)
    batches = iter(collector)
    first = next(batches)
    calls = []
    policy.register_forward_hook(lambda module, args, out: calls.append(1))
    second = next(batches)
    assert first.numel() == second.numel() == 6
    assert len(calls) == 6
