"""Backend parity: the same task through two backends gives the same specs and transitions.

- tdrl's native torch ``PendulumEnv`` against gymnasium's ``Pendulum-v1`` (single and vector),
  to 1e-5 under the same actions from the same initial state (their RNGs differ, so the
  gymnasium env is put in the native env's initial state);
- gymnasium vector envs (``GymEnv(name, num_envs=N)``, sync and async) against N separate
  gymnasium envs (by hand, and through ``SerialEnv``) under the same seeds and actions,
  partial resets included;
- the seed tutorial's PPO loop, unchanged, over every backend: only the env constructor changes.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from tdrl.envs.custom import PendulumEnv
from tdrl.envs.libs.gym import GymEnv

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def _gym_pendulum_from(env: GymEnv, th: torch.Tensor, thdot: torch.Tensor) -> torch.Tensor:
    """Reset a (vector) gymnasium Pendulum-v1 and put it in the state ``(th, thdot)``; returns the root."""
    td = env.reset()
    subenvs = env.env.envs if env.is_vector else [env.env]
    for i, sub in enumerate(subenvs):
        sub.unwrapped.state = np.array([th.reshape(-1)[i].item(), thdot.reshape(-1)[i].item()], dtype=np.float64)
    return td


def _drive(env, td, actions: torch.Tensor, until_done: bool = False) -> torch.Tensor:
    """Step ``env`` through ``actions`` (time along dim ``env.batch_dims``), resetting done sub-envs.

    With ``until_done``, stop after the first step where every sub-env is done.
    """
    steps = []
    for t in range(actions.shape[env.batch_dims]):
        td["action"] = actions.select(env.batch_dims, t)
        td, root = env.step_and_maybe_reset(td)
        steps.append(td.exclude("th", "thdot", "steps", ("next", "th"), ("next", "thdot"), ("next", "steps")))
        if until_done and td["next", "done"].all():
            break
        td = root
    return torch.stack(steps, env.batch_dims)


def _assert_same_transitions(native, gym, what: str) -> None:
    assert native.batch_size == gym.batch_size, what
    for key in [("next", "observation"), ("next", "reward")]:
        torch.testing.assert_close(native[key], gym[key], atol=ATOL, rtol=0, msg=f"{what}: {key}")
    for key in [("next", "done"), ("next", "terminated"), ("next", "truncated")]:
        assert torch.equal(native[key], gym[key]), f"{what}: {key}"


# --- native torch Pendulum vs gymnasium Pendulum-v1 -----------------------------------------------
def test_pendulum_specs_match():
    native, gym = PendulumEnv(), GymEnv("Pendulum-v1")
    assert native.observation_spec == gym.observation_spec
    assert native.action_spec == gym.action_spec
    assert native.reward_spec == gym.reward_spec
    assert native.full_done_spec == gym.full_done_spec
    batched, vector = PendulumEnv(batch_size=[3]), GymEnv("Pendulum-v1", num_envs=3)
    assert batched.observation_spec == vector.observation_spec
    assert batched.action_spec == vector.action_spec
    assert batched.full_done_spec == vector.full_done_spec
    vector.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pendulum_full_episode_matches_gymnasium(seed):
    native, gym = PendulumEnv(), GymEnv("Pendulum-v1")
    native.set_seed(seed)
    torch.manual_seed(seed)
    start = native.reset()
    actions = native.action_spec.rand((210,))
    ours = _drive(native, start.clone(), actions, until_done=True)
    theirs = _drive(gym, _gym_pendulum_from(gym, start["th"], start["thdot"]), actions, until_done=True)
    assert ours.batch_size == (200,)  # both truncate at gymnasium's time limit
    assert ours["next", "truncated"][-1].item()
    _assert_same_transitions(ours, theirs, f"seed {seed}")


def test_pendulum_extreme_actions_match_gymnasium():
    """Actions outside the torque bounds are clipped by both; bang-bang control spins the pendulum up."""
    native, gym = PendulumEnv(), GymEnv("Pendulum-v1")
    native.set_seed(5)
    start = native.reset()
    actions = torch.tensor([5.0, -5.0]).repeat_interleave(15).repeat(4)[:100].unsqueeze(-1)
    ours = _drive(native, start.clone(), actions)
    theirs = _drive(gym, _gym_pendulum_from(gym, start["th"], start["thdot"]), actions)
    _assert_same_transitions(ours, theirs, "bang-bang")


@pytest.mark.parametrize("vectorization_mode", ["sync"])
def test_batched_pendulum_matches_gymnasium_vector_env(vectorization_mode):
    native = PendulumEnv(batch_size=[4])
    vector = GymEnv("Pendulum-v1", num_envs=4, vectorization_mode=vectorization_mode)
    native.set_seed(0)
    start = native.reset()
    actions = native.action_spec.rand((120,)).movedim(0, 1)
    ours = _drive(native, start.clone(), actions)
    theirs = _drive(vector, _gym_pendulum_from(vector, start["th"], start["thdot"]), actions)
    _assert_same_transitions(ours, theirs, "batch of 4")
    vector.close()


# --- gymnasium vector envs vs separate envs ---------------------------------------------------------
N, T, SEED = 3, 80, 11


def _cartpole_actions() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 2, (N, T), generator=gen)


def _serial_by_hand(name: str, actions: torch.Tensor, **kwargs) -> torch.Tensor:
    out = []
    for i in range(N):
        env = GymEnv(name, **kwargs)
        env.set_seed(SEED + i)  # gymnasium seeds the vector's sub-env i with seed + i
        out.append(_drive(env, env.reset(), actions[i]))
        env.close()
    return torch.stack(out)


@pytest.mark.parametrize("vectorization_mode", ["sync", "async"])
def test_vector_env_matches_separate_envs(vectorization_mode):
    """CartPole episodes end at different times, so the vector env's partial resets are exercised."""
    actions = _cartpole_actions()
    vector = GymEnv("CartPole-v1", num_envs=N, vectorization_mode=vectorization_mode, categorical_action_encoding=True)
    vector.set_seed(SEED)
    ours = _drive(vector, vector.reset(), actions)
    vector.close()
    theirs = _serial_by_hand("CartPole-v1", actions, categorical_action_encoding=True)
    done = ours["next", "done"].squeeze(-1)
    assert done.sum() >= 3
    assert not torch.equal(done[0], done[1]), "episodes should end at different steps"
    assert ours.batch_size == theirs.batch_size == (N, T)
    for key in theirs.keys(True, True):
        assert torch.equal(ours[key], theirs[key]), key


def _serial_env_class():
    try:
        return importlib.import_module("tdrl.envs.batched").SerialEnv
    except (ImportError, AttributeError):
        pytest.skip("tdrl.envs.batched.SerialEnv is not available yet")


@pytest.mark.parametrize("vectorization_mode", ["sync", "async"])
def test_vector_env_matches_serial_env(vectorization_mode):
    SerialEnv = _serial_env_class()
    actions = _cartpole_actions()
    vector = GymEnv("CartPole-v1", num_envs=N, vectorization_mode=vectorization_mode, categorical_action_encoding=True)
    serial = SerialEnv(N, lambda: GymEnv("CartPole-v1", categorical_action_encoding=True))
    vector.set_seed(SEED)
    serial.set_seed(SEED)
    assert vector.observation_spec == serial.observation_spec
    assert vector.action_spec == serial.action_spec
    ours = _drive(vector, vector.reset(), actions)
    theirs = _drive(serial, serial.reset(), actions)
    vector.close()
    serial.close()
    for key in ours.keys(True, True):
        assert torch.equal(ours[key], theirs.get(key)), key


def test_vector_pendulum_rollout_matches_serial_rollout_by_hand():
    """Pendulum truncates every sub-env together; the vector env resets them all with their own RNGs."""
    actions = torch.rand(N, 230, 1) * 4 - 2
    vector = GymEnv("Pendulum-v1", num_envs=N)
    vector.set_seed(SEED)
    ours = _drive(vector, vector.reset(), actions)
    theirs = _serial_by_hand("Pendulum-v1", actions)
    assert ours["next", "truncated"][:, 199].all()
    for key in theirs.keys(True, True):
        assert torch.equal(ours[key], theirs[key]), key
    vector.close()


# --- the seed tutorial's PPO loop, unchanged, over every backend ---------------------------------------
def _ppo_pieces() -> dict:
    """The seed tutorial's imports, or a skip naming what is missing."""
    wanted = {
        "tdrl.collectors": ["SyncDataCollector"],
        "tdrl.data.replay_buffers": ["ReplayBuffer"],
        "tdrl.data.replay_buffers.samplers": ["SamplerWithoutReplacement"],
        "tdrl.data.replay_buffers.storages": ["LazyTensorStorage"],
        "tdrl.envs": ["Compose", "DoubleToFloat", "ObservationNorm", "StepCounter", "TransformedEnv"],
        "tdrl.envs.utils": ["ExplorationType", "check_env_specs", "set_exploration_type"],
        "tdrl.modules": ["ProbabilisticActor", "TanhNormal", "ValueOperator"],
        "tdrl.objectives": ["ClipPPOLoss"],
        "tdrl.objectives.value": ["GAE"],
    }
    found = {}
    for module, names in wanted.items():
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            pytest.skip(f"the PPO loop needs {module} ({err})")
        for name in names:
            if not hasattr(mod, name):
                pytest.skip(f"the PPO loop needs {module}.{name}, which does not exist yet")
            found[name] = getattr(mod, name)
    return found


def _serial_pendulum():
    return _serial_env_class()(2, lambda: GymEnv("Pendulum-v1"))


def _dm_control_pendulum():
    pytest.importorskip("dm_control")
    from tdrl.envs.libs.dm_control import DMControlEnv

    return DMControlEnv("pendulum", "swingup", concat_observations=True)


BACKENDS = {
    "gym": lambda: GymEnv("Pendulum-v1"),
    "gym-vector-sync": lambda: GymEnv("Pendulum-v1", num_envs=4),
    "gym-vector-async": lambda: GymEnv("Pendulum-v1", num_envs=2, vectorization_mode="async"),
    "serial": _serial_pendulum,
    "native": lambda: PendulumEnv(),
    "native-batched": lambda: PendulumEnv(batch_size=[8]),
    "dm_control": _dm_control_pendulum,
}


def _run_seed_ppo_loop(base_env, pieces: dict, total_frames: int = 400, frames_per_batch: int = 200) -> dict:
    """The seed tutorial's program from ``base_env`` on, on a tiny budget; nothing in it knows the backend."""
    from collections import defaultdict

    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torch import nn

    # the tutorial's names, as its imports would bind them
    SyncDataCollector, ReplayBuffer = pieces["SyncDataCollector"], pieces["ReplayBuffer"]
    SamplerWithoutReplacement, LazyTensorStorage = pieces["SamplerWithoutReplacement"], pieces["LazyTensorStorage"]
    Compose, DoubleToFloat, ObservationNorm = pieces["Compose"], pieces["DoubleToFloat"], pieces["ObservationNorm"]
    StepCounter, TransformedEnv = pieces["StepCounter"], pieces["TransformedEnv"]
    ExplorationType, check_env_specs = pieces["ExplorationType"], pieces["check_env_specs"]
    set_exploration_type, ProbabilisticActor = pieces["set_exploration_type"], pieces["ProbabilisticActor"]
    TanhNormal, ValueOperator = pieces["TanhNormal"], pieces["ValueOperator"]
    ClipPPOLoss, GAE = pieces["ClipPPOLoss"], pieces["GAE"]
    num_cells, lr, max_grad_norm = 32, 3e-4, 1.0
    sub_batch_size, num_epochs = 50, 2
    clip_epsilon, gamma, lmbda, entropy_eps = 0.2, 0.99, 0.95, 1e-4

    env = TransformedEnv(
        base_env,
        Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()),
    )
    # statistics over time and over the env's own batch dims (``reduce_dim=0`` for one env)
    env.transform[0].init_stats(
        num_iter=100, reduce_dim=tuple(range(base_env.batch_dims + 1)), cat_dim=base_env.batch_dims
    )
    check_env_specs(env)

    actor_net = nn.Sequential(
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(2 * env.action_spec.shape[-1]),
        NormalParamExtractor(),
    )
    policy_module = TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"])
    # one sub-env's action bounds (the spec of a batched env carries its batch dims)
    one_env = (0,) * env.batch_dims
    policy_module = ProbabilisticActor(
        module=policy_module,
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"min": env.action_spec.space.low[one_env], "max": env.action_spec.space.high[one_env]},
        return_log_prob=True,
    )
    value_net = nn.Sequential(
        nn.LazyLinear(num_cells), nn.Tanh(), nn.LazyLinear(num_cells), nn.Tanh(), nn.LazyLinear(1)
    )
    value_module = ValueOperator(module=value_net, in_keys=["observation"])
    policy_module(env.reset())
    value_module(env.reset())

    collector = SyncDataCollector(
        env, policy_module, frames_per_batch=frames_per_batch, total_frames=total_frames, split_trajs=False
    )
    replay_buffer = ReplayBuffer(
        storage=LazyTensorStorage(max_size=frames_per_batch), sampler=SamplerWithoutReplacement()
    )
    advantage_module = GAE(gamma=gamma, lmbda=lmbda, value_network=value_module, average_gae=True)
    loss_module = ClipPPOLoss(
        actor_network=policy_module,
        critic_network=value_module,
        clip_epsilon=clip_epsilon,
        entropy_bonus=bool(entropy_eps),
        entropy_coef=entropy_eps,
        critic_coef=1.0,
        loss_critic_type="smooth_l1",
    )
    before = [p.detach().clone() for p in loss_module.parameters()]
    optim = torch.optim.Adam(loss_module.parameters(), lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, total_frames // frames_per_batch, 0.0)

    logs = defaultdict(list)
    frames = 0
    for i, tensordict_data in enumerate(collector):
        for _ in range(num_epochs):
            advantage_module(tensordict_data)
            data_view = tensordict_data.reshape(-1)
            replay_buffer.extend(data_view.cpu())
            for _ in range(frames_per_batch // sub_batch_size):
                subdata = replay_buffer.sample(sub_batch_size)
                loss_vals = loss_module(subdata)
                loss_value = loss_vals["loss_objective"] + loss_vals["loss_critic"] + loss_vals["loss_entropy"]
                loss_value.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), max_grad_norm)
                optim.step()
                optim.zero_grad()
                logs["loss"].append(loss_value.item())
        frames += tensordict_data.numel()
        logs["reward"].append(tensordict_data["next", "reward"].mean().item())
        logs["step_count"].append(tensordict_data["step_count"].max().item())
        if i % 10 == 0:
            with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
                eval_rollout = env.rollout(50, policy_module)
                logs["eval reward (sum)"].append(eval_rollout["next", "reward"].sum().item())
        scheduler.step()
    if hasattr(collector, "shutdown"):
        collector.shutdown()
    logs["frames"] = frames
    logs["moved"] = any(not torch.equal(a, b.detach()) for a, b in zip(before, loss_module.parameters()))
    env.close()
    return logs


@pytest.fixture
def _one_thread():
    """Tiny networks: one thread is faster, and fairer to the other tests sharing the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.usefixtures("_one_thread")
def test_seed_ppo_loop_runs_unchanged_over_every_backend(backend):
    pieces = _ppo_pieces()
    torch.manual_seed(0)
    base_env = BACKENDS[backend]()
    base_env.set_seed(0)
    logs = _run_seed_ppo_loop(base_env, pieces)
    assert logs["frames"] == 400
    assert len(logs["reward"]) == 2
    assert len(logs["eval reward (sum)"]) == 1
    assert all(np.isfinite(logs["loss"]))
    assert len(logs["loss"]) == 2 * 2 * 4
    assert logs["moved"], "the optimizer did not change the parameters"
    assert all(np.isfinite(logs["reward"]))
    assert np.isfinite(logs["eval reward (sum)"][0])
    assert logs["step_count"][-1] >= 1
