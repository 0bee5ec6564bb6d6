"""CSVLogger: files written and read back, the never-overwrite rule, resume, bad input."""

from __future__ import annotations

import csv
import os

import pytest
import torch

from tdrl.record import CSVLogger, read_csv_scalars
from tdrl.record.loggers._video import read_mp4


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_scalars_are_written_with_a_header_and_read_back(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    values = [0.5, -1.25, 3.0]
    for step, value in zip((0, 10, 20), values):
        logger.log_scalar("train/loss", value, step=step)
    logger.log_scalar("reward", torch.tensor(2.0))  # no step: the count of earlier values
    logger.log_scalar("reward", 4)
    path = tmp_path / "run" / "scalars" / "train" / "loss.csv"
    assert _rows(path) == [["step", "value"], ["0", "0.5"], ["10", "-1.25"], ["20", "3.0"]]
    assert read_csv_scalars(str(tmp_path / "run")) == {
        "reward": [(0, 2.0), (1, 4.0)],
        "train/loss": [(0, 0.5), (10, -1.25), (20, 3.0)],
    }


def test_pandas_reads_a_scalar_file_in_one_call(tmp_path):
    pandas = pytest.importorskip("pandas")
    logger = CSVLogger("run", log_dir=str(tmp_path))
    logger.log_metrics({"loss": torch.tensor(0.25), "lr": 1e-3}, step=7)
    frame = pandas.read_csv(tmp_path / "run" / "scalars" / "loss.csv")
    assert list(frame.columns) == ["step", "value"]
    assert frame["step"].tolist() == [7]
    assert frame["value"].tolist() == [0.25]


def test_lines_reach_the_file_before_close(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    logger.log_scalar("x", 1.0, step=0)
    # another reader sees the line while the logger is still open: a crash would not lose it
    assert _rows(tmp_path / "run" / "scalars" / "x.csv")[-1] == ["0", "1.0"]


def test_a_new_run_never_writes_into_another_runs_folder(tmp_path):
    first = CSVLogger("run", log_dir=str(tmp_path))
    first.log_scalar("x", 1.0, step=0)
    with pytest.warns(UserWarning, match="run_1"):
        second = CSVLogger("run", log_dir=str(tmp_path))
    second.log_scalar("x", 2.0, step=0)
    with pytest.warns(UserWarning, match="run_2"):
        third = CSVLogger("run", log_dir=str(tmp_path))
    assert second.exp_name == "run_1"
    assert third.exp_name == "run_2"
    assert read_csv_scalars(str(tmp_path / "run")) == {"x": [(0, 1.0)]}
    assert read_csv_scalars(str(tmp_path / "run_1")) == {"x": [(0, 2.0)]}


def test_resume_continues_the_saved_folder_without_duplicate_lines(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    logger.log_scalar("x", 1.0)
    logger.log_scalar("x", 2.0)
    state = logger.state_dict()
    logger.log_scalar("x", 3.0)  # logged after the checkpoint, then the process dies
    logger.log_scalar("y", 9.0)
    with pytest.warns(UserWarning, match="run_1"):
        resumed = CSVLogger("run", log_dir=str(tmp_path))
    resumed.load_state_dict(state)
    assert resumed.experiment.log_dir == str(tmp_path / "run")
    assert not (tmp_path / "run_1").exists()  # the unused fresh folder is gone
    resumed.log_scalar("x", 3.5)
    assert resumed.read_scalars() == {"x": [(0, 1.0), (1, 2.0), (2, 3.5)]}


def test_resume_from_a_missing_folder_is_refused(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    state = logger.state_dict()
    state["local"]["folder"] = str(tmp_path / "gone")
    with pytest.raises(ValueError, match="does not exist"):
        logger.load_state_dict(state)


def test_hparams_are_written_as_sorted_lines(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    logger.log_hparams({"lr": 0.001, "gamma": 0.99, "env": "Pendulum-v1"})
    text = (tmp_path / "run" / "texts" / "hparams0.txt").read_text()
    assert text.splitlines() == ["env: Pendulum-v1", "gamma: 0.99", "lr: 0.001"]


def test_histogram_counts_every_value(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    data = torch.tensor([0.0, 0.1, 0.2, 0.9, 1.0])
    logger.log_histogram("weights", data, step=3, bins=2)
    rows = _rows(tmp_path / "run" / "histograms" / "weights_3.csv")
    assert rows[0] == ["left", "right", "count"]
    assert [int(r[2]) for r in rows[1:]] == [3, 2]  # [0, 0.5) and [0.5, 1]
    assert float(rows[1][0]) == 0.0
    assert float(rows[-1][1]) == 1.0


def test_pt_video_round_trips(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    video = torch.randint(0, 256, (1, 4, 3, 8, 8), dtype=torch.uint8)
    logger.log_video("episode", video, step=5)
    loaded = torch.load(tmp_path / "run" / "videos" / "episode_5.pt", weights_only=True)
    assert torch.equal(loaded, video)


def test_mp4_video_is_written_and_decoded(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    logger = CSVLogger("run", log_dir=str(tmp_path), video_format="mp4", video_fps=10)
    video = torch.zeros(6, 3, 32, 48, dtype=torch.uint8)
    video[:, 0] = 200  # red frames: colour survives the codec approximately
    logger.log_video("episode", video)
    decoded = read_mp4(str(tmp_path / "run" / "videos" / "episode_0.mp4"))
    assert decoded.shape == (6, 3, 32, 48)
    assert (decoded[:, 0].float().mean() - 200).abs() < 10
    assert decoded[:, 1].float().mean() < 20


def test_several_videos_are_placed_side_by_side(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    logger = CSVLogger("run", log_dir=str(tmp_path), video_format="mp4")
    logger.log_video("pair", torch.zeros(2, 3, 1, 16, 16, dtype=torch.uint8), step=0)
    assert read_mp4(str(tmp_path / "run" / "videos" / "pair_0.mp4")).shape == (3, 3, 16, 32)


def test_a_non_scalar_metric_is_refused_with_its_name(tmp_path):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    with pytest.raises(TypeError, match=r"'loss'.*shape \(3,\)"):
        logger.log_scalar("loss", torch.ones(3))
    with pytest.raises(TypeError, match=r"'tag'.*not a number"):
        logger.log_scalar("tag", "abc")


@pytest.mark.parametrize(
    ("video", "error", "match"),
    [
        (torch.zeros(4, 3, 8, 8), TypeError, "uint8.*torch.float32"),
        (torch.zeros(4, 8, 8, 3, dtype=torch.uint8), ValueError, r"\[T, C, H, W\].*\(4, 8, 8, 3\).*permute"),
        (torch.zeros(8, 8, dtype=torch.uint8), ValueError, r"\[T, C, H, W\]"),
    ],
)
def test_a_bad_video_names_the_expected_layout(tmp_path, video, error, match):
    logger = CSVLogger("run", log_dir=str(tmp_path))
    with pytest.raises(error, match=match):
        logger.log_video("clip", video)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="video_format='gif'"):
        CSVLogger("run", log_dir=str(tmp_path), video_format="gif")
    logger = CSVLogger("run", log_dir=str(tmp_path))
    with pytest.raises(ValueError, match="outside the run's folder"):
        logger.log_scalar("../escape", 1.0)
    with pytest.raises(TypeError, match="mapping"):
        logger.log_hparams([("lr", 1.0)])
    assert not os.path.exists(tmp_path / "escape.csv")


def test_mp4_without_the_video_extra_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as when not installed
    logger = CSVLogger("run", log_dir=str(tmp_path), video_format="mp4")
    with pytest.raises(ImportError, match=r"tdrl\[video\]"):
        logger.log_video("clip", torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_same_files_and_rows_as_torchrl(tmp_path):
    """TorchRL's CSVLogger and ours, fed the same calls, write the same files and rows (ours adds a header)."""
    torchrl_loggers = pytest.importorskip("torchrl.record.loggers")
    video = torch.randint(0, 256, (1, 3, 3, 4, 4), dtype=torch.uint8)
    paths = {}
    for label, cls in (("ours", CSVLogger), ("theirs", torchrl_loggers.CSVLogger)):
        logger = cls("run", log_dir=str(tmp_path / label))
        logger.log_scalar("loss", 0.5, step=3)
        logger.log_scalar("loss", 0.1 + 0.2)  # a value whose text form needs every digit
        logger.log_scalar("eval/reward", 7)
        logger.log_video("episode", video, step=2)
        logger.log_hparams({"lr": 0.001, "gamma": 0.99})
        logger.log_video("episode", video)
        folder = tmp_path / label / "run"
        paths[label] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        for name in ("loss", "eval/reward"):
            rows = _rows(folder / "scalars" / f"{name}.csv")
            if label == "ours":
                assert rows[0] == ["step", "value"]
                rows = rows[1:]
            paths[label, name] = [(int(s), float(v)) for s, v in rows]
        paths[label, "hparams"] = (folder / "texts" / "hparams0.txt").read_text()
        paths[label, "video"] = torch.load(folder / "videos" / "episode_2.pt", weights_only=True)
    assert paths["ours"] == paths["theirs"]
    for key in ("loss", "eval/reward", "hparams"):
        assert paths["ours", key] == paths["theirs", key]
    assert torch.equal(paths["ours", "video"], paths["theirs", "video"])
