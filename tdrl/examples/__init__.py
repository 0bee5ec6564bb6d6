"""Runnable main jobs: ``python -m tdrl.examples.ppo``, ``... .dqn`` and ``... .sac`` train end to end."""

__all__: list[str] = []
