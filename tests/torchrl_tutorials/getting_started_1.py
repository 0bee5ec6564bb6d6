"""TorchRL's "Get started with TorchRL's modules" (getting-started-1), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import NormalParamExtractor
from torch.distributions import Normal


def main(scale: float = 1.0):
    from tdrl.envs import GymEnv

    env = GymEnv("Pendulum-v1")
    module = torch.nn.LazyLinear(out_features=env.action_spec.shape[-1])
    policy = TensorDictModule(module, in_keys=["observation"], out_keys=["action"])
    env.rollout(max_steps=10, policy=policy)
    from tdrl.modules import MLP, Actor

    policy = Actor(module)
    env.rollout(max_steps=10, policy=policy)
    module = MLP(out_features=env.action_spec.shape[-1], num_cells=[32, 64], activation_class=torch.nn.Tanh)
    policy = Actor(module)
    env.rollout(max_steps=10, policy=policy)

    from tdrl.modules import ProbabilisticActor

    backbone = MLP(in_features=3, out_features=2)
    td_module = TensorDictModule(
        torch.nn.Sequential(backbone, NormalParamExtractor()), in_keys=["observation"], out_keys=["loc", "scale"]
    )
    # a deliberate difference: the tutorial maps "observation" onto Normal's arguments and never
    # calls this actor (it rolls out the previous policy); TorchRL accepts it until a call, tdrl
    # refuses it when it is built, naming Normal's arguments
    try:
        actor = ProbabilisticActor(
            td_module, in_keys=["observation"], out_keys=["action"], distribution_class=Normal, return_log_prob=True
        )
        print(actor)
    except TypeError as err:
        if "accepts ['loc', 'scale'" not in str(err):
            raise
    env.rollout(max_steps=10, policy=policy)  # the tutorial rolls out the previous policy here
    from tdrl.envs.utils import ExplorationType, set_exploration_type

    with set_exploration_type(ExplorationType.MEAN):
        env.rollout(max_steps=10, policy=policy)
    with set_exploration_type(ExplorationType.RANDOM):
        env.rollout(max_steps=10, policy=policy)

    from tdrl.modules import EGreedyModule

    policy = Actor(MLP(3, 1, num_cells=[32, 64]))
    exploration_module = EGreedyModule(spec=env.action_spec, annealing_num_steps=1000, eps_init=0.5)
    exploration_policy = TensorDictSequential(policy, exploration_module)
    with set_exploration_type(ExplorationType.MEAN):
        env.rollout(max_steps=10, policy=exploration_policy)
    with set_exploration_type(ExplorationType.RANDOM):
        env.rollout(max_steps=10, policy=exploration_policy)

    env = GymEnv("CartPole-v1")
    print(env.action_spec)
    value_net = TensorDictModule(
        MLP(out_features=2, num_cells=[32, 32]), in_keys=["observation"], out_keys=["action_value"]
    )
    from tdrl.modules import QValueModule

    # the tutorial passes the spec as action_space=, which TorchRL 0.14.1 itself refuses
    # ("Using specs in action_space is deprecated"); its argument for a spec is spec=
    policy = TensorDictSequential(value_net, QValueModule(spec=env.action_spec))
    rollout = env.rollout(max_steps=3, policy=policy)
    assert "chosen_action_value" in rollout.keys()
    policy_explore = TensorDictSequential(policy, EGreedyModule(env.action_spec))
    with set_exploration_type(ExplorationType.RANDOM):
        env.rollout(max_steps=3, policy=policy_explore)


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
