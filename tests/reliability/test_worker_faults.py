"""Fault injection into worker exchanges: ParallelEnv, MultiSyncDataCollector, MultiaSyncDataCollector.

Scenarios, each trial drawn from its own seed:

- Ctrl-C at random instants (the ``ctrl_c_after`` fixture: a SIGALRM timer whose handler raises
  ``KeyboardInterrupt`` in the main thread, as SIGINT's does) during steps, resets, rollouts and
  batches (the instants are seeded; where they land depends on the machine's timing);
- Ctrl-C at random exchange points: one worker's socket raises ``KeyboardInterrupt`` at its k-th
  read (peeked or not) or write, or its wait at its k-th poll, before or after doing it (exactly
  reproducible);
- SIGKILL of a random worker at a random instant;
- SIGSTOP of a random worker at a random instant, with a short timeout;
- Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGKILL of a whole program
  whose collector workers run ParallelEnvs of their own.

Every trial checks that each result is the one its request was owed (``_EchoEnv`` echoes each
action, and each copy's observation counts its steps): never stale, never handed out twice, never
skipped unless the interrupt could have cost it; that after a Ctrl-C the object goes on (it never
refuses: tdrl's messages are all small enough to be written at once); that a dead or hung worker
is reported, naming it, and the object then refuses further use with a clear error; and that no
process is left behind.

The figures quoted in the docs come from ``FIGURES``, printed at the end of the module (``-s``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from tensordict import TensorDict

from tdrl.collectors import MultiaSyncDataCollector, MultiSyncDataCollector
from tdrl.envs import ParallelEnv
from tdrl.specs import Composite, Unbounded
from tdrl.testing import CountingEnv

FORK = "fork"  # fast to start; the protocol does not depend on the start method
REFUSED = "cannot be used any more"
FIGURES: collections.Counter = collections.Counter()  # outcomes over the whole suite


class _EchoEnv(CountingEnv):
    """Counts its steps (never ends) and echoes each step's action: a result owed to another request shows.

    Each step takes ``delay`` seconds, so that interrupts land while the parent waits, too.
    """

    def __init__(self, delay: float = 0.002) -> None:
        super().__init__(max_steps=10**9)
        self.observation_spec = Composite(observation=Unbounded(shape=(1,)), echo=Unbounded(shape=(1,)), shape=())
        self.action_spec = Unbounded(shape=(1,))
        self.delay = delay

    def _reset(self, tensordict, **kwargs):
        out = super()._reset(tensordict, **kwargs)
        out.set("echo", torch.zeros(1))
        return out

    def _step(self, tensordict):
        time.sleep(self.delay)
        out = super()._step(tensordict)
        out.set("echo", tensordict.get("action").clone())
        return out


class _SlowCountingEnv(CountingEnv):
    """A CountingEnv that never ends, 2 ms a step: a collector worker's observations count its frames."""

    def __init__(self) -> None:
        super().__init__(max_steps=10**9)

    def _step(self, tensordict):
        time.sleep(0.002)
        return super()._step(tensordict)


def _gone(pids) -> list[int]:
    """The pids of ``pids`` still running (a zombie has exited, so it counts as gone)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return alive


def _wait_gone(pids, seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    alive = _gone(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _gone(alive)
    return alive


@pytest.fixture(autouse=True, scope="module")
def _print_figures():
    """Print the suite's figures at its end (visible with -s)."""
    yield
    print("\nworker fault figures:", dict(sorted(FIGURES.items())))


# --- ParallelEnv: what each call must return ------------------------------------------------------


class _EnvModel:
    """What each copy's step count may be, given what was asked and what was interrupted."""

    def __init__(self, num_workers: int) -> None:
        self.possible = [{0} for _ in range(num_workers)]

    def interrupted(self, op: str, steps: int) -> None:
        """The op may or may not have run on each copy (all of its steps, or any prefix for 'rollout')."""
        if op in ("step", "step_and_maybe_reset"):
            steps = 1
        for i, counts in enumerate(self.possible):
            if op == "reset":
                after = {0}
            elif op == "rollout":
                after = {c + k for c in counts for k in range(1, steps + 1)}
            else:
                after = {c + steps for c in counts}
            self.possible[i] = counts | after

    def stepped(self, observations: torch.Tensor, first: int = 0) -> None:
        """Consecutive steps were observed (``observations[i]``: worker i's, in order)."""
        for i, obs in enumerate(observations.reshape(len(self.possible), -1).tolist()):
            assert obs[0] - 1 in self.possible[i], f"worker {i}: step count {obs[0]} after {self.possible[i]}"
            assert obs == [obs[0] + k for k in range(len(obs))], f"worker {i}: steps out of order {obs}"
            self.possible[i] = {obs[-1]}

    def was_reset(self, observations: torch.Tensor) -> None:
        assert (observations == 0).all(), observations
        self.possible = [{0} for _ in self.possible]


def _env_op(env: ParallelEnv, op: str, steps: int, rng: random.Random) -> tuple:
    """Run ``op`` with fresh random actions; returns what _check_env_op needs."""
    actions = torch.tensor([[rng.uniform(1, 1000)] for _ in range(2)])
    if op == "step":
        return env.step(TensorDict({"action": actions}, [2])), actions
    if op == "step_and_maybe_reset":
        return env.step_and_maybe_reset(TensorDict({"action": actions}, [2]))[0], actions
    if op == "reset":
        return env.reset(), None
    if op == "run":  # open loop, one request per batch of steps (what collectors use for random actions)
        seq = torch.tensor([[[rng.uniform(1, 1000)] for _ in range(steps)] for _ in range(2)])
        data, _ = env._rollout_actions(TensorDict({}, [2]), TensorDict({"action": seq}, [2, steps]))
        return data, seq
    start = env.full_observation_spec.zero().update(env.full_done_spec.zero())
    policy_rng = torch.Generator().manual_seed(rng.randrange(2**31))

    def policy(td):
        return td.set("action", torch.rand(2, 1, generator=policy_rng) * 1000)

    data = env.rollout(steps, policy, auto_reset=False, tensordict=start, break_when_any_done=False)
    return data, None


def _check_env_op(model: _EnvModel, op: str, out: tuple) -> None:
    data, actions = out
    if op == "reset":
        model.was_reset(data["observation"])
        return
    echo = data["next", "echo"]
    sent = data["action"] if actions is None else actions.reshape(echo.shape)
    assert torch.equal(echo, sent), f"{op}: results belong to other requests: echo {echo} for actions {sent}"
    model.stepped(data["next", "observation"])


def _run_env_trial(env: ParallelEnv, rng: random.Random, ops: int, ctrl_c_after, instant_interrupts: bool) -> None:
    """``ops`` random calls on a freshly reset ``env``, some interrupted: each result checked, none refused."""
    model = _EnvModel(2)
    for _ in range(ops):
        op = rng.choice(["step", "step", "step_and_maybe_reset", "reset", "run", "rollout"])
        steps = rng.randint(1, 4)
        delay = rng.uniform(0.0, 0.008) if instant_interrupts and rng.random() < 0.6 else None
        try:
            with ctrl_c_after(delay):
                out = _env_op(env, op, steps, rng)
        except KeyboardInterrupt:
            FIGURES["env calls interrupted"] += 1
            model.interrupted(op, steps)
            continue
        FIGURES["env calls checked"] += 1
        _check_env_op(model, op, out)


@pytest.mark.parametrize("seed", range(10))
def test_parallel_env_ctrl_c_at_random_instants(seed, descendants, ctrl_c_after):
    rng = random.Random(seed)
    before = set(descendants())
    env = ParallelEnv(2, _EchoEnv, mp_start_method=FORK)
    env.reset()
    # (a refusal would raise RuntimeError)
    _run_env_trial(env, rng, ops=40, ctrl_c_after=ctrl_c_after, instant_interrupts=True)
    FIGURES["ParallelEnv Ctrl-C trials"] += 1
    env.close()
    assert set(descendants()) - before == set()


class _InterruptAt:
    """Raises KeyboardInterrupt at the ``at``-th call of ``method``, before or after doing it."""

    def __init__(self, target, method: str, at: int, after: bool) -> None:
        self.target, self.method, self.at, self.after, self.calls = target, method, at, after, 0

    def __getattr__(self, name):
        attr = getattr(self.target, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at and not self.after:
                FIGURES["planted interrupts fired"] += 1
                raise KeyboardInterrupt
            result = attr(*args, **kwargs)
            if self.calls == self.at:
                FIGURES["planted interrupts fired"] += 1
                raise KeyboardInterrupt
            return result

        return call


@contextlib.contextmanager
def _planted(workers, rng: random.Random):
    """One worker's socket (a read, peeked or not, or a write) or wait raises Ctrl-C at a random call."""
    i = rng.randrange(workers.num_workers)
    method = rng.choice(["poll", "recv", "send"])
    at, after = rng.randint(1, 25), rng.random() < 0.5
    poller, sock = workers._pollers[i], workers.socks[i]
    if method == "poll":
        poller.poll = _InterruptAt(poller._poll, "poll", at, after).poll
    else:
        workers.socks[i] = _InterruptAt(sock, method, at, after)
    try:
        yield
    finally:  # (before close(): close() must not meet a planted interrupt)
        poller.poll, workers.socks[i] = poller._poll.poll, sock


@pytest.mark.parametrize("seed", range(10))
def test_parallel_env_ctrl_c_at_random_exchange_points(seed, descendants, ctrl_c_after):
    rng = random.Random(seed)
    before = set(descendants())
    env = ParallelEnv(2, functools.partial(_EchoEnv, delay=0.0), mp_start_method=FORK)
    env.reset()
    with _planted(env._workers, rng):
        _run_env_trial(env, rng, ops=30, ctrl_c_after=ctrl_c_after, instant_interrupts=False)
    FIGURES["ParallelEnv exchange-point trials"] += 1
    env.close()
    assert set(descendants()) - before == set()


# --- collectors: each worker's frames, in order, each handed out once ------------------------------


class _BatchModel:
    """Each worker's last frame handed out; a gap is one lost batch, allowed only after an interrupt.

    An interrupt may cost a batch of either worker (the async collector hands them out in any
    order), so each worker remembers whether one landed since its last batch.
    """

    def __init__(self, frames_per_worker_batch: int) -> None:
        self.last = {0: 0, 1: 0}
        self.size = frames_per_worker_batch
        self.interrupted_since = {0: False, 1: False}

    def note_interrupt(self) -> None:
        self.interrupted_since = dict.fromkeys(self.interrupted_since, True)

    def check(self, batch) -> None:
        flat = batch.reshape(-1)
        workers = flat["collector", "traj_ids"] % 2
        obs = flat["next", "observation"].squeeze(-1)
        for w in (0, 1):
            mine = obs[workers == w].tolist()
            if not mine:
                continue
            assert mine == [mine[0] + k for k in range(len(mine))], f"worker {w}: frames out of order {mine}"
            gap = mine[0] - self.last[w] - 1
            assert gap >= 0, f"worker {w}: frames {mine} handed out again (after {self.last[w]})"
            # a batch may be lost only to an interrupt that landed while next() handed it out
            lost_ok = gap == self.size and self.interrupted_since[w]
            assert gap == 0 or lost_ok, f"worker {w}: skipped {gap} frames"
            FIGURES["batches lost to an interrupt"] += gap // self.size
            self.last[w] = mine[-1]
            self.interrupted_since[w] = False


def _collector(cls, timeout: float = 60.0):
    return cls([_SlowCountingEnv] * 2, None, frames_per_batch=8, total_frames=-1, mp_start_method=FORK, timeout=timeout)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_collector_ctrl_c_at_random_instants(cls, seed, descendants, ctrl_c_after):
    rng = random.Random(seed)
    before = set(descendants())
    collector = _collector(cls)
    model = _BatchModel(4 if cls is MultiSyncDataCollector else 8)
    batches = iter(collector)
    for _ in range(20):
        delay = rng.uniform(0.0, 0.02) if rng.random() < 0.6 else None
        try:
            with ctrl_c_after(delay):
                batch = next(batches)  # a refusal would raise RuntimeError
        except KeyboardInterrupt:
            FIGURES["collector next() interrupted"] += 1
            model.note_interrupt()
            continue
        FIGURES["collector batches checked"] += 1
        model.check(batch)
    FIGURES["collector Ctrl-C trials"] += 1
    collector.shutdown()
    assert set(descendants()) - before == set()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_collector_ctrl_c_at_random_exchange_points(cls, seed, descendants):
    rng = random.Random(seed)
    before = set(descendants())
    collector = _collector(cls)
    model = _BatchModel(4 if cls is MultiSyncDataCollector else 8)
    batches = iter(collector)
    model.check(next(batches))
    with _planted(collector._workers, rng):
        for _ in range(15):
            try:
                batch = next(batches)  # a refusal would raise RuntimeError
            except KeyboardInterrupt:
                FIGURES["collector next() interrupted"] += 1
                model.note_interrupt()
                continue
            FIGURES["collector batches checked"] += 1
            model.check(batch)
    FIGURES["collector exchange-point trials"] += 1
    collector.shutdown()
    assert set(descendants()) - before == set()


# --- dead and hung workers --------------------------------------------------------------------------


def _make(kind: str, timeout: float):
    if kind == "ParallelEnv":
        env = ParallelEnv(2, _EchoEnv, mp_start_method=FORK, timeout=timeout)
        env.reset()
        return env
    return _collector(MultiSyncDataCollector if kind == "MultiSync" else MultiaSyncDataCollector, timeout)


def _use(obj, kind: str, rng: random.Random, model) -> None:
    """One checked call: a step of the env, or a batch of the collector."""
    if kind == "ParallelEnv":
        _check_env_op(model, "step", _env_op(obj, "step", 1, rng))
    else:
        model.check(obj.next())


def _close(obj) -> None:
    if isinstance(obj, ParallelEnv):
        obj.close()
    else:
        obj.shutdown()


def _use_until_it_raises(obj, kind: str, rng: random.Random, model) -> None:
    for _ in range(10_000):
        _use(obj, kind, rng, model)


KINDS = ["ParallelEnv", "MultiSync", "MultiaSync"]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_killed_at_a_random_instant(kind, seed, descendants):
    rng = random.Random(seed)
    before = set(descendants())
    obj = _make(kind, timeout=60.0)
    model = _EnvModel(2) if kind == "ParallelEnv" else _BatchModel(4 if kind == "MultiSync" else 8)
    victim = rng.randrange(2)
    killed_at: list[float] = []

    def kill():
        killed_at.append(time.monotonic())
        os.kill(obj._procs[victim].pid, signal.SIGKILL)

    timer = threading.Timer(rng.uniform(0.0, 0.1), kill)
    timer.start()
    with pytest.raises(RuntimeError, match=f"worker {victim} died while '\\w+' \\(exit code -9\\)"):
        _use_until_it_raises(obj, kind, rng, model)
    timer.join()
    # reported at once (its pipe or its process sentinel), not after the 60 s timeout
    assert time.monotonic() - killed_at[0] < 10
    with pytest.raises(RuntimeError, match=f"{REFUSED}: worker {victim} died"):
        _use(obj, kind, rng, model)
    FIGURES["worker SIGKILL trials reported"] += 1
    _close(obj)
    assert set(descendants()) - before == set()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_stopped_at_a_random_instant_times_out(kind, seed, descendants):
    rng = random.Random(seed)
    before = set(descendants())
    obj = _make(kind, timeout=0.5)
    model = _EnvModel(2) if kind == "ParallelEnv" else _BatchModel(4 if kind == "MultiSync" else 8)
    victim = rng.randrange(2)
    pid = obj._procs[victim].pid
    timer = threading.Timer(rng.uniform(0.0, 0.1), os.kill, (pid, signal.SIGSTOP))
    timer.start()
    try:
        stopped = f"worker {victim} did not answer '\\w+' within 0.5 s \\(it is stopped \\(SIGSTOP\\)\\)"
        with pytest.raises(TimeoutError, match=stopped):
            _use_until_it_raises(obj, kind, rng, model)
        # its reply stays owed: the next call waits once more, then gives up on it
        with pytest.raises(TimeoutError, match=f"worker {victim} did not answer '\\w+' within 0.5 s twice in a row"):
            _use_until_it_raises(obj, kind, rng, model)
        with pytest.raises(RuntimeError, match=f"{REFUSED}: worker {victim} did not answer"):
            _use(obj, kind, rng, model)
        FIGURES["worker SIGSTOP trials reported"] += 1
        _close(obj)
        assert set(descendants()) - before == set()  # the stopped worker too (SIGKILL)
    finally:
        timer.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


# --- a whole program interrupted or killed --------------------------------------------------------

_PROGRAM = textwrap.dedent("""
    import functools
    import signal
    from tdrl.collectors import MultiaSyncDataCollector
    from tdrl.envs import ParallelEnv
    from tdrl.testing import CountingEnv

    if __name__ == "__main__":
        # as a program started from a terminal: Ctrl-C raises KeyboardInterrupt, even when the
        # test runner was started in the background by a shell, whose children ignore SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
        inner = functools.partial(ParallelEnv, 2, CountingEnv, mp_start_method="fork")
        env = ParallelEnv(2, CountingEnv, mp_start_method="fork")
        collector = MultiaSyncDataCollector([inner, inner], None, frames_per_batch=8, mp_start_method="fork")
        batches = iter(collector)
        td = env.reset()
        next(batches)
        print("ready", flush=True)
        while True:
            env.rand_step(td)
            next(batches)
""")


@pytest.mark.slow
@pytest.mark.parametrize(("how", "seed"), [("ctrl-c", 0), ("ctrl-c", 1), ("sigkill", 0)])
def test_a_whole_program_interrupted_or_killed_leaves_no_process(how, seed, tmp_path, descendants):
    rng = random.Random(seed)
    script = tmp_path / "program.py"
    script.write_text(_PROGRAM)
    program = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline().strip() == b"ready", program.stderr.read() if program.stderr else ""
        workers = descendants(program.pid)
        assert len(workers) == 2 + 2 + 4  # its env's workers, its collector's, and theirs
        time.sleep(rng.uniform(0.0, 0.3))
        if how == "ctrl-c":
            os.killpg(program.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
        else:
            program.kill()
        program.wait(60)
        assert _wait_gone(workers) == []
        FIGURES[f"whole-program {how} trials clean"] += 1
    finally:
        if program.poll() is None:
            program.kill()
        program.communicate()
