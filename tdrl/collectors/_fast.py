"""Fast paths between the collector and env backends (placeholder)."""

from __future__ import annotations

from typing import Any

__all__ = ["make_fast_stepper"]


def make_fast_stepper(env: Any, td: Any) -> None:
    return None
