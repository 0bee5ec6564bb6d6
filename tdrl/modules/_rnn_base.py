"""``_RecurrentModuleBase``: what LSTMModule and GRUModule share (keys, modes, step and sequence paths).

Internal; the public classes live in :mod:`tdrl.modules.rnn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key, unravel_key_list
from torch import nn

from tdrl._compat import td_read
from tdrl.modules._recurrent_mode import recurrent_mode
from tdrl.modules._rnn_kernels import _cell, _kernel, _python_loop, _run_cell, _write_outputs

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
PRIMER_KEYS = (
    "{cls}.make_tensordict_primer needs each hidden out_key to be ('next', <its in_key>) so that the env "
    "carries it from step to step; got in_keys={in_keys} and out_keys={out_keys}. Name the out_keys "
    "('next', <in_key>) for the hidden states."
)


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
