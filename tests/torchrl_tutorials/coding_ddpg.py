"""TorchRL's "TorchRL objectives: Coding a DDPG loss" tutorial (coding_ddpg), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``, with the normalization warm-up, the frames, the updates per batch and the
evaluation rollout cut by ``scale``. A DDPG loss written from the ground up on
``LossModule`` (``convert_to_functional`` with target parameters, a TD(lambda) value
estimator over an ``ActorCriticWrapper``, parameters swapped in with ``to_module``), HalfCheetah
run in a two-worker ``ParallelEnv`` with ``ObservationNorm`` stats, Ornstein-Uhlenbeck
exploration noise, a ``Collector`` (the tutorial's ``SyncDataCollector``), a trajectory replay buffer cropped by
``RandomCropTensorDict``, ``SoftUpdate`` and an evaluation hook. Run by
tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import os
import tempfile
import warnings

import gymnasium
import torch
import tqdm
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import optim

# the tutorial imports SyncDataCollector, which TorchRL 0.14.1 calls Collector: its spelling
from tdrl.collectors import Collector

# the tutorial imports CompositeSpec, which TorchRL 0.14.1 no longer exports: its spelling
from tdrl.data import Composite
from tdrl.data.replay_buffers import LazyMemmapStorage, PrioritizedSampler, RandomSampler, TensorDictReplayBuffer
from tdrl.envs import (
    CatTensors,
    DoubleToFloat,
    EnvCreator,
    ExplorationType,
    InitTracker,
    ObservationNorm,
    ParallelEnv,
    RandomCropTensorDict,
    RewardScaling,
    StepCounter,
    TransformedEnv,
)
from tdrl.envs.libs.dm_control import DMControlEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.modules import (
    ActorCriticWrapper,
    DdpgMlpActor,
    DdpgMlpQNet,
    OrnsteinUhlenbeckProcessModule,
    ProbabilisticActor,
    TanhDelta,
    ValueOperator,
)
from tdrl.objectives import LossModule
from tdrl.objectives.utils import SoftUpdate, ValueEstimators, default_value_kwargs, distance_loss
from tdrl.objectives.value import TD0Estimator, TD1Estimator, TDLambdaEstimator

# the tutorial imports Recorder, which TorchRL 0.14.1 no longer has: its spelling
from tdrl.trainers import LogValidationReward

device = torch.device("cpu")
collector_device = torch.device("cpu")
backend = "gym"
# the tutorial names HalfCheetah-v4; the newest registered HalfCheetah runs where v4 is gone
ENV_NAME = max(k for k in gymnasium.envs.registry if k.startswith("HalfCheetah-v"))
reward_scaling = 5.0
max_frames_per_traj = 500
env_library = None
env_name = None


def _init(self, actor_network: TensorDictModule, value_network: TensorDictModule) -> None:
    super(type(self), self).__init__()
    self.convert_to_functional(actor_network, "actor_network", create_target_params=True)
    self.convert_to_functional(
        value_network,
        "value_network",
        create_target_params=True,
        compare_against=list(actor_network.parameters()),
    )
    self.actor_in_keys = actor_network.in_keys
    # the value estimate runs the actor then the critic: one actor-critic container
    self.actor_critic = ActorCriticWrapper(actor_network, value_network)
    self.loss_function = "l2"


default_value_estimator = ValueEstimators.TD0


def make_value_estimator(self, value_type: ValueEstimators, **hyperparams):
    hp = dict(default_value_kwargs(value_type))
    if hasattr(self, "gamma"):
        hp["gamma"] = self.gamma
    hp.update(hyperparams)
    value_key = "state_action_value"
    if value_type == ValueEstimators.TD1:
        self._value_estimator = TD1Estimator(value_network=self.actor_critic, **hp)
    elif value_type == ValueEstimators.TD0:
        self._value_estimator = TD0Estimator(value_network=self.actor_critic, **hp)
    elif value_type == ValueEstimators.GAE:
        raise NotImplementedError(f"Value type {value_type} it not implemented for loss {type(self)}.")
    elif value_type == ValueEstimators.TDLambda:
        self._value_estimator = TDLambdaEstimator(value_network=self.actor_critic, **hp)
    else:
        raise NotImplementedError(f"Unknown value type {value_type}")
    self._value_estimator.set_keys(value=value_key)


def _loss_actor(self, tensordict) -> torch.Tensor:
    td_copy = tensordict.select(*self.actor_in_keys)
    # the tutorial calls self.actor_network(td_copy, params=...): tensordict's modules no longer take
    # ``params=``; the spelling TorchRL 0.14.1's own losses use swaps the parameters in with to_module
    with self.actor_network_params.to_module(self.actor_network):
        td_copy = self.actor_network(td_copy)
    with self.value_network_params.detach().to_module(self.value_network):
        td_copy = self.value_network(td_copy)
    return -td_copy.get("state_action_value")


def _loss_value(self, tensordict):
    td_copy = tensordict.clone()
    with self.value_network_params.to_module(self.value_network):  # the tutorial passes params=
        self.value_network(td_copy)
    pred_val = td_copy.get("state_action_value").squeeze(-1)
    # the actor-critic's parameters: the actor's first, then the value network's
    target_params = TensorDict(
        {"module": {"0": self.target_actor_network_params, "1": self.target_value_network_params}},
        batch_size=self.target_actor_network_params.batch_size,
        device=self.target_actor_network_params.device,
    )
    target_value = self.value_estimator.value_estimate(tensordict, target_params=target_params).squeeze(-1)
    loss_value = distance_loss(pred_val, target_value, loss_function=self.loss_function)
    td_error = (pred_val - target_value).pow(2)
    return loss_value, td_error, pred_val, target_value


def _forward(self, input_tensordict: TensorDictBase) -> TensorDict:
    loss_value, td_error, pred_val, target_value = self.loss_value(input_tensordict)
    td_error = td_error.detach()
    td_error = td_error.unsqueeze(input_tensordict.ndimension())
    if input_tensordict.device is not None:
        td_error = td_error.to(input_tensordict.device)
    input_tensordict.set("td_error", td_error, inplace=True)
    loss_actor = self.loss_actor(input_tensordict)
    return TensorDict(
        source={
            "loss_actor": loss_actor.mean(),
            "loss_value": loss_value.mean(),
            "pred_value": pred_val.mean().detach(),
            "target_value": target_value.mean().detach(),
            "pred_value_max": pred_val.max().detach(),
            "target_value_max": target_value.max().detach(),
        },
        batch_size=[],
    )


class DDPGLoss(LossModule):
    default_value_estimator = default_value_estimator
    make_value_estimator = make_value_estimator

    __init__ = _init
    forward = _forward
    loss_value = _loss_value
    loss_actor = _loss_actor


def make_env(from_pixels=False):
    global env_library
    global env_name
    if backend == "dm_control":
        env_name = "cheetah"
        env_args = (env_name, "run")
        env_library = DMControlEnv
    elif backend == "gym":
        env_name = ENV_NAME
        env_args = (env_name,)
        env_library = GymEnv
    else:
        raise NotImplementedError
    env_kwargs = {"device": device, "from_pixels": from_pixels, "pixels_only": from_pixels, "frame_skip": 2}
    return env_library(*env_args, **env_kwargs)


def make_transformed_env(env):
    env = TransformedEnv(env)
    env.append_transform(RewardScaling(loc=0.0, scale=reward_scaling))
    selected_keys = list(env.observation_spec.keys())
    out_key = "observation_vector"
    env.append_transform(CatTensors(in_keys=selected_keys, out_key=out_key))
    # stateless for now: the stats come later
    env.append_transform(ObservationNorm(in_keys=[out_key], standard_normal=True))
    env.append_transform(DoubleToFloat())
    env.append_transform(StepCounter(max_frames_per_traj))
    # the Ornstein-Uhlenbeck noise needs to know where trajectories start
    env.append_transform(InitTracker())
    return env


def parallel_env_constructor(env_per_collector, transform_state_dict):
    if env_per_collector == 1:

        def make_t_env():
            env = make_transformed_env(make_env())
            env.transform[2].init_stats(3)
            env.transform[2].loc.copy_(transform_state_dict["loc"])
            env.transform[2].scale.copy_(transform_state_dict["scale"])
            return env

        return EnvCreator(make_t_env)
    parallel_env = ParallelEnv(
        num_workers=env_per_collector,
        create_env_fn=EnvCreator(lambda: make_env()),
        create_env_kwargs=None,
        pin_memory=False,
    )
    env = make_transformed_env(parallel_env)
    # a few steps only, to build the lazy buffers before loading the stats
    env.transform[2].init_stats(3, cat_dim=1, reduce_dim=[0, 1])
    env.transform[2].load_state_dict(transform_state_dict)
    return env


def get_env_stats(init_env_steps):
    proof_env = make_transformed_env(make_env())
    t = proof_env.transform[2]
    t.init_stats(init_env_steps)
    transform_state_dict = t.state_dict()
    proof_env.close()
    return transform_state_dict


def make_ddpg_actor(transform_state_dict, device="cpu"):
    proof_environment = make_transformed_env(make_env())
    proof_environment.transform[2].init_stats(3)
    proof_environment.transform[2].load_state_dict(transform_state_dict)
    out_features = proof_environment.action_spec.shape[-1]
    actor_net = DdpgMlpActor(action_dim=out_features)
    in_keys = ["observation_vector"]
    out_keys = ["param"]
    actor = TensorDictModule(actor_net, in_keys=in_keys, out_keys=out_keys)
    actor = ProbabilisticActor(
        actor,
        distribution_class=TanhDelta,
        in_keys=["param"],
        spec=Composite(action=proof_environment.action_spec),
    ).to(device)
    q_net = DdpgMlpQNet()
    in_keys = [*in_keys, "action"]
    qnet = ValueOperator(in_keys=in_keys, module=q_net).to(device)
    # materialize the lazy layers
    qnet(actor(proof_environment.reset().to(device)))
    proof_environment.close()
    return actor, qnet


def make_recorder(actor_model_explore, transform_state_dict, record_interval, record_frames):
    environment = make_transformed_env(make_env())
    environment.transform[2].init_stats(3)  # must be instantiated to load the state dict
    environment.transform[2].load_state_dict(transform_state_dict)
    return LogValidationReward(
        record_frames=record_frames,
        policy_exploration=actor_model_explore,
        environment=environment,
        exploration_type=ExplorationType.MEAN,
        record_interval=record_interval,
    )


def make_replay_buffer(buffer_size, batch_size, random_crop_len, buffer_scratch_dir, prefetch=3, prb=False):
    if prb:
        sampler = PrioritizedSampler(max_capacity=buffer_size, alpha=0.7, beta=0.5)
    else:
        sampler = RandomSampler()
    return TensorDictReplayBuffer(
        storage=LazyMemmapStorage(buffer_size, scratch_dir=buffer_scratch_dir),
        batch_size=batch_size,
        sampler=sampler,
        pin_memory=False,
        prefetch=prefetch,
        transform=RandomCropTensorDict(random_crop_len, sample_dim=1),
    )


def ceil_div(x, y):
    return -x // (-y)


def main(scale: float = 1.0):
    torch.manual_seed(0)
    init_env_steps = max(20, int(5000 * scale))
    transform_state_dict = get_env_stats(init_env_steps)
    env_per_collector = 2  # the tutorial runs 4
    parallel_env = parallel_env_constructor(env_per_collector, transform_state_dict)
    actor, qnet = make_ddpg_actor(transform_state_dict, device=device)

    annealing_frames = 1_000_000
    # the tutorial wraps the actor in OrnsteinUhlenbeckProcessWrapper, which TorchRL 0.14.1 removed
    # (it raises and names the module to use): 0.14.1's spelling appends the noise module. It gets a
    # copy of the actor's spec because TorchRL's module adds its noise entries to the spec it is given,
    # which would then no longer match the actor's out_keys when the loss wraps the actor
    actor_model_explore = TensorDictSequential(
        actor, OrnsteinUhlenbeckProcessModule(spec=actor.spec.clone(), annealing_num_steps=annealing_frames)
    ).to(device)
    if device == torch.device("cpu"):
        actor_model_explore.share_memory()

    traj_len = max(10, int(200 * scale))
    frames_per_batch = env_per_collector * traj_len
    total_frames = max(3 * frames_per_batch, int(10_000 * scale))
    init_random_frames = max(frames_per_batch, int(5000 * scale))
    collector = Collector(
        parallel_env,
        policy=actor_model_explore,
        total_frames=total_frames,
        frames_per_batch=frames_per_batch,
        init_random_frames=init_random_frames,
        reset_at_each_iter=False,
        split_trajs=False,
        device=collector_device,
        exploration_type=ExplorationType.RANDOM,
    )

    # the tutorial records every 10 batches, 1000 frames each
    recorder = make_recorder(
        actor_model_explore, transform_state_dict, record_interval=1, record_frames=max(10, int(1000 * scale))
    )

    tmpdir = tempfile.TemporaryDirectory()
    buffer_size = ceil_div(1_000_000, traj_len)
    prb = False
    update_to_data = max(2, int(64 * scale))
    random_crop_len = max(2, int(25 * scale))
    batch_size = ceil_div(64 * frames_per_batch, update_to_data * random_crop_len)
    replay_buffer = make_replay_buffer(
        buffer_size=buffer_size,
        batch_size=batch_size,
        random_crop_len=random_crop_len,
        buffer_scratch_dir=tmpdir.name,
        prefetch=3,
        prb=prb,
    )

    gamma = 0.99
    lmbda = 0.9
    tau = 0.001
    loss_module = DDPGLoss(actor, qnet)
    loss_module.make_value_estimator(ValueEstimators.TDLambda, gamma=gamma, lmbda=lmbda)
    target_net_updater = SoftUpdate(loss_module, eps=1 - tau)
    optimizer_actor = optim.Adam(loss_module.actor_network_params.values(True, True), lr=1e-4, weight_decay=0.0)
    optimizer_value = optim.Adam(loss_module.value_network_params.values(True, True), lr=1e-3, weight_decay=1e-2)

    rewards = []
    rewards_eval = []
    collected_frames = 0
    pbar = tqdm.tqdm(total=total_frames)
    r0 = None
    optim_steps = 0
    for i, tensordict in enumerate(collector):
        collector.update_policy_weights_()
        if r0 is None:
            r0 = tensordict["next", "reward"].mean().item()
        pbar.update(tensordict.numel())
        current_frames = tensordict.numel()
        collected_frames += current_frames
        replay_buffer.extend(tensordict.cpu())
        if collected_frames >= init_random_frames:
            for _ in range(update_to_data):
                sampled_tensordict = replay_buffer.sample().to(device)
                loss_dict = loss_module(sampled_tensordict)
                loss_dict["loss_actor"].backward()
                gn1 = torch.nn.utils.clip_grad_norm_(loss_module.actor_network_params.values(True, True), 10.0)
                optimizer_actor.step()
                optimizer_actor.zero_grad()
                loss_dict["loss_value"].backward()
                gn2 = torch.nn.utils.clip_grad_norm_(loss_module.value_network_params.values(True, True), 10.0)
                optimizer_value.step()
                optimizer_value.zero_grad()
                gn = (gn1**2 + gn2**2) ** 0.5
                if prb:
                    replay_buffer.update_tensordict_priority(sampled_tensordict)
                target_net_updater.step()
                optim_steps += 1
        rewards.append((i, tensordict["next", "reward"].mean().item()))
        td_record = recorder(None)
        if td_record is not None:
            rewards_eval.append((i, td_record["r_evaluation"].item()))
        if len(rewards_eval) and collected_frames >= init_random_frames:
            target_value = loss_dict["target_value"].item()
            loss_value = loss_dict["loss_value"].item()
            loss_actor = loss_dict["loss_actor"].item()
            rn = sampled_tensordict["next", "reward"].mean().item()
            rs = sampled_tensordict["next", "reward"].std().item()
            pbar.set_description(
                f"reward: {rewards[-1][1]: 4.2f} (r0 = {r0: 4.2f}), "
                f"reward eval: reward: {rewards_eval[-1][1]: 4.2f}, "
                f"reward normalized={rn:4.2f}/{rs:4.2f}, "
                f"grad norm={gn: 4.2f}, "
                f"loss_value={loss_value: 4.2f}, "
                f"loss_actor={loss_actor: 4.2f}, "
                f"target value: {target_value: 4.2f}"
            )
        actor_model_explore[1].step(current_frames)

    collector.shutdown()
    del collector
    assert optim_steps > 0, "the loop never optimized"
    assert rewards_eval, "the evaluation hook never ran"
    assert all(torch.isfinite(torch.tensor(r)) for _, r in rewards_eval), rewards_eval

    from matplotlib import pyplot as plt

    plt.figure()
    plt.plot(*zip(*rewards, strict=True), label="training")
    plt.plot(*zip(*rewards_eval, strict=True), label="eval")
    plt.legend()
    plt.xlabel("iter")
    plt.ylabel("reward")
    plt.tight_layout()
    tmpdir.cleanup()


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
