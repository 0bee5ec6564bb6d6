"""Checks and helpers around the hidden states that recurrent modules carry between steps.

:func:`check_recurrent_primers` (the env must declare every hidden state a policy reads)
and :func:`next_sequence_inputs` (a value network's inputs at the next step of a
sequence). Exported by ``tdrl.modules`` and ``tdrl.modules.rnn``.
"""

from __future__ import annotations

from typing import Any

from tensordict import TensorDictBase
from tensordict.utils import unravel_key
from torch import nn

from tdrl.modules._rnn_base import _RecurrentModuleBase

__all__ = ["check_recurrent_primers", "next_sequence_inputs"]

MISSING_PRIMER = (
    "{owner}: the policy's {module} reads its hidden state {key!r}, which the env does not declare, so the "
    "state would restart from zero at every step instead of being carried. Add the module's primer to the "
    "env: env.append_transform(module.make_tensordict_primer()) (or env.append_transform("
    "get_primers_from_module(policy)) for every recurrent submodule), with InitTracker() for 'is_init'."
)


def check_recurrent_primers(policy: Any, env: Any, owner: str = "rollout") -> None:
    """Raise if a recurrent submodule of ``policy`` reads a hidden state that ``env`` does not declare.

    Without the module's :class:`~tdrl.envs.TensorDictPrimer` the env neither carries nor
    resets the state, and the module silently starts from zeros at every step. Rollouts
    and collectors call this once, before their first step.

    Args:
        policy: the policy (anything that is not an ``nn.Module`` is not checked).
        env: the env the policy runs in.
        owner: who asks, for the message.

    Raises:
        ValueError: naming the module, the key and the fix.

    Examples:
        >>> from tdrl.envs import InitTracker, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> from tdrl.modules import GRUModule
        >>> gru = GRUModule(input_size=1, hidden_size=2, in_key="observation", out_key="features")
        >>> env = TransformedEnv(CountingEnv(), InitTracker())
        >>> check_recurrent_primers(gru, env)
        Traceback (most recent call last):
        ...
        ValueError: rollout: the policy's GRUModule reads its hidden state 'recurrent_state', ...
        >>> env = env.append_transform(gru.make_tensordict_primer())
        >>> check_recurrent_primers(gru, env)
    """
    if not isinstance(policy, nn.Module):
        return
    declared = None
    for sub in policy.modules():
        if not isinstance(sub, _RecurrentModuleBase):
            continue
        if declared is None:
            declared = set(env.full_observation_spec.keys(True, True)) | set(env.full_state_spec.keys(True, True))
        for key in sub.in_keys[1:-1]:
            if unravel_key(key) not in declared:
                raise ValueError(MISSING_PRIMER.format(owner=owner, module=type(sub).__name__, key=key))


def next_sequence_inputs(root: TensorDictBase, next_inputs: TensorDictBase, module: Any) -> TensorDictBase:
    """The ``"next"`` inputs of a ``[*B, T]`` batch, ready for ``module`` to run them as sequences.

    In recurrent mode, a recurrent module runs the next observations ``o[t+1]`` of each row
    as one sequence, starting from the state stored under ``"next"`` at the first step.
    Where an episode starts at step ``t`` (``is_init`` at the root), the state carried
    along that sequence belongs to the previous episode; the right one is the state stored
    after step ``t``, ``("next", <state>)[t]``. Marking ``is_init`` of the next inputs where
    the root's is set makes the module restart from it there, so the next-state values are
    those the module computed while stepping. Value estimators and losses call this before
    running a network on the next inputs; outside recurrent mode it returns them unchanged.

    Args:
        root: the batch (holding the root ``is_init`` entries).
        next_inputs: the inputs read under ``"next"`` (a selection; it is not modified).
        module: the network about to run on ``next_inputs``.

    Returns:
        ``next_inputs``, or a shallow copy whose ``is_init`` of each recurrent submodule also
        holds the root's (TorchRL's value estimators mark the next inputs the same way).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.modules import GRUModule, set_recurrent_mode
        >>> gru = GRUModule(input_size=1, hidden_size=2, in_key="obs", out_key="y")
        >>> starts = torch.tensor([[True, False, True]]).unsqueeze(-1)
        >>> root = TensorDict(is_init=starts, batch_size=[1, 3])
        >>> nxt = TensorDict(is_init=torch.zeros_like(starts), batch_size=[1, 3])
        >>> with set_recurrent_mode(True):
        ...     next_sequence_inputs(root, nxt, gru)["is_init"].squeeze(-1)
        tensor([[ True, False,  True]])
        >>> next_sequence_inputs(root, nxt, gru) is nxt  # step mode: every step reads its stored state
        True
    """
    if not isinstance(module, nn.Module) or next_inputs.batch_dims < 1:
        return next_inputs
    out = next_inputs
    for sub in module.modules():
        if not isinstance(sub, _RecurrentModuleBase) or not sub.recurrent_mode:
            continue
        key = sub.in_keys[-1]
        starts = root.get(key, None)
        if starts is None:
            continue
        if out is next_inputs:
            out = next_inputs.copy()
        marked = out.get(key, None)
        out.set(key, starts if marked is None else marked | starts)
    return out
