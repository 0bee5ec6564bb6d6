"""Runnable examples: ``python -m tdrl.examples.ppo`` trains PPO end to end, ``python -m tdrl.examples.dqn`` DQN."""

__all__: list[str] = []
