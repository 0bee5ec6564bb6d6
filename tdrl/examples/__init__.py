"""Runnable examples: ``python -m tdrl.examples.ppo`` trains PPO end to end."""

__all__: list[str] = []
