"""TorchRL's "Get started with logging" (getting-started-4), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``; it runs in a scratch directory (the CSV logger writes under the working dir).
Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""


def main(scale: float = 1.0):
    from tdrl.record import CSVLogger

    logger = CSVLogger(exp_name="my_exp")
    logger.log_scalar("my_scalar", 0.4)
    from tdrl.envs import GymEnv

    env = GymEnv("CartPole-v1", from_pixels=True, pixels_only=False)
    print(env.rollout(max_steps=3))
    from tdrl.envs import TransformedEnv
    from tdrl.record import VideoRecorder

    recorder = VideoRecorder(logger, tag="my_video")
    record_env = TransformedEnv(env, recorder)
    rollout = record_env.rollout(max_steps=3)
    assert rollout["next", "pixels"].shape[0] == 3
    recorder.dump()


if __name__ == "__main__":
    import os

    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
