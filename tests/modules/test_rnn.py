"""LSTMModule and GRUModule: keys, modes, resets inside sequences, and parity with TorchRL 0.14.1."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.modules import GRUModule, LSTMModule, get_primers_from_module, recurrent_mode, set_recurrent_mode


def _sequence_td(rows: int, steps: int, features: int, resets: list[tuple[int, int]]) -> TensorDict:
    is_init = torch.zeros(rows, steps, 1, dtype=torch.bool)
    is_init[:, 0] = True
    for r, t in resets:
        is_init[r, t] = True
    return TensorDict(obs=torch.randn(rows, steps, features), is_init=is_init, batch_size=[rows, steps])


def _make(kind: str, python_based: bool = False, num_layers: int = 1):
    cls = LSTMModule if kind == "lstm" else GRUModule
    return cls(input_size=3, hidden_size=5, num_layers=num_layers, python_based=python_based, in_key="obs", out_key="y")


def _state_keys(module) -> list:
    return list(module.in_keys[1:-1])


def _stepwise(module, td: TensorDict) -> TensorDict:
    """Run ``module`` step by step along the time dim, feeding each step's next state to the following step."""
    rows, steps = td.batch_size
    states = {key: torch.zeros(rows, *shape) for key, shape in zip(_state_keys(module), module._state_shapes())}
    outs = []
    for t in range(steps):
        step = td[:, t].clone()
        for key, value in states.items():
            step.set(key, value)
        step = module(step)
        states = {key: step.get(("next", key)) for key in _state_keys(module)}
        outs.append(step)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("python_based", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])  # one layer steps through the fused cell, two through the kernel
def test_recurrent_mode_equals_stepping_with_resets_mid_sequence(
    kind: str, python_based: bool, num_layers: int
) -> None:
    torch.manual_seed(0)
    module = _make(kind, python_based, num_layers=num_layers)
    td = _sequence_td(3, 7, 3, resets=[(0, 3), (2, 1), (2, 5)])
    stepped = _stepwise(module, td)
    with set_recurrent_mode(True):
        seq = module(td.clone())
    torch.testing.assert_close(seq["y"], stepped["y"], rtol=1e-5, atol=1e-6)
    # the hidden outputs hold the final state at the last step of each episode piece, zeros elsewhere
    ends = torch.zeros(3, 7, dtype=torch.bool)
    ends[:, -1] = True
    ends[0, 2] = ends[2, 0] = ends[2, 4] = True
    for key in _state_keys(module):
        out = seq["next", key]
        torch.testing.assert_close(out[ends], stepped["next", key][ends], rtol=1e-5, atol=1e-6)
        assert not out[~ends].any()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_python_based_matches_the_kernel(kind: str) -> None:
    torch.manual_seed(1)
    module = _make(kind, num_layers=2)
    td = _sequence_td(2, 6, 3, resets=[(1, 2)])
    with set_recurrent_mode(True):
        kernel = module(td.clone())
        python = module.make_python_based()(td.clone())
    torch.testing.assert_close(python["y"], kernel["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_one_step_equals_the_wrapped_rnn(kind: str, batch: tuple) -> None:
    """The step path (the fused cell for one layer) gives what calling the nn.LSTM/nn.GRU gives, gradients too."""
    torch.manual_seed(4)
    module = _make(kind)
    rnn = module.lstm if kind == "lstm" else module.gru
    is_init = torch.zeros(*batch, 1, dtype=torch.bool)
    if batch:
        is_init.view(-1)[0] = True
    td = TensorDict(obs=torch.randn(*batch, 3), is_init=is_init, batch_size=batch)
    states = [torch.randn(*batch, 1, 5) for _ in _state_keys(module)]
    for key, value in zip(_state_keys(module), states):
        td.set(key, value)
    out = module(td)
    n = is_init.numel()
    hidden = [s.masked_fill(is_init.reshape(*batch, 1, 1), 0.0).reshape(n, 1, 5).transpose(0, 1) for s in states]
    y, final = rnn(td["obs"].reshape(n, 1, 3), tuple(hidden) if kind == "lstm" else hidden[0])
    finals = final if kind == "lstm" else (final,)
    torch.testing.assert_close(out["y"], y.reshape(*batch, 5), rtol=1e-6, atol=1e-6)
    for key, h in zip(_state_keys(module), finals):
        torch.testing.assert_close(out["next", key], h.transpose(0, 1).reshape(*batch, 1, 5), rtol=1e-6, atol=1e-6)
    (out["y"].sum() + sum(out["next", key].sum() for key in _state_keys(module))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in rnn.parameters())


def test_step_output_is_not_the_stored_state() -> None:
    """An in-place op on the output leaves the next hidden state as computed (they are distinct tensors)."""
    module = _make("gru")
    td = TensorDict(obs=torch.randn(3), is_init=torch.tensor([True]), batch_size=[])
    out = module(td)
    before = out["next", "recurrent_state"].clone()
    out["y"].add_(100.0)
    torch.testing.assert_close(out["next", "recurrent_state"], before)


def test_hooked_or_subclassed_rnn_goes_through_its_forward() -> None:
    calls = []

    class Logged(torch.nn.GRU):
        def forward(self, *args, **kwargs):
            calls.append("subclass")
            return super().forward(*args, **kwargs)

    sub = GRUModule(gru=Logged(3, 5, batch_first=True), in_key="obs", out_key="y")
    hooked = _make("lstm")
    hooked.lstm.register_forward_hook(lambda *args: calls.append("hook"))
    for module in (sub, hooked):
        td = TensorDict(obs=torch.randn(2, 3), is_init=torch.ones(2, 1, dtype=torch.bool), batch_size=[2])
        for key, shape in zip(_state_keys(module), module._state_shapes()):
            td.set(key, torch.zeros(2, *shape))
        module(td)
    assert calls == ["subclass", "hook"]


def test_step_mode_zeroes_the_state_at_episode_starts() -> None:
    torch.manual_seed(2)
    module = _make("lstm")
    td = TensorDict(
        obs=torch.randn(2, 3),
        is_init=torch.tensor([[True], [False]]),
        recurrent_state_h=torch.ones(2, 1, 5),
        recurrent_state_c=torch.ones(2, 1, 5),
        batch_size=[2],
    )
    fresh = module(td.clone().exclude("recurrent_state_h", "recurrent_state_c"))
    out = module(td.clone())
    torch.testing.assert_close(out["y"][0], fresh["y"][0])
    assert not torch.allclose(out["y"][1], fresh["y"][1])


def test_mode_context_decorator_and_default() -> None:
    module = LSTMModule(input_size=3, hidden_size=4, in_key="obs", out_key="y", default_recurrent_mode=True)
    assert module.recurrent_mode
    assert recurrent_mode() is None
    with set_recurrent_mode(False):
        assert not module.recurrent_mode
        with set_recurrent_mode("recurrent"):
            assert module.recurrent_mode
        assert not module.recurrent_mode
    assert set_recurrent_mode("sequential")(lambda: recurrent_mode())() is False
    with pytest.raises(ValueError, match="'recurrent' or 'sequential'"):
        set_recurrent_mode("train")
    with pytest.raises(RuntimeError, match="with set_recurrent_mode"):
        module.set_recurrent_mode(True)
    with pytest.raises(RuntimeError, match="cannot be assigned"):
        module.recurrent_mode = False


def test_bad_keys_and_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="exactly one of in_key and in_keys"):
        LSTMModule(input_size=3, hidden_size=4, out_key="y")
    with pytest.raises(ValueError, match="expects 3 in_keys"):
        LSTMModule(input_size=3, hidden_size=4, in_keys=["obs", "h"], out_key="y")
    with pytest.raises(ValueError, match="expects 2 out_keys"):
        GRUModule(input_size=3, hidden_size=4, in_key="obs", out_keys=["y"])
    with pytest.raises(ValueError, match="hidden_size must be given"):
        GRUModule(input_size=3, in_key="obs", out_key="y")
    with pytest.raises(ValueError, match="not both"):
        LSTMModule(input_size=3, hidden_size=4, in_key="obs", out_key="y", lstm=torch.nn.LSTM(3, 4, batch_first=True))
    with pytest.raises(ValueError, match="batch_first=True"):
        LSTMModule(in_key="obs", out_key="y", lstm=torch.nn.LSTM(3, 4))
    module = _make("gru")
    with pytest.raises(KeyError, match="InitTracker"):
        module(TensorDict(obs=torch.randn(2, 3), batch_size=[2]))
    with pytest.raises(KeyError, match="'obs'"):
        module(TensorDict(x=torch.randn(2, 3), is_init=torch.ones(2, 1, dtype=torch.bool), batch_size=[2]))


def test_primer_keys_and_shapes() -> None:
    lstm = LSTMModule(input_size=3, hidden_size=4, num_layers=2, in_key="obs", out_key="y")
    primer = lstm.make_tensordict_primer()
    assert {k: tuple(s.shape) for k, s in primer.primers.items()} == {
        "recurrent_state_h": (2, 4),
        "recurrent_state_c": (2, 4),
    }
    bad = GRUModule(input_size=3, hidden_size=4, in_keys=["obs", "h"], out_keys=["y", ("next", "other")])
    with pytest.raises(RuntimeError, match=r"\('next', <in_key>\)"):
        bad.make_tensordict_primer()
    from tensordict.nn import TensorDictSequential

    both = get_primers_from_module(TensorDictSequential(lstm, _make("gru")))
    assert len(both) == 2
    with pytest.warns(UserWarning, match="no submodule"):
        assert get_primers_from_module(torch.nn.Linear(2, 2)) is None


# --- differential tests against TorchRL 0.14.1 ---------------------------------------------------
def _torchrl_twin(ours, kind: str):
    trl = pytest.importorskip("torchrl.modules")
    cls = trl.LSTMModule if kind == "lstm" else trl.GRUModule
    rnn = ours.lstm if kind == "lstm" else ours.gru
    twin = cls(
        input_size=rnn.input_size,
        hidden_size=rnn.hidden_size,
        num_layers=rnn.num_layers,
        in_keys=list(ours.in_keys),
        out_keys=list(ours.out_keys),
    )
    (twin.lstm if kind == "lstm" else twin.gru).load_state_dict(rnn.state_dict())
    return twin, trl.set_recurrent_mode


def _grads(module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("mode", ["step", "recurrent"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_matches_torchrl_outputs_and_gradients(kind: str, mode: str, num_layers: int) -> None:
    torch.manual_seed(3)
    ours = _make(kind, num_layers=num_layers)
    twin, trl_mode = _torchrl_twin(ours, kind)
    if mode == "step":
        td = TensorDict(obs=torch.randn(4, 3), is_init=torch.tensor([[True], [False], [True], [False]]), batch_size=[4])
        for key in _state_keys(ours):
            td.set(key, torch.randn(4, num_layers, 5))
    else:
        td = _sequence_td(3, 6, 3, resets=[(0, 2), (1, 4), (2, 1), (2, 3)])
        for key in _state_keys(ours):
            td.set(key, torch.randn(3, 6, num_layers, 5))
    with set_recurrent_mode(mode == "recurrent"):
        a = ours(td.clone())
    with trl_mode(mode == "recurrent"):
        b = twin(td.clone())
    for key in ours.out_keys:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(a["y"])
    (a["y"] * weights).sum().backward()
    (b["y"] * weights).sum().backward()
    for ga, gb in zip(_grads(ours), _grads(twin)):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_mode_uses_the_parameters_functional_call_swaps_in(kind: str, num_layers: int) -> None:
    """The step path reads the RNN's parameters at each call, so torch.func.functional_call's swap applies."""
    torch.manual_seed(5)
    module = _make(kind, num_layers=num_layers)
    td = TensorDict(obs=torch.randn(2, 3), is_init=torch.ones(2, 1, dtype=torch.bool), batch_size=[2])
    swapped = {name: torch.randn_like(p) for name, p in module.named_parameters()}
    got = torch.func.functional_call(module, swapped, (td.clone(),))
    twin = _make(kind, num_layers=num_layers)
    twin.load_state_dict(swapped)
    torch.testing.assert_close(got["y"], twin(td.clone())["y"])
    assert not torch.allclose(got["y"], module(td.clone())["y"])
