"""The main jobs' --logger and --video: what each logger writes holds the numbers of the job's log.csv, videos
decode, and a logger or video that cannot work is a one-line user error before training."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdrl.examples import _job, dqn, ppo, sac
from tdrl.record import read_csv_scalars

# the shortest runs that still update and evaluate: two batches, an evaluation after each
SHORT = {
    "ppo": ppo.PPOConfig(
        env="CartPole-v1",
        frames=128,
        frames_per_batch=64,
        sub_batch_size=32,
        num_epochs=1,
        num_cells=16,
        eval_every=1,
        eval_steps=40,
        progress=False,
    ),
    "dqn": dqn.DQNConfig(
        frames=128,
        frames_per_batch=64,
        init_random_frames=64,
        updates_per_batch=2,
        batch_size=16,
        num_cells=16,
        eval_every=1,
        eval_steps=40,
        progress=False,
    ),
    "sac": sac.SACConfig(
        env="Pendulum-v1",
        frames=128,
        frames_per_batch=64,
        init_random_frames=64,
        updates_per_batch=2,
        batch_size=16,
        num_cells=16,
        eval_every=1,
        eval_steps=40,
        progress=False,
    ),
}
JOBS = {"ppo": ppo, "dqn": dqn, "sac": sac}


def _train(job: str, tmp_path: Path, **changes):
    cfg = dataclasses.replace(SHORT[job], out_dir=str(tmp_path), **changes)
    return JOBS[job].train(cfg)


def _log_csv(result) -> tuple[list[str], list[dict[str, str]]]:
    with result["csv"].open() as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _tolerance(cell: str) -> float:
    """Half a unit of the last digit log.csv printed (``0.123`` -> 5e-4; ``1.5e-03`` -> 5e-5)."""
    mantissa, _, exponent = cell.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _assert_same_numbers(result, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """Each log.csv column (but frames) is a logged scalar with the same non-empty cells at step = frames."""
    columns, rows = _log_csv(result)
    for column in columns[1:]:
        expected = [(int(r["frames"]), r[column]) for r in rows if r[column] != ""]
        got = scalars.get(column, [])  # a column with no number (no episode ended yet) was never logged
        assert [step for step, _ in got] == [step for step, _ in expected], column
        for (_, value), (_, cell) in zip(got, expected):
            assert abs(value - float(cell)) <= _tolerance(cell) * 1.0001, (column, value, cell)


# --- csv -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("job", ["ppo", "dqn", "sac"])
def test_the_csv_logger_holds_the_numbers_of_log_csv(tmp_path, job):
    result = _train(job, tmp_path)  # --logger csv is the default
    log_dir = result["log_dir"]
    assert log_dir == result["out_dir"] / "logs"
    scalars = read_csv_scalars(str(log_dir))
    _assert_same_numbers(result, scalars)
    assert [step for step, _ in scalars["eval_steps"]] == result["logs"]["eval_frames"]
    hparams = (log_dir / "texts" / "hparams0.txt").read_text().splitlines()
    assert f"seed: {SHORT[job].seed}" in hparams
    assert f"env: {SHORT[job].env}" in hparams
    assert not list((log_dir / "videos").iterdir())  # no --video, no video


def test_pandas_reads_a_logged_scalar_with_named_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    result = _train("dqn", tmp_path)
    frame = pd.read_csv(result["log_dir"] / "scalars" / "epsilon.csv")
    _, rows = _log_csv(result)
    assert list(frame.columns) == ["step", "value"]
    assert frame["step"].tolist() == [int(r["frames"]) for r in rows]
    assert frame["value"].round(4).tolist() == [float(r["epsilon"]) for r in rows]


def test_logger_none_writes_only_the_jobs_own_files(tmp_path):
    result = _train("dqn", tmp_path, logger="none")
    assert result["log_dir"] is None
    assert sorted(p.name for p in result["out_dir"].iterdir()) == [
        "checkpoint.pt",
        "learning_curve.png",
        "log.csv",
        "summary.json",
    ]


# --- tensorboard, wandb, mlflow ----------------------------------------------------------------------
@pytest.mark.parametrize("job", ["ppo", "dqn", "sac"])
def test_tensorboard_writes_an_event_file_with_the_same_numbers(tmp_path, job):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _train(job, tmp_path, logger="tensorboard")
    events = list(result["log_dir"].glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(result["log_dir"]))
    accumulator.Reload()
    scalars = {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    _assert_same_numbers(result, scalars)  # float32 in the event file: within log.csv's rounding here


def test_wandb_writes_an_offline_run_in_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = _train("dqn", tmp_path, logger="wandb")
    runs = list((result["log_dir"] / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))  # the run's records, to sync later with `wandb sync`


def test_mlflow_writes_a_file_store_in_the_run_folder_with_the_same_numbers(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    result = _train("dqn", tmp_path, logger="mlflow")
    store = result["log_dir"] / "mlruns"
    client = MlflowClient(tracking_uri=store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("tdrl-dqn").experiment_id])
    assert run.info.run_name == result["out_dir"].name
    assert run.data.params["lr"] == str(SHORT["dqn"].lr)
    scalars = {
        name: [
            (m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        ]
        for name in run.data.metrics
    }
    _assert_same_numbers(result, scalars)


# --- video -----------------------------------------------------------------------------------------
def _decoded(path: Path):
    from tdrl.record.loggers._video import read_mp4

    return read_mp4(str(path))


@pytest.mark.parametrize("job", ["ppo", "dqn", "sac"])
def test_video_1_writes_an_mp4_per_batch_that_decodes(tmp_path, job):
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pygame")
    result = _train(job, tmp_path, video=1)
    videos = sorted((result["log_dir"] / "videos").iterdir())
    assert [p.name for p in videos] == [f"eval_video_{n}.mp4" for n in sorted(result["logs"]["frames"], key=str)]
    for path in videos:
        frames = _decoded(path)
        assert frames.shape[0] > 0
        assert frames.shape[1] == 3
        assert 0 < max(frames.shape[2:]) <= 320  # subsampled: a long episode stays small
        assert frames.float().std() > 0  # a picture, not a blank frame


def test_video_does_not_change_the_evaluations(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pygame")
    plain = _train("ppo", tmp_path)
    filmed = _train("ppo", tmp_path, video=1)
    assert filmed["logs"]["eval_return"] == plain["logs"]["eval_return"]
    assert filmed["logs"]["train_reward"] == plain["logs"]["train_reward"]


def test_video_every_2_films_batch_0_and_the_last_and_evaluates_there(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pygame")
    result = _train("dqn", tmp_path, frames=192, eval_every=100, video=2)
    # batches 0, 1, 2: filmed at 0 (every 2) and 2 (the last); each film is an evaluation whose return is logged
    assert result["logs"]["eval_frames"] == [64, 192]
    assert sorted(p.name for p in (result["log_dir"] / "videos").iterdir()) == [
        "eval_video_192.mp4",
        "eval_video_64.mp4",
    ]


@pytest.mark.slow
def test_a_mujoco_task_renders_headless(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    if os.environ.get("MUJOCO_GL", "egl") != "egl":
        pytest.skip("needs MUJOCO_GL=egl")
    result = _train("sac", tmp_path, env="InvertedPendulum-v5", eval_steps=20, video=1)
    (first, _) = sorted((result["log_dir"] / "videos").iterdir())
    assert _decoded(first).shape[0] > 0


def test_tensorboard_takes_the_video_as_an_image_summary(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("pygame")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _train("dqn", tmp_path, logger="tensorboard", video=1)
    accumulator = EventAccumulator(str(result["log_dir"]))
    accumulator.Reload()
    images = accumulator.Images("eval_video")
    assert [image.step for image in images] == result["logs"]["frames"]
    assert images[0].encoded_image_string[:6] == b"GIF89a"


# --- user errors -------------------------------------------------------------------------------------
def _one_line_error(capsys, job: str, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        JOBS[job].main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m tdrl.examples.{job}: error: ")
    return lines[0]


@pytest.mark.parametrize("job", ["ppo", "dqn", "sac"])
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--logger", "neptune"], "argument --logger: invalid choice: 'neptune'"),
        (["--video", "-1"], "--video must be an integer >= 0"),
        (["--video", "2", "--logger", "none"], "--video 2 records through the logger, and --logger is none"),
    ],
)
def test_a_bad_logger_or_video_option_is_a_user_error(capsys, tmp_path, job, argv, message):
    line = _one_line_error(capsys, job, [*argv, "--out-dir", str(tmp_path / "runs")])
    assert message in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("job", ["ppo", "dqn", "sac"])
@pytest.mark.parametrize(
    ("logger", "extra"), [("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow")]
)
def test_a_missing_logger_package_names_its_extra(capsys, tmp_path, monkeypatch, job, logger, extra):
    real = _job._installed
    monkeypatch.setattr(_job, "_installed", lambda module: module != logger and real(module))
    line = _one_line_error(capsys, job, ["--logger", logger, "--out-dir", str(tmp_path / "runs")])
    assert f"--logger {logger} needs the {logger} package, which is not installed" in line
    assert f"pip install 'tdrl[{extra}]'" in line
    assert not (tmp_path / "runs").exists()


def test_a_missing_video_package_names_the_video_extra(capsys, tmp_path, monkeypatch):
    real = _job._installed
    monkeypatch.setattr(_job, "_installed", lambda module: module != "imageio_ffmpeg" and real(module))
    line = _one_line_error(capsys, "dqn", ["--video", "1", "--out-dir", str(tmp_path / "runs")])
    assert "--video needs imageio-ffmpeg, not installed; pip install 'tdrl[video]'" in line


def test_an_env_that_cannot_render_is_refused_before_training(capsys, tmp_path, monkeypatch):
    import gymnasium

    from tdrl.envs.libs.gym import GymEnv

    def no_pygame(self):
        raise gymnasium.error.DependencyNotInstalled(
            'pygame is not installed, run `pip install "gymnasium[classic-control]"`'
        )

    monkeypatch.setattr(GymEnv, "render", no_pygame)
    monkeypatch.setattr(_job, "_installed", lambda module: True)  # the video extra is not what this test is about
    argv = ["--video", "1", "--env", "CartPole-v1", "--out-dir", str(tmp_path / "runs")]
    line = _one_line_error(capsys, "ppo", argv)
    assert "--video: CartPole-v1 cannot render: pygame is not installed" in line
    assert not (tmp_path / "runs").exists()  # refused before the run's folder was made


def test_a_mujoco_without_an_opengl_backend_is_a_user_error():
    """MUJOCO_GL is read when mujoco is imported: a fresh process with a value no backend answers to.

    The import fails with or without ``--video``, so the check is the training env's too."""
    env = {**os.environ, "MUJOCO_GL": "no-such-backend"}
    argv = ["--env", "InvertedPendulum-v5", "--frames", "128", "--frames-per-batch", "64"]
    argv += ["--init-random-frames", "64", "--no-progress", "--out-dir", os.devnull + "/never"]
    proc = subprocess.run(
        [sys.executable, "-m", "tdrl.examples.sac", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "MUJOCO_GL" in line
    assert "no-such-backend" in line


def test_mujoco_gl_defaults_to_egl_only_when_unset_without_a_display(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    _job.default_mujoco_gl()
    assert os.environ["MUJOCO_GL"] == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    _job.default_mujoco_gl()
    assert os.environ["MUJOCO_GL"] == "osmesa"  # the user's choice stays
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setenv("DISPLAY", ":0")
    _job.default_mujoco_gl()
    assert "MUJOCO_GL" not in os.environ  # a display: MuJoCo's own default works
