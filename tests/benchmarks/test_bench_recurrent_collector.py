"""The recurrent-collection benchmark, tiny: it runs, and the collector stores what the hand loop computes."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gymnasium")

from benchmarks import bench_recurrent_collector as bench


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(bench, "FRAMES", 16)
    monkeypatch.setattr(bench, "HIDDEN", 8)
    monkeypatch.setattr(bench, "ROUNDS", 1)
    return bench


def test_rows_have_the_figure_and_its_reference(tiny):
    rows = tiny.run()
    main = rows[0]
    assert main["bar"] == ">= 0.91"
    assert main["unit"] == "frames/s"
    assert min(main["tdrl"], main["reference"], main["ratio"]) > 0
    assert rows[1]["bar"] == "info"  # against the nn.LSTMCell hand loop
    assert len(rows) == 3 or rows[-1] is rows[1]  # the TorchRL row only where torchrl is installed


@pytest.mark.parametrize("cell", [False, True])
def test_the_collector_stores_the_hand_loops_states_and_steps(tiny, cell):
    frames = 60  # CartPole's first episodes under these weights are shorter: resets mid-batch
    lstm, head = tiny.make_weights()
    collector = tiny.make_collector("tdrl", lstm, head, frames=frames)
    hand = tiny.HandLoop(lstm, head, cell=cell)
    # the collector's validation step plays the seeded episode's first step, then resets: its
    # first batch starts from the env's second reset
    hand.obs = torch.from_numpy(hand.env.reset()[0])
    batches = iter(collector)
    for _ in range(2):  # the second batch starts from the first one's carried state
        data = next(batches)
        ref = hand.collect(frames)
        assert data["is_init"].any()
        assert not data["is_init"].all()
        for key in ("observation", "is_init", "action"):
            torch.testing.assert_close(data[key], ref[key], rtol=0, atol=0)
        for key in ("next_observation", "reward", "done", "terminated", "truncated"):
            got = data["next", key.removeprefix("next_")]
            torch.testing.assert_close(got, ref[key], rtol=0, atol=0)
        for key in ("recurrent_state_h", "recurrent_state_c", "action_value", "chosen_action_value"):
            torch.testing.assert_close(data[key], ref[key], rtol=1e-6, atol=1e-6)
        for key in ("recurrent_state_h", "recurrent_state_c"):
            torch.testing.assert_close(data["next", key], ref["next_" + key], rtol=1e-6, atol=1e-6)
        # the state is zero at each episode start and carried from the previous step otherwise
        starts = data["is_init"].squeeze(-1)
        assert not data["recurrent_state_h"][starts].any()
        torch.testing.assert_close(
            data["recurrent_state_h"][1:][~starts[1:]], data["next", "recurrent_state_h"][:-1][~starts[1:]]
        )
    collector.shutdown()
