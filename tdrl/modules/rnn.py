"""Recurrent TensorDict modules: ``LSTMModule``, ``GRUModule`` and the recurrent-mode switch.

A recurrent module reads an input entry and its hidden state(s) from the TensorDict and
writes its output and the next hidden state(s), by default under ``("next", <state key>)``
so that the env's step carries them to the root of the following step. It runs in one
of two modes:

- **step mode** (the default, used while collecting): every batch element is one step;
  the incoming hidden state is zeroed where ``is_init`` is True (an episode starts).
- **recurrent mode** (inside :class:`set_recurrent_mode`, used while training): the last
  batch dim is time; each row is run as a sequence starting from the hidden state stored
  at its first step, and restarted from the stored hidden state wherever ``is_init`` is
  True further along the row (a new episode inside the same slice). The hidden outputs
  are zero except at the last step of each episode piece, which holds the final state.

The env must know the hidden-state entries (so that resets, batched envs and collectors
carry them): append ``module.make_tensordict_primer()`` to the env, with an
:class:`~tdrl.envs.InitTracker` for ``is_init``.

The module holds the two public classes; the pieces they share live beside it:
``_recurrent_mode`` (the mode switch), ``_rnn_kernels`` (the LSTM/GRU computations),
``_rnn_base`` (the shared TensorDict module) and ``_rnn_primers`` (hidden-state checks).
Every name is importable from here as before.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> lstm = LSTMModule(input_size=3, hidden_size=5, in_key="obs", out_key="features")
    >>> td = TensorDict(obs=torch.randn(4, 3), is_init=torch.ones(4, 1, dtype=torch.bool), batch_size=[4])
    >>> lstm(td)["next", "recurrent_state_h"].shape
    torch.Size([4, 1, 5])
    >>> seq = TensorDict(obs=torch.randn(2, 6, 3), is_init=torch.zeros(2, 6, 1, dtype=torch.bool), batch_size=[2, 6])
    >>> with set_recurrent_mode(True):
    ...     lstm(seq)["features"].shape
    torch.Size([2, 6, 5])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from tensordict.utils import NestedKey
from torch import nn

from tdrl.modules._recurrent_mode import recurrent_mode, set_recurrent_mode
from tdrl.modules._rnn_base import MODE_SETTER as MODE_SETTER  # the error templates stay importable from here
from tdrl.modules._rnn_base import NO_INPUT as NO_INPUT
from tdrl.modules._rnn_base import NO_IS_INIT as NO_IS_INIT
from tdrl.modules._rnn_base import PRIMER_KEYS as PRIMER_KEYS
from tdrl.modules._rnn_base import _check_backend, _check_wrapped, _RecurrentModuleBase
from tdrl.modules._rnn_primers import MISSING_PRIMER as MISSING_PRIMER
from tdrl.modules._rnn_primers import check_recurrent_primers, next_sequence_inputs

__all__ = [
    "LSTMModule",
    "GRUModule",
    "set_recurrent_mode",
    "recurrent_mode",
    "check_recurrent_primers",
    "next_sequence_inputs",
]


class LSTMModule(_RecurrentModuleBase):
    """An ``nn.LSTM`` read from and written to a TensorDict, one step at a time or over sequences.

    Step mode (default) treats every batch element as one step and zeroes the incoming
    hidden state where ``is_init`` is True; recurrent mode (:class:`set_recurrent_mode`)
    treats the last batch dim as time and restarts the state at every ``is_init`` along it.

    Args:
        input_size: features of the input entry.
        hidden_size: features of the hidden state.
        num_layers: stacked LSTM layers.
        bias: whether the layers have biases.
        batch_first: must be True (kept for TorchRL's signature).
        dropout: dropout between stacked layers.
        proj_size: the size of the projected hidden state ``h`` (0: none).
        bidirectional: a bidirectional LSTM (sequence mode only makes sense then).
        python_based: run the cells in Python instead of ``nn.LSTM``'s kernel (same
            parameters and results; works with ``torch.vmap``).
        recurrent_backend: ``"auto"``, ``"pad"`` or ``"scan"``; accepted for TorchRL
            compatibility, tdrl has one sequence path.

    Keyword Args:
        in_key: the input entry; the hidden states are then read from
            ``"recurrent_state_h"`` and ``"recurrent_state_c"``.
        in_keys: ``[input, h, c]`` (optionally followed by ``"is_init"``), instead of ``in_key``.
        out_key: the output entry; the hidden states go to ``("next", "recurrent_state_h")``
            and ``("next", "recurrent_state_c")``.
        out_keys: ``[output, h_next, c_next]``, instead of ``out_key``.
        device: where to build the LSTM.
        lstm: an existing ``nn.LSTM`` (``batch_first=True``) to wrap, instead of building one.
        default_recurrent_mode: the mode outside any :class:`set_recurrent_mode` block.

    Raises:
        ValueError: for both or neither of ``in_key``/``in_keys`` (or ``out_key``/``out_keys``),
            the wrong number of keys, ``batch_first=False``, a missing ``hidden_size``, or
            ``python_based`` with ``bidirectional`` or ``proj_size``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule, TensorDictSequential
        >>> from tdrl.envs import InitTracker, TransformedEnv
        >>> from tdrl.testing import ContinuousActionMock
        >>> env = TransformedEnv(ContinuousActionMock(obs_dim=3, action_dim=2), InitTracker())
        >>> lstm = LSTMModule(input_size=3, hidden_size=8, in_key="observation", out_key="features")
        >>> env = env.append_transform(lstm.make_tensordict_primer())
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 2), torch.nn.Tanh())
        >>> head = TensorDictModule(net, ["features"], ["action"])
        >>> policy = TensorDictSequential(lstm, head)
        >>> data = env.rollout(3, policy)
        >>> torch.equal(data["recurrent_state_h"][1], data["next", "recurrent_state_h"][0])
        True
    """

    DEFAULT_IN_KEYS: ClassVar[list[NestedKey]] = ["recurrent_state_h", "recurrent_state_c"]
    DEFAULT_OUT_KEYS: ClassVar[list[NestedKey]] = [("next", "recurrent_state_h"), ("next", "recurrent_state_c")]
    _n_states = 2

    def __init__(
        self,
        input_size: int | None = None,
        hidden_size: int | None = None,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0,
        proj_size: int = 0,
        bidirectional: bool = False,
        python_based: bool = False,
        recurrent_backend: str = "pad",
        *,
        in_key: NestedKey | None = None,
        in_keys: Sequence[NestedKey] | None = None,
        out_key: NestedKey | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        device: torch.device | str | None = None,
        lstm: nn.LSTM | None = None,
        default_recurrent_mode: bool | None = None,
    ) -> None:
        super().__init__()
        cls = f"{type(self).__name__}"
        _check_backend(cls, recurrent_backend)
        if lstm is not None:
            _check_wrapped(cls, lstm, "lstm", input_size, hidden_size)
        else:
            if not batch_first:
                raise ValueError(f"{cls}: batch_first must be True (the time dim follows the batch dims).")
            if not hidden_size:
                raise ValueError(f"{cls}: hidden_size must be given (or an existing nn.LSTM as lstm=).")
            if python_based and (bidirectional or proj_size):
                raise ValueError(f"{cls}: python_based=True supports neither bidirectional nor proj_size.")
            lstm = nn.LSTM(
                input_size=input_size,
                hidden_size=hidden_size,
                num_layers=num_layers,
                bias=bias,
                dropout=dropout,
                proj_size=proj_size,
                device=device,
                batch_first=True,
                bidirectional=bidirectional,
            )
        self._set_keys(in_key, in_keys, out_key, out_keys)
        self.lstm = lstm
        self._python_based = python_based
        self.recurrent_backend = recurrent_backend
        self._recurrent_mode = default_recurrent_mode

    @property
    def _rnn(self) -> nn.RNNBase:
        return self.lstm

    def make_python_based(self) -> LSTMModule:
        """Run the cells in Python from now on (same parameters); returns self."""
        self._python_based = True
        return self

    def make_cudnn_based(self) -> LSTMModule:
        """Run ``nn.LSTM``'s own kernel from now on (same parameters); returns self."""
        self._python_based = False
        return self


class GRUModule(_RecurrentModuleBase):
    """An ``nn.GRU`` read from and written to a TensorDict, one step at a time or over sequences.

    The same modes as :class:`LSTMModule`, with one hidden state.

    Args:
        input_size: features of the input entry.
        hidden_size: features of the hidden state.
        num_layers: stacked GRU layers.
        bias: whether the layers have biases.
        batch_first: must be True (kept for TorchRL's signature).
        dropout: dropout between stacked layers.
        bidirectional: a bidirectional GRU.
        python_based: run the cells in Python instead of ``nn.GRU``'s kernel.
        recurrent_backend: ``"auto"``, ``"pad"`` or ``"scan"`` (one path in tdrl).

    Keyword Args:
        in_key: the input entry; the hidden state is read from ``"recurrent_state"``.
        in_keys: ``[input, h]`` (optionally followed by ``"is_init"``), instead of ``in_key``.
        out_key: the output entry; the hidden state goes to ``("next", "recurrent_state")``.
        out_keys: ``[output, h_next]``, instead of ``out_key``.
        device: where to build the GRU.
        gru: an existing ``nn.GRU`` (``batch_first=True``) to wrap.
        default_recurrent_mode: the mode outside any :class:`set_recurrent_mode` block.

    Raises:
        ValueError: as :class:`LSTMModule`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> gru = GRUModule(input_size=3, hidden_size=4, in_key="obs", out_key="features")
        >>> td = TensorDict(obs=torch.randn(2, 5, 3), is_init=torch.zeros(2, 5, 1, dtype=torch.bool),
        ...                 batch_size=[2, 5])
        >>> td["is_init"][:, 2] = True  # a new episode starts at step 2 of each row
        >>> with set_recurrent_mode(True):
        ...     out = gru(td)
        >>> out["next", "recurrent_state"].shape
        torch.Size([2, 5, 1, 4])
    """

    DEFAULT_IN_KEYS: ClassVar[list[NestedKey]] = ["recurrent_state"]
    DEFAULT_OUT_KEYS: ClassVar[list[NestedKey]] = [("next", "recurrent_state")]
    _n_states = 1

    def __init__(
        self,
        input_size: int | None = None,
        hidden_size: int | None = None,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0,
        bidirectional: bool = False,
        python_based: bool = False,
        recurrent_backend: str = "pad",
        *,
        in_key: NestedKey | None = None,
        in_keys: Sequence[NestedKey] | None = None,
        out_key: NestedKey | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        device: torch.device | str | None = None,
        gru: nn.GRU | None = None,
        default_recurrent_mode: bool | None = None,
    ) -> None:
        super().__init__()
        cls = f"{type(self).__name__}"
        _check_backend(cls, recurrent_backend)
        if gru is not None:
            _check_wrapped(cls, gru, "gru", input_size, hidden_size)
        else:
            if not batch_first:
                raise ValueError(f"{cls}: batch_first must be True (the time dim follows the batch dims).")
            if not hidden_size:
                raise ValueError(f"{cls}: hidden_size must be given (or an existing nn.GRU as gru=).")
            if python_based and bidirectional:
                raise ValueError(f"{cls}: python_based=True does not support bidirectional.")
            gru = nn.GRU(
                input_size=input_size,
                hidden_size=hidden_size,
                num_layers=num_layers,
                bias=bias,
                dropout=dropout,
                device=device,
                batch_first=True,
                bidirectional=bidirectional,
            )
        self._set_keys(in_key, in_keys, out_key, out_keys)
        self.gru = gru
        self._python_based = python_based
        self.recurrent_backend = recurrent_backend
        self._recurrent_mode = default_recurrent_mode

    @property
    def _rnn(self) -> nn.RNNBase:
        return self.gru

    def make_python_based(self) -> GRUModule:
        """Run the cells in Python from now on (same parameters); returns self."""
        self._python_based = True
        return self

    def make_cudnn_based(self) -> GRUModule:
        """Run ``nn.GRU``'s own kernel from now on (same parameters); returns self."""
        self._python_based = False
        return self
