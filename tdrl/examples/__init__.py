"""Runnable examples: ``python -m tdrl.examples.ppo`` trains PPO end to end, ``python -m tdrl.examples.dqn`` DQN, ``python -m tdrl.examples.sac`` SAC."""

__all__: list[str] = []
