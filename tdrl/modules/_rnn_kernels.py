"""The computations behind LSTMModule and GRUModule: kernels, cells and the Python loop.

Internal. ``_kernel``/``_cell`` pick the ``torch.lstm``/``torch.gru`` (or one-step cell)
call that ``nn.LSTM``/``nn.GRU`` would make; ``_python_loop`` runs the same recurrence
step by step (no cuDNN; vmap and compile friendly); ``_write_outputs`` stores a step's
outputs in the TensorDict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F

from tdrl._compat import FAST_PATHS, has_forward_hooks, rnn_weights, td_attach, td_read, td_unchecked, td_write


def _layer_params(rnn: nn.RNNBase, layer: int) -> tuple:
    w_ih = getattr(rnn, f"weight_ih_l{layer}")
    w_hh = getattr(rnn, f"weight_hh_l{layer}")
    b_ih = getattr(rnn, f"bias_ih_l{layer}", None) if rnn.bias else None
    b_hh = getattr(rnn, f"bias_hh_l{layer}", None) if rnn.bias else None
    return w_ih, w_hh, b_ih, b_hh


def _python_loop(rnn: nn.RNNBase, x: torch.Tensor, hidden: tuple, lengths: torch.Tensor | None, lstm: bool) -> tuple:
    """Run ``rnn`` (an nn.LSTM/nn.GRU's parameters) step by step in Python.

    ``x`` is ``[N, T, F]``, each hidden ``[L, N, H]``. Rows shorter than ``T`` (``lengths``)
    keep their state frozen after their last step, so the returned state is the one after
    each row's last real step.
    """
    steps = x.shape[1]
    active = None if lengths is None else torch.arange(steps, device=x.device).unsqueeze(1) < lengths.to(x.device)
    layer_input = x
    finals: list[list[torch.Tensor]] = [[] for _ in hidden]
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = _layer_params(rnn, layer)
        state = [h[layer] for h in hidden]
        gates_in = F.linear(layer_input, w_ih, b_ih)
        outputs = []
        for t in range(steps):
            h = state[0]
            gh = F.linear(h, w_hh, b_hh)
            if lstm:
                i, f, g, o = (gates_in[:, t] + gh).chunk(4, dim=-1)
                c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
                new = [torch.sigmoid(o) * torch.tanh(c), c]
            else:
                xr, xz, xn = gates_in[:, t].chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                new = [(1 - z) * n + z * h]
            if active is not None:
                keep = active[t].unsqueeze(-1)
                new = [torch.where(keep, n_, s_) for n_, s_ in zip(new, state)]
            state = new
            outputs.append(new[0])
        layer_input = torch.stack(outputs, 1)
        if rnn.dropout and rnn.training and layer < rnn.num_layers - 1:
            layer_input = F.dropout(layer_input, rnn.dropout, training=True)
        for slot, s in zip(finals, state):
            slot.append(s)
    return layer_input, tuple(torch.stack(f, 0) for f in finals)


def _write_outputs(tensordict: TensorDictBase, keys: Sequence[NestedKey], values: Sequence[torch.Tensor]) -> None:
    """``tensordict.set(key, value)`` for each pair; the ``("next", name)`` ones go in one sub-TensorDict.

    The outputs have the TensorDict's batch dims and the inputs' device, so a missing
    ``"next"`` of a plain unlocked TensorDict is built from them at once (what ``set``
    would build entry by entry); anything else goes through ``set``.
    """
    nested: dict[str, torch.Tensor] = {}
    for key, value in zip(keys, values):
        if type(key) is tuple and len(key) == 2 and key[0] == "next" and type(key[1]) is str:
            nested[key[1]] = value
        else:
            td_write(tensordict, key, value)
    if not nested:
        return
    if type(tensordict) is TensorDict and td_read(tensordict, "next") is None:
        device = tensordict.device
        if device is None or all(v.device == device for v in nested.values()):
            td_attach(tensordict, "next", td_unchecked(nested, tensordict.batch_size, device))
            return
    for name, value in nested.items():
        tensordict.set(("next", name), value)


def _lstm_kernel(rnn: nn.RNNBase, x: torch.Tensor, hidden: tuple) -> tuple:
    weights = cast(list, rnn_weights(rnn))  # _kernel/_cell checked it is known
    y, h, c = torch.lstm(
        x, hidden, weights, rnn.bias, rnn.num_layers, rnn.dropout, rnn.training, rnn.bidirectional, True
    )
    return y, (h, c)


def _gru_kernel(rnn: nn.RNNBase, x: torch.Tensor, hidden: tuple) -> tuple:
    weights = cast(list, rnn_weights(rnn))  # _kernel/_cell checked it is known
    y, h = torch.gru(
        x, hidden[0], weights, rnn.bias, rnn.num_layers, rnn.dropout, rnn.training, rnn.bidirectional, True
    )
    return y, (h,)


_KERNELS: dict[type, Callable[..., tuple]] = {nn.LSTM: _lstm_kernel, nn.GRU: _gru_kernel}


def _kernel(rnn: nn.RNNBase) -> Callable[..., tuple] | None:
    """The ``torch.lstm``/``torch.gru`` call ``rnn.forward`` makes, or ``None`` where ``rnn(...)`` must run.

    ``nn.LSTM.forward`` spends about as long checking its arguments and weight references
    as the kernel takes for one small step; the module builds the kernel's inputs itself
    (batch first, 3-D, hidden states of the right shape), so it calls the same kernel with
    the module's current parameters. Subclasses (their own forward), hooked modules and a
    torch whose weight list tdrl does not know keep ``rnn(...)``.
    """
    if not FAST_PATHS["rnn_weights"] or has_forward_hooks(rnn):
        return None
    return _KERNELS.get(type(rnn))


def _cell(rnn: nn.RNNBase) -> Callable[..., Any] | None:
    """``torch.lstm_cell``/``torch.gru_cell`` where one step of ``rnn`` is exactly one cell call, else ``None``.

    One layer, one direction, no projection: the cell computes the same gates from the same
    parameters as the sequence kernel (to rounding), in a quarter of its time for one step.
    """
    if rnn.num_layers != 1 or rnn.bidirectional or rnn.proj_size or _kernel(rnn) is None:
        return None
    return torch.lstm_cell if type(rnn) is nn.LSTM else torch.gru_cell


def _run_cell(cell: Callable[..., Any], rnn: nn.RNNBase, value: torch.Tensor, states: list, lead: tuple) -> list:
    """One step of a one-layer ``rnn`` through its cell: ``value`` [*B, F], states [*B, 1, H] each."""
    weights = cast(list, rnn_weights(rnn))  # _kernel/_cell checked it is known
    if lead:
        x = value.reshape(-1, value.shape[-1])
        hx = [s.reshape(-1, s.shape[-1]) for s in states]
    else:  # one env: the states' [1, H] is the cell's batch of one
        x = value.unsqueeze(0)
        hx = states
    if len(hx) == 2:
        finals = cell(x, (hx[0], hx[1]), *weights)
    else:
        finals = (cell(x, hx[0], *weights),)
    # the output is the new h, as its own tensor (an in-place op on it must not change the stored state)
    y = finals[0].clone()
    if not lead:
        return [y.reshape(y.shape[-1]), *finals]
    return [y.reshape(*lead, y.shape[-1]), *(h.reshape(*lead, 1, h.shape[-1]) for h in finals)]
