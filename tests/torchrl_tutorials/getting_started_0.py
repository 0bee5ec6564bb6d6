"""TorchRL's "Get started with Environments, TED and transforms" (getting-started-0), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``. Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""


def main(scale: float = 1.0):
    from tdrl.envs import GymEnv

    env = GymEnv("Pendulum-v1")
    reset = env.reset()
    reset_with_action = env.rand_action(reset)
    print(reset_with_action["action"])
    stepped_data = env.step(reset_with_action)
    assert ("next", "reward") in stepped_data.keys(True)
    from tdrl.envs import step_mdp

    data = step_mdp(stepped_data)
    assert "next" not in data.keys()
    rollout = env.rollout(max_steps=10)
    transition = rollout[3]
    assert transition.batch_size == ()
    from tdrl.envs import StepCounter, TransformedEnv

    transformed_env = TransformedEnv(env, StepCounter(max_steps=10))
    rollout = transformed_env.rollout(max_steps=100)
    assert rollout.batch_size == (10,)
    assert rollout["next", "truncated"][-1].item()


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
