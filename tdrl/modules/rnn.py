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

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar, cast

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key, unravel_key_list
from torch import nn
from torch.nn import functional as F

from tdrl._compat import FAST_PATHS, has_forward_hooks, rnn_weights, td_attach, td_read, td_unchecked, td_write

__all__ = [
    "LSTMModule",
    "GRUModule",
    "set_recurrent_mode",
    "recurrent_mode",
    "check_recurrent_primers",
    "next_sequence_inputs",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_MODE_STACK: list[bool | None] = [None]

NO_IS_INIT = (
    "{cls} reads {key!r} to know where episodes start, but the TensorDict has no such entry; its keys "
    "are {keys}. Add InitTracker() to the env (env.append_transform(InitTracker())), or write {key!r} "
    "yourself (True at the first step of each episode)."
)
NO_INPUT = (
    "{cls} reads its input {key!r}, which is not in the TensorDict; its keys are {keys}. "
    "Pass in_key/in_keys that the env or the previous module writes."
)
MODE_SETTER = (
    "{cls}.set_recurrent_mode() was removed in TorchRL 0.8 and tdrl follows it: run the module inside "
    "`with set_recurrent_mode(True):` (tdrl.modules.set_recurrent_mode), or construct it with "
    "default_recurrent_mode=True."
)
MISSING_PRIMER = (
    "{owner}: the policy's {module} reads its hidden state {key!r}, which the env does not declare, so the "
    "state would restart from zero at every step instead of being carried. Add the module's primer to the "
    "env: env.append_transform(module.make_tensordict_primer()) (or env.append_transform("
    "get_primers_from_module(policy)) for every recurrent submodule), with InitTracker() for 'is_init'."
)
PRIMER_KEYS = (
    "{cls}.make_tensordict_primer needs each hidden out_key to be ('next', <its in_key>) so that the env "
    "carries it from step to step; got in_keys={in_keys} and out_keys={out_keys}. Name the out_keys "
    "('next', <in_key>) for the hidden states."
)


def recurrent_mode() -> bool | None:
    """The recurrent mode set by the innermost :class:`set_recurrent_mode` (None outside any).

    Examples:
        >>> recurrent_mode() is None
        True
        >>> with set_recurrent_mode(True):
        ...     recurrent_mode()
        True
    """
    return _MODE_STACK[-1]


class set_recurrent_mode:
    """Run the recurrent modules in recurrent (sequence) or step mode; a context manager or decorator.

    Args:
        mode: ``True`` or ``"recurrent"`` (the last batch dim is time), ``False`` or
            ``"sequential"`` (every element is one step), or ``None`` (each module's
            ``default_recurrent_mode``).

    Raises:
        ValueError: for a string other than ``"recurrent"`` or ``"sequential"``.

    Examples:
        >>> @set_recurrent_mode("recurrent")
        ... def train_step():
        ...     return recurrent_mode()
        >>> train_step(), recurrent_mode()
        (True, None)
    """

    def __init__(self, mode: bool | str | None = True) -> None:
        if isinstance(mode, str):
            lowered = mode.lower()
            if lowered not in ("recurrent", "sequential"):
                raise ValueError(
                    f"set_recurrent_mode: mode must be a bool, None, 'recurrent' or 'sequential'; got {mode!r}."
                )
            mode = lowered == "recurrent"
        self.mode = mode

    def __enter__(self) -> None:
        _MODE_STACK.append(self.mode)

    def __exit__(self, *exc: object) -> None:
        _MODE_STACK.pop()

    def __call__(self, fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with set_recurrent_mode(self.mode):
                return fn(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    def clone(self) -> set_recurrent_mode:
        """A fresh context manager with the same mode."""
        return set_recurrent_mode(self.mode)


# --- python-based cells (no cuDNN: vmap/compile friendly) -------------------------------------------
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


class _RecurrentModuleBase(TensorDictModuleBase):
    """What LSTMModule and GRUModule share: keys, modes, the step and sequence paths."""

    _n_states: int
    DEFAULT_IN_KEYS: ClassVar[list[NestedKey]]
    DEFAULT_OUT_KEYS: ClassVar[list[NestedKey]]

    def _set_keys(
        self,
        in_key: NestedKey | None,
        in_keys: Sequence[NestedKey] | None,
        out_key: NestedKey | None,
        out_keys: Sequence[NestedKey] | None,
    ) -> None:
        cls = f"{type(self).__name__}"
        if (in_key is None) == (in_keys is None):
            raise ValueError(
                f"{cls}: pass exactly one of in_key and in_keys; got in_key={in_key!r}, in_keys={in_keys!r}."
            )
        if (out_key is None) == (out_keys is None):
            raise ValueError(
                f"{cls}: pass exactly one of out_key and out_keys; got out_key={out_key!r}, out_keys={out_keys!r}."
            )
        given_ins = [in_key, *self.DEFAULT_IN_KEYS] if in_key is not None else list(in_keys or [])
        given_outs = [out_key, *self.DEFAULT_OUT_KEYS] if out_key is not None else list(out_keys or [])
        ins: list[NestedKey] = list(unravel_key_list(given_ins))
        outs: list[NestedKey] = list(unravel_key_list(given_outs))
        n = 1 + self._n_states
        if not (len(ins) == n or (len(ins) == n + 1 and ins[-1] == "is_init")):
            raise ValueError(
                f"{cls} expects {n} in_keys (the input and {self._n_states} hidden state(s), optionally followed "
                f"by 'is_init'); got {ins}."
            )
        if len(outs) != n:
            raise ValueError(
                f"{cls} expects {n} out_keys (the output and {self._n_states} hidden state(s)); got {outs}."
            )
        if "is_init" not in ins:
            ins.append("is_init")
        self.in_keys = ins  # type: ignore[assignment]
        self.out_keys = outs  # type: ignore[assignment]

    @property
    def _rnn(self) -> nn.RNNBase:
        raise NotImplementedError

    @property
    def recurrent_mode(self) -> bool:
        """Whether the module runs whole sequences (see :class:`set_recurrent_mode`)."""
        mode = recurrent_mode()
        if mode is None:
            return bool(self._recurrent_mode)
        return mode

    @recurrent_mode.setter
    def recurrent_mode(self, value: bool) -> None:
        raise RuntimeError(
            f"{type(self).__name__}.recurrent_mode cannot be assigned; use `with set_recurrent_mode(...)` "
            "or default_recurrent_mode= in the constructor."
        )

    def set_recurrent_mode(self, mode: bool = True) -> None:
        """Removed in TorchRL 0.8: raises, pointing to :class:`set_recurrent_mode`.

        Raises:
            RuntimeError: always.
        """
        raise RuntimeError(MODE_SETTER.format(cls=type(self).__name__))

    def _state_shapes(self) -> list[tuple[int, int]]:
        rnn = self._rnn
        layers = rnn.num_layers * (2 if rnn.bidirectional else 1)
        proj = getattr(rnn, "proj_size", 0)
        sizes = [proj if proj > 0 else rnn.hidden_size, rnn.hidden_size][: self._n_states]
        return [(layers, size) for size in sizes]

    def make_tensordict_primer(self) -> Any:
        """A :class:`~tdrl.envs.TensorDictPrimer` declaring the hidden states to the env (zeros at reset).

        Raises:
            RuntimeError: when a hidden out_key is not ``("next", <its in_key>)``.
        """
        from tdrl.envs.transforms.primer import TensorDictPrimer  # (tdrl.envs imports tdrl.modules)
        from tdrl.specs import Unbounded

        primers = {}
        for i, shape in enumerate(self._state_shapes(), start=1):
            in_key = unravel_key(self.in_keys[i])
            out_key = unravel_key(self.out_keys[i])
            in_tuple = in_key if isinstance(in_key, tuple) else (in_key,)
            if out_key != ("next", *in_tuple):
                raise RuntimeError(
                    PRIMER_KEYS.format(cls=type(self).__name__, in_keys=self.in_keys, out_keys=self.out_keys)
                )
            primers[in_key] = Unbounded(shape=shape)
        return TensorDictPrimer(primers, expand_specs=True)

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        in_keys = self.in_keys
        value = td_read(tensordict, in_keys[0])
        if value is None:
            raise KeyError(
                NO_INPUT.format(
                    cls=type(self).__name__, key=in_keys[0], keys=sorted(map(str, tensordict.keys(True, True)))
                )
            )
        is_init = td_read(tensordict, in_keys[-1])
        if is_init is None:
            raise KeyError(
                NO_IS_INIT.format(
                    cls=type(self).__name__, key=in_keys[-1], keys=sorted(map(str, tensordict.keys(True, True)))
                )
            )
        states = [td_read(tensordict, k) for k in in_keys[1:-1]]
        batch = tensordict.batch_size
        if self.recurrent_mode:
            if not batch:
                raise ValueError(
                    f"{type(self).__name__} in recurrent mode needs a TensorDict with at least one batch dim (time, "
                    "the last); got batch_size []. Unsqueeze a time dim or run it outside set_recurrent_mode(True)."
                )
            outs = self._run_sequences(value, states, is_init, batch)
        else:
            outs = self._run_step(value, states, is_init, batch)
        _write_outputs(tensordict, self.out_keys, outs)
        return tensordict

    def _zeros(self, lead: tuple, like: torch.Tensor) -> list[torch.Tensor]:
        return [like.new_zeros(*lead, *shape) for shape in self._state_shapes()]

    def _call_rnn(self, x: torch.Tensor, hidden: tuple, lengths: torch.Tensor | None) -> tuple:
        """``x`` [N, T, F], hidden [L, N, H] each -> (y [N, T, H], final hidden [L, N, H] each)."""
        rnn = self._rnn
        lstm = self._n_states == 2
        if self._python_based:
            return _python_loop(rnn, x, hidden, lengths, lstm)
        if lengths is None:
            kernel = _kernel(rnn)
            if kernel is not None:
                return kernel(rnn, x, hidden)
            arg = hidden if lstm else hidden[0]
            y, h = rnn(x, arg)
        else:
            arg = hidden if lstm else hidden[0]
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_y, h = rnn(packed, arg)
            y, _ = nn.utils.rnn.pad_packed_sequence(packed_y, batch_first=True, total_length=x.shape[1])
        return y, (tuple(h) if lstm else (h,))

    def _run_step(self, value: torch.Tensor, states: list, is_init: torch.Tensor, batch: torch.Size) -> list:
        # one step per batch element: [*B, F] -> [N, 1, F], states [*B, L, H] -> [L, N, H]
        lead = tuple(batch)
        dims = len(lead)
        if any(s is None for s in states):
            x = value.reshape(-1, 1, *value.shape[dims:])
            hidden = tuple(x.new_zeros(layers, x.shape[0], size) for layers, size in self._state_shapes())
        else:
            # on the CPU, asking whether any episode starts is cheaper than masking every state;
            # a graph capture (torch.export, torch.compile) cannot ask, and always masks
            if (
                is_init.device.type != "cpu"
                or torch.compiler.is_compiling()
                or (bool(is_init) if is_init.numel() == 1 else bool(is_init.any()))
            ):
                starts = is_init.reshape(*lead, 1, 1)
                states = [s.masked_fill(starts, 0.0) for s in states]
            cell = None if self._python_based or value.ndim != dims + 1 else _cell(self._rnn)
            if cell is not None:
                return _run_cell(cell, self._rnn, value, states, lead)
            x = value.reshape(-1, 1, *value.shape[dims:])
            if dims == 0:  # one env: [L, H] -> [L, 1, H]
                hidden = tuple(s.unsqueeze(1) for s in states)
            else:
                hidden = tuple(s.reshape(-1, *s.shape[dims:]).transpose(0, 1).contiguous() for s in states)
        y, final = self._call_rnn(x, hidden, None)
        if dims == 0:
            return [y.reshape(y.shape[-1]), *(h.squeeze(1) for h in final)]
        return [y.reshape(*lead, y.shape[-1]), *(h.transpose(0, 1).reshape(*lead, *h.shape[::2]) for h in final)]

    def _run_sequences(self, value: torch.Tensor, states: list, is_init: torch.Tensor, batch: torch.Size) -> list:
        lead = tuple(batch)
        rows = 1
        for d in lead[:-1]:
            rows *= d
        steps = lead[-1]
        total = rows * steps
        feat = value.shape[len(lead) :]
        x = value.reshape(rows, steps, *feat)
        starts = is_init.reshape(rows, steps).clone()
        starts[:, 0] = True
        if any(s is None for s in states):
            flat_states = self._zeros((total,), value)
        else:
            flat_states = [s.reshape(total, *s.shape[len(lead) :]) for s in states]
        flat_starts = starts.reshape(total)
        if not bool(starts[:, 1:].any()):
            # one episode piece per row: no padding needed
            hidden = tuple(s.reshape(rows, steps, *s.shape[1:])[:, 0].transpose(0, 1).contiguous() for s in flat_states)
            y, final = self._call_rnn(x, hidden, None)
            out = [y.reshape(*lead, *y.shape[2:])]
            for h in final:
                placed = h.new_zeros(rows, steps, *h.shape[::2])
                placed[:, -1] = h.transpose(0, 1)
                out.append(placed.reshape(*lead, *h.shape[::2]))
            return out
        first = flat_starts.nonzero().squeeze(-1)
        piece = flat_starts.long().cumsum(0) - 1
        pos = torch.arange(total, device=value.device) - first[piece]
        lengths = torch.diff(first, append=first.new_tensor([total]))
        n_pieces = first.shape[0]
        padded = x.new_zeros(n_pieces, int(lengths.max()), *feat)
        padded[piece, pos] = x.reshape(total, *feat)
        hidden = tuple(s[first].transpose(0, 1).contiguous() for s in flat_states)
        y, final = self._call_rnn(padded, hidden, lengths)
        out = [y[piece, pos].reshape(*lead, *y.shape[2:])]
        last = first + lengths - 1
        for h in final:
            placed = h.new_zeros(total, *h.shape[::2])
            placed[last] = h.transpose(0, 1)
            out.append(placed.reshape(*lead, *h.shape[::2]))
        return out


def _check_wrapped(cls: str, rnn: nn.RNNBase, what: str, input_size: int | None, hidden_size: int | None) -> None:
    if not rnn.batch_first:
        raise ValueError(f"{cls}: the {what} passed must have batch_first=True; build it with batch_first=True.")
    if input_size is not None or hidden_size is not None:
        raise ValueError(
            f"{cls}: pass either {what}= (an existing module) or input_size/hidden_size to build one, not both."
        )


def _check_backend(cls: str, backend: str) -> None:
    if backend not in ("auto", "pad", "scan"):
        raise ValueError(
            f"{cls}: recurrent_backend must be 'auto', 'pad' or 'scan' (all run the same computation in tdrl); "
            f"got {backend!r}."
        )


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
