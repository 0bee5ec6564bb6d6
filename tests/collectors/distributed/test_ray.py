"""RayCollector on a local Ray cluster started by the tests (and a `ray start --head` one for the address path)."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl._ray import import_ray
from tdrl.collectors import MultiSyncDataCollector
from tdrl.collectors.distributed import RayCollector
from tdrl.testing import ContinuousActionMock, CountingEnv, FailingEnv

ray = pytest.importorskip("ray")

PREFIX = "tdrl-RayCollector"


@pytest.fixture(scope="module", autouse=True)
def local_cluster(ray_local_runtime):
    """One local Ray runtime for the module (RayCollector uses it and leaves it running)."""
    return ray_local_runtime


@pytest.fixture(autouse=True)
def _kill_leftover_actors():
    """A failed test may leave its actors: kill them, so that the next test counts only its own."""
    yield
    for name in _live_actors():
        ray.kill(ray.get_actor(name), no_restart=True)


def _live_actors() -> list[str]:
    return [name for name in ray.util.list_named_actors() if name.startswith(PREFIX)]


def _check_trajectories(batches: list, key=("next", "observation")) -> int:
    """Every trajectory id holds one worker's steps 1, 2, 3, ... in order: no frame lost inside it or repeated."""
    steps: dict[int, list[float]] = {}
    for batch in batches:
        flat = batch.reshape(-1)
        for traj, obs in zip(flat["collector", "traj_ids"].tolist(), flat[key].squeeze(-1).tolist()):
            steps.setdefault(traj, []).append(obs)
    for traj, obs in steps.items():
        assert obs == [obs[0] + k for k in range(len(obs))], (traj, obs)
    return len(steps)


def _wait_until_dead(actor, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ready.remote(), timeout=timeout)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.2)
    raise AssertionError(f"the killed actor still answers after {timeout}s")


def _zero_policy(obs_dim: int = 3, action_dim: int = 2) -> TensorDictModule:
    net = nn.Linear(obs_dim, action_dim)
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    return TensorDictModule(net, in_keys=["observation"], out_keys=["action"])


# --- arguments -------------------------------------------------------------------------------
def test_a_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "tdrl\[ray\]"'):
        import_ray()
    with pytest.raises(ImportError, match=r'^tdrl.collectors.distributed needs Ray.*pip install "tdrl\[ray\]"$'):
        RayCollector(CountingEnv, frames_per_batch=4)  # the arguments are fine: building it needs Ray


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_collectors": 3, "sync": True, "frames_per_batch": 10}, r"=10 .*num_collectors=3.*9 or 12"),
        ({"policy_factory": lambda: None, "policy": _zero_policy()}, "policy or policy_factory"),
        ({"num_workers_per_collector": 2}, "needs a multi-process collector_class"),
        ({"collector_kwargs": {"frames_per_batch": 4}}, r"collector_kwargs sets \['frames_per_batch'\]"),
        ({"num_collectors": 2, "remote_configs": [{}, {}, {}]}, "remote_configs is a list of 3 but there are 2"),
        ({"collector_class": "parallel"}, "collector_class='parallel'"),
        ({"max_restarts": -1}, "max_restarts must be an int >= 0"),
    ],
)
def test_bad_arguments_are_named_before_any_actor_starts(kwargs, match):
    kwargs = {"frames_per_batch": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        RayCollector(CountingEnv, kwargs.pop("policy", None), **kwargs)
    assert _live_actors() == []


def test_a_local_cluster_too_small_for_the_actors_is_named():
    # the cluster was not started by the collector (it may grow): a warning, then a timeout
    with (
        pytest.warns(UserWarning, match=r"ask for 6 CPUs in all .* has 2"),
        pytest.raises(TimeoutError, match="did not start within timeout=2s"),
    ):
        RayCollector(CountingEnv, frames_per_batch=4, num_collectors=2, remote_configs={"num_cpus": 3}, timeout=2)
    assert _live_actors() == []


# --- frames and trajectory ids -------------------------------------------------------------------
def test_sync_batches_stack_every_collector_and_count_frames_exactly():
    with RayCollector(
        functools.partial(CountingEnv, max_steps=3), frames_per_batch=8, total_frames=20, num_collectors=2, sync=True
    ) as collector:
        assert len(collector) == 3  # ceil(20 / 8), as the local collectors
        batches = list(collector)
        assert len(_live_actors()) == 2
        collector.split_trajs, collector.total_frames = True, -1  # padded per trajectory, on the driver
        split = collector.next()
        assert split["collector", "mask"].sum() == 8  # every frame once
        assert not collector._owns_runtime  # the module's runtime was running already...
    assert _live_actors() == []  # the context manager killed them
    assert ray.is_initialized()  # ...and is left running (the address test's driver sees one stopped)
    assert [b.batch_size for b in batches] == [torch.Size([2, 4])] * 3
    ids = torch.stack([b["collector", "traj_ids"] for b in batches])
    assert (ids[:, 0] % 2 == 0).all()
    assert (ids[:, 1] % 2 == 1).all()  # collector i's ids are i mod num_collectors: unique across collectors
    assert _check_trajectories(batches) == len(ids.unique())
    with pytest.raises(RuntimeError, match="shut down"):
        collector.next()


def test_async_batches_come_whole_from_one_collector_and_stop_at_total_frames():
    collector = RayCollector(
        functools.partial(CountingEnv, max_steps=4), frames_per_batch=6, total_frames=20, num_collectors=2
    )
    batches = list(collector)
    assert [b.batch_size for b in batches] == [torch.Size([6])] * 4  # 24 frames: whole batches up to >= 20
    workers = [set((b["collector", "traj_ids"] % 2).tolist()) for b in batches]
    assert all(len(w) == 1 for w in workers)  # each batch is one collector's
    _check_trajectories(batches)
    assert collector._pool.pending == {}  # no batch was asked for that would not be handed out
    collector.shutdown()


# --- into a RayReplayBuffer --------------------------------------------------------------------
@pytest.mark.parametrize("sync", [True, False])
def test_actors_write_into_a_ray_replay_buffer_and_iteration_yields_none(sync):
    from tdrl.data import LazyTensorStorage, RayReplayBuffer

    buffer = RayReplayBuffer(
        storage=functools.partial(LazyTensorStorage, 100), batch_size=5, remote_config={"num_cpus": 0}
    )
    seen = []
    with RayCollector(
        functools.partial(CountingEnv, max_steps=3),
        frames_per_batch=8,
        total_frames=24,
        num_collectors=2,
        sync=sync,
        replay_buffer=buffer,
        postproc=lambda td: td.set("seen_by_postproc", torch.ones(td.shape)),  # runs on the actors
    ) as collector:
        for out in collector:
            assert out is None  # TorchRL's contract: the data is in the buffer
            seen.append(len(buffer))
    assert len(buffer) == 24 == seen[-1]  # every frame written once, counted by the driver
    assert seen == sorted(seen)
    stored = buffer[:24]
    assert stored["seen_by_postproc"].all()
    ids = stored["collector", "traj_ids"]
    obs = stored["next", "observation"].squeeze(-1)
    for traj in ids.unique().tolist():  # each id holds one collector's steps 1, 2, ... in order
        steps = obs[ids == traj].tolist()
        assert steps == [steps[0] + k for k in range(len(steps))], (traj, steps)
    assert set((ids % 2).tolist()) == {0, 1}  # both collectors wrote, with ids spread over them
    assert buffer.sample().shape == torch.Size([5])
    buffer.close()


def test_a_replay_buffer_the_actors_cannot_share_is_refused():
    from tdrl.data import ReplayBuffer

    with pytest.raises(TypeError, match="RayReplayBuffer"):
        RayCollector(CountingEnv, frames_per_batch=4, replay_buffer=ReplayBuffer())
    from tdrl.data import LazyTensorStorage, RayReplayBuffer

    buffer = RayReplayBuffer(storage=functools.partial(LazyTensorStorage, 10), remote_config={"num_cpus": 0})
    try:
        with pytest.raises(ValueError, match="split_trajs"):
            RayCollector(CountingEnv, frames_per_batch=4, replay_buffer=buffer, split_trajs=True)
    finally:
        buffer.close()


# --- policies and weights ---------------------------------------------------------------------
def test_weights_seeds_and_state_reach_every_actor():
    policy = _zero_policy()
    collector = RayCollector(
        ContinuousActionMock, policy, frames_per_batch=4, total_frames=-1, num_collectors=2, sync=True
    )
    assert (collector.next()["action"] == 0).all()
    with torch.no_grad():
        policy.module.bias.fill_(0.5)
    collector.update_policy_weights_()
    assert (collector.next()["action"] == 0.5).all()
    other = _zero_policy()
    with torch.no_grad():
        other.module.bias.fill_(-0.25)
    collector.update_policy_weights_(TensorDict.from_module(other))  # a TensorDict of weights
    assert (collector.next()["action"] == -0.25).all()
    collector.update_after_each_batch = True
    with torch.no_grad():
        policy.module.bias.fill_(0.125)  # "training" between batches: pushed before the next round
    assert (collector.next()["action"] == 0.125).all()
    collector.update_after_each_batch = False

    # seeds and state, on the same actors
    assert collector.set_seed(7) == 9  # each env hands on seed + 1
    collector.reset()
    first = collector.next()["observation"]
    assert not torch.equal(first[0], first[1])  # distinct seeds per collector
    collector.set_seed(7)
    collector.reset()
    assert torch.equal(collector.next()["observation"], first)
    state = collector.state_dict()
    assert state["frames"] == 24
    assert len(state["workers"]) == 2
    collector.next()
    collector.load_state_dict(state)
    assert collector.state_dict()["frames"] == 24
    with pytest.raises(ValueError, match="holds 1 collectors' states"):
        collector.load_state_dict({**state, "workers": state["workers"][:1]})
    collector.shutdown()


def test_update_after_each_batch_pushes_before_a_collectors_next_batch():
    policy = _zero_policy()
    collector = RayCollector(
        ContinuousActionMock, policy, frames_per_batch=4, total_frames=-1, update_after_each_batch=True
    )
    assert (collector.next()["action"] == 0).all()
    with torch.no_grad():
        policy.module.bias.fill_(0.125)  # "training" between batches
    assert (collector.next()["action"] == 0.125).all()
    collector.update_after_each_batch = False
    collector.next()  # its next batch is now asked for at once (while the caller trains)
    collector.update_policy_weights_(TensorDict.from_module(_zero_policy()))  # loaded after that batch
    assert (collector.next()["action"] == 0.125).all()
    assert (collector.next()["action"] == 0).all()
    collector.shutdown()


def test_a_multi_process_collector_runs_in_each_actor():
    collector = RayCollector(
        functools.partial(CountingEnv, max_steps=3),
        frames_per_batch=8,
        total_frames=16,
        collector_class=MultiSyncDataCollector,
        num_workers_per_collector=2,
        num_collectors=1,
    )
    batches = list(collector)
    collector.shutdown()
    assert [b.batch_size for b in batches] == [torch.Size([2, 4])] * 2  # MultiSync's [workers, T] per batch
    _check_trajectories(batches)


# --- faults ------------------------------------------------------------------------------------
def test_a_dead_actor_is_rebuilt_and_its_batch_collected_again(tmp_path):
    marker = str(tmp_path / "died")

    def make_policy():
        calls = [0]

        def policy(td):
            calls[0] += 1
            if calls[0] == 6:  # the first actor to reach step 6 dies, once
                try:  # O_EXCL: of two actors reaching it together, only one creates the marker
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)
            return td.set("action", torch.zeros(1, dtype=torch.int64))

        return policy

    collector = RayCollector(
        functools.partial(CountingEnv, max_steps=3),
        policy_factory=make_policy,
        frames_per_batch=8,
        total_frames=24,
        num_collectors=2,
        sync=True,
    )
    before = collector.remote_collectors
    batches = list(collector)
    assert os.path.exists(marker)
    assert sum(a != b for a, b in zip(before, collector.remote_collectors)) == 1  # one actor was rebuilt
    assert sum(b.numel() for b in batches) == 24
    _check_trajectories(batches)  # the lost batch was collected again, nothing twice

    killed = collector.remote_collectors[1]
    ray.kill(killed, no_restart=False)  # a kill between batches
    _wait_until_dead(killed)  # (ray.kill returns before the actor is gone)
    collector.total_frames = -1
    batch = collector.next()
    _check_trajectories([*batches, batch])
    assert len(_live_actors()) == 2
    collector.shutdown()


def _dying_policy(td):
    os._exit(1)  # every actor dies at its first step: a system failure, retried


def test_beyond_max_restarts_the_collector_raises_and_kills_its_actors():
    collector = RayCollector(CountingEnv, policy_factory=lambda: _dying_policy, frames_per_batch=4, max_restarts=1)
    with pytest.raises(RuntimeError, match=r"collector 0 failed 2 times \(max_restarts=1\).*Actor"):
        collector.next()
    assert _live_actors() == []
    with pytest.raises(RuntimeError, match="collector 0 failed"):
        collector.next()


def test_an_exception_from_the_users_env_is_raised_at_once_with_the_remote_traceback():
    # TorchRL 0.14.1's RayCollector never retries: ray.get raises the task's error as it comes
    collector = RayCollector(functools.partial(FailingEnv, fail_after=2), frames_per_batch=4, max_restarts=3)
    first = collector.remote_collectors
    with pytest.raises(ray.exceptions.RayTaskError) as info:
        collector.next()
    err = info.value
    assert isinstance(err, RuntimeError)  # also an instance of the remote exception's class, as Ray gives it
    assert "FailingEnv: failing on purpose at step 2" in str(err)
    assert "mocks.py" in str(err)  # the remote traceback: the file...
    assert "in _step" in str(err)  # ...down to the env's own frame
    assert collector._pool.restarts == [0]  # not retried
    assert first == [first[0]]
    if sys.version_info >= (3, 11):
        assert any("not retried" in note for note in err.__notes__)
    assert _live_actors() == []  # shut down: no actor left behind
    with pytest.raises(RuntimeError, match=r"shut down after collector 0's env or policy raised.*failing on purpose"):
        collector.next()


def test_ctrl_c_during_iteration_leaves_no_actor_behind():
    def interrupt(td):
        raise KeyboardInterrupt

    collector = RayCollector(CountingEnv, frames_per_batch=4, postproc=interrupt)
    assert len(_live_actors()) == 1
    with pytest.raises(KeyboardInterrupt):
        for _ in collector:
            pass
    assert _live_actors() == []
    with pytest.raises(RuntimeError, match="shut down"):
        collector.next()


# --- a running cluster -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(head: subprocess.Popen) -> None:
    """Stop the head node we started, and only it (`ray stop` would stop every Ray on the machine)."""
    try:
        os.killpg(head.pid, signal.SIGINT)
        head.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for entry in os.listdir("/proc"):  # what it started in its session (workers, raylet)
        try:
            with open(f"/proc/{entry}/stat") as f:
                session = int(f.read().rsplit(")", 1)[1].split()[4])
            if entry.isdigit() and session == head.pid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def _wait_for_port(port: int, head: subprocess.Popen, timeout: float = 60.0) -> bool:
    """True once the head listens on ``port``; False if it exited first (``ray start`` failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    raise TimeoutError(f"the head node did not listen on port {port} within {timeout}s")


def _start_head(ray_cli: str, env: dict, attempts: int = 3) -> tuple[subprocess.Popen, int, str]:
    """Start a head node on a free port; returns it, its port and its temp dir.

    One CI run saw ``ray start --head`` exit with 1 before it listened, at the end of a long suite
    on a loaded 2-core machine, where many runs before and since passed; its log went with the
    temp dir, so the cause is not known (``ray start`` binds several ports of its own choosing
    besides ``--port``, one candidate). The head is the test's scaffolding, not what it tests:
    each attempt takes a new port and temp dir, and after the last the error carries the log.
    """
    for _ in range(attempts):
        port = _free_port()
        temp_dir = tempfile.mkdtemp(prefix="tdrl-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        log_path = os.path.join(temp_dir, "head.log")
        with open(log_path, "w") as log:
            head = subprocess.Popen(
                [ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--disable-usage-stats",
                 "--include-dashboard=false", f"--temp-dir={temp_dir}"],
                env=env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        try:
            if _wait_for_port(port, head):
                return head, port, temp_dir
        except BaseException:
            _stop(head)
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        _stop(head)
        with open(log_path) as f:
            head_log = f.read()[-3000:]
        shutil.rmtree(temp_dir, ignore_errors=True)
    raise RuntimeError(f"ray start --head exited {attempts} times (last: {head.returncode}); log:\n{head_log}")


def test_address_connects_to_a_running_cluster():
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "token"), OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    head, port, temp_dir = _start_head(ray_cli, env)
    driver = textwrap.dedent(
        f"""
        import functools, ray
        from tdrl.collectors.distributed import RayCollector
        from tdrl.testing import CountingEnv
        collector = RayCollector(functools.partial(CountingEnv, max_steps=3), frames_per_batch=6, total_frames=12,
                                 num_collectors=1, address="127.0.0.1:{port}", timeout=120)
        print("frames", sum(batch.numel() for batch in collector))
        print("owned", collector._owns_runtime, "cpus", ray.cluster_resources()["CPU"])
        collector.shutdown()
        print("still connected", ray.is_initialized())
        """
    )
    try:
        out = subprocess.run([sys.executable, "-c", driver], env=env, capture_output=True, text=True, timeout=180)
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "frames 12" in out.stdout
    assert "owned True cpus 2.0" in out.stdout  # it connected (ray.init) to the running head node...
    assert "still connected False" in out.stdout  # ...and disconnected on shutdown (the cluster goes on)
