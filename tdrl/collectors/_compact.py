"""``compact_obs``: which ``("next", ...)`` entries a collector leaves out of its batches.

Within a trajectory, the observations under ``"next"`` at step ``t`` are those at the
root of step ``t + 1``; a collector built with ``compact_obs=True`` records them only
once, at the root. The entries left out are every leaf of the env's observation and
state specs (recurrent states and ``is_init`` included); reward and done flags stay,
as they cannot be rebuilt from the root. They still reach the next step's root: only
the recording is skipped, so the stepping loop does less work, not more.
:class:`~tdrl.envs.transforms.NextStateReconstructor` rebuilds them when sampling.
"""

from __future__ import annotations

from collections.abc import Iterable

from tdrl.envs._stepping import StepRecorder
from tdrl.envs.common import EnvBase

__all__ = ["compact_next_keys", "stop_recording"]


def _as_tuple(key: str | tuple) -> tuple:
    return (key,) if isinstance(key, str) else tuple(key)


def compact_next_keys(env: EnvBase) -> tuple[tuple, ...]:
    """The ``("next", ...)`` keys that ``compact_obs=True`` drops: the observation and state leaves.

    Examples:
        >>> from tdrl.envs import InitTracker, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> compact_next_keys(TransformedEnv(CountingEnv(), InitTracker()))
        (('next', 'observation'), ('next', 'is_init'))
    """
    keys: list[tuple] = []
    for spec in (env.full_observation_spec, env.full_state_spec):
        for key in spec.keys(True, True):
            full = ("next", *_as_tuple(key))
            if full not in keys:
                keys.append(full)
    return tuple(keys)


def stop_recording(recorder: StepRecorder, keys: Iterable[tuple]) -> None:
    """Make ``recorder`` skip ``keys`` (relative to it); the entries are still carried to the next root.

    A sub-TensorDict left with nothing to record is skipped as a whole.
    """
    for key in keys:
        head, rest = key[0], key[1:]
        if not rest:
            if head in recorder.lists:
                del recorder.lists[head]
                del recorder.zeros[head]
                recorder.clone.discard(head)
                recorder.originals.pop(head, None)
                recorder.n -= 1
            continue
        sub = recorder.subs.get(head)
        if sub is None:
            continue
        stop_recording(sub, [rest])
        if not sub.lists and not sub.subs:
            del recorder.subs[head]
            recorder.n -= 1
