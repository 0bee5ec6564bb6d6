"""Modules split into private siblings keep every name where it was, as the same object.

``collectors/multi.py``, ``data/replay_buffers/dedup.py``, ``modules/exploration.py``,
``examples/_job.py``, ``trainers/trainers.py``, ``objectives/value/advantages.py`` and
``envs/libs/gym.py`` each moved part of their code to private siblings. Everything they
defined at the top level before is still importable from them (the moved names re-exported,
so ``module.name is sibling.name``), and the public classes are still defined in them, so
pickles and ``torch.save`` files name the same paths.
"""

from __future__ import annotations

import importlib
import io
import pickle

import pytest
import torch

# every top-level name each module defined before its split
BEFORE_SPLIT = {
    "tdrl.collectors.multi": [
        "MultiAsyncCollector",
        "MultiCollector",
        "MultiSyncCollector",
        "MultiSyncDataCollector",
        "MultiaSyncDataCollector",
        "_Batches",
        "_CollectorWorker",
        "_Episodes",
        "_MultiCollectorBase",
        "_SYNC_MISSING",
        "_TRAJ",
        "_build_collector",
        "_collector_worker",
        "_per_worker",
        "_summary",
    ],
    "tdrl.data.replay_buffers.dedup": [
        "DedupNextStorage",
        "_AUTO_KEYS",
        "_LINKED",
        "_MISSING_PAIR",
        "_NOT_LAZY",
        "_NO_AUTO_KEY",
        "_PAIR_MISMATCH",
        "_UNWRITTEN",
        "_key_list",
        "_keys_argument",
        "_next_key",
        "_row_words",
        "_same_rows",
    ],
    "tdrl.modules.exploration": [
        "AdditiveGaussianModule",
        "EGreedyModule",
        "OrnsteinUhlenbeckProcessModule",
        "RandomPolicy",
        "_NO_IS_INIT",
        "_NO_SPEC",
        "_check_annealing",
        "_exploring",
        "_lead_dims",
        "_leaf_spec",
        "_mask_key",
        "_project_in_place",
        "set_exploration_modules_spec_from_env",
    ],
    "tdrl.examples._job": [
        "Checks",
        "ConfigError",
        "LOGGERS",
        "LOGGER_HELP",
        "Panel",
        "Recording",
        "VIDEO_HELP",
        "_LOGGER_PACKAGES",
        "_METAVARS",
        "_Parser",
        "_VIDEO_MAX_SIDE",
        "_VIDEO_PACKAGES",
        "_VIDEO_SKIP",
        "_downsample",
        "_installed",
        "build_parser",
        "check_device",
        "check_env_id",
        "check_recording",
        "csv_bytes",
        "default_mujoco_gl",
        "episode_returns",
        "fail",
        "make_base_env",
        "make_eval_base_env",
        "new_run_dir",
        "open_recording",
        "option",
        "plot_panels",
        "print_done",
        "print_outputs",
        "render_fps",
        "run",
        "write_bytes",
        "write_checkpoint",
        "write_json",
        "write_png",
        "write_run",
    ],
    "tdrl.trainers.trainers": ["HOOK_POINTS", "Trainer", "_LOG_POINTS", "_TYPE_DESCR", "_UNSUPPORTED", "_check_count"],
    "tdrl.objectives.value.advantages": [
        "GAE",
        "TD0Estimate",
        "TD0Estimator",
        "TD1Estimate",
        "TD1Estimator",
        "TDLambdaEstimate",
        "TDLambdaEstimator",
        "ValueEstimatorBase",
        "_BAD_VALUE_SHAPE",
        "_MISSING_SIGNAL",
        "_MISSING_VALUE",
        "_as_buffer",
        "_deprecated_name",
        "_nan_to_root",
        "_standardize",
    ],
    "tdrl.envs.libs.gym": [
        "GymEnv",
        "GymWrapper",
        "space_to_spec",
        "gym_backend",
        "set_gym_backend",
        "_AS_ARRAY",
        "_BOOL",
        "_F32",
        "_INDEX",
        "_ONE_HOT",
        "_TORCH_DTYPES",
        "_decode_mode",
        "_gym",
        "_make",
        "_suggest",
        "_torch_dtype",
    ],
}

# where the moved names live now
MOVED = {
    "tdrl.collectors.multi": {
        "tdrl.collectors._multi_worker": ["_collector_worker", "_build_collector", "_CollectorWorker"],
        "tdrl.collectors._multi_iterators": ["_Batches", "_Episodes"],
    },
    "tdrl.data.replay_buffers.dedup": {
        "tdrl.data.replay_buffers._dedup_keys": [
            "_AUTO_KEYS",
            "_MISSING_PAIR",
            "_NO_AUTO_KEY",
            "_PAIR_MISMATCH",
            "_key_list",
            "_keys_argument",
            "_next_key",
            "_row_words",
            "_same_rows",
        ],
        "tdrl.data.replay_buffers._dedup_state": ["_LINKED", "_UNWRITTEN"],
    },
    "tdrl.modules.exploration": {
        "tdrl.modules._exploration_checks": [
            "_check_annealing",
            "_exploring",
            "_lead_dims",
            "_leaf_spec",
            "_project_in_place",
        ],
    },
    "tdrl.examples._job": {
        "tdrl.examples._job_outputs": [
            "csv_bytes",
            "episode_returns",
            "Panel",
            "plot_panels",
            "write_bytes",
            "write_checkpoint",
            "write_json",
            "write_png",
            "write_run",
        ],
        "tdrl.examples._job_recording": ["Recording", "render_fps", "_downsample", "_VIDEO_MAX_SIDE", "_VIDEO_SKIP"],
    },
    "tdrl.trainers.trainers": {"tdrl.trainers._trainer_args": ["_UNSUPPORTED", "_check_count"]},
    "tdrl.objectives.value.advantages": {
        "tdrl.objectives.value._advantages_inputs": ["_BAD_VALUE_SHAPE", "_MISSING_SIGNAL", "_as_buffer"],
        "tdrl.objectives.value._advantages_values": ["_MISSING_VALUE", "_nan_to_root"],
    },
    "tdrl.envs.libs.gym": {
        "tdrl.envs.libs._gym_convert": [
            "_AS_ARRAY",
            "_BOOL",
            "_F32",
            "_INDEX",
            "_ONE_HOT",
            "_TORCH_DTYPES",
            "_decode_mode",
            "_gym",
            "_torch_dtype",
        ],
    },
}

# public classes users save (pickle, torch.save): still defined where they are imported from
STAY_DEFINED = {
    "tdrl.collectors.multi": ["MultiCollector", "MultiSyncDataCollector", "MultiaSyncDataCollector"],
    "tdrl.data.replay_buffers.dedup": ["DedupNextStorage"],
    "tdrl.modules.exploration": [
        "EGreedyModule",
        "AdditiveGaussianModule",
        "OrnsteinUhlenbeckProcessModule",
        "RandomPolicy",
    ],
    "tdrl.examples._job": ["ConfigError", "Checks"],
    "tdrl.trainers.trainers": ["Trainer"],
    "tdrl.objectives.value.advantages": [
        "ValueEstimatorBase",
        "GAE",
        "TD0Estimator",
        "TD1Estimator",
        "TDLambdaEstimator",
        "TD0Estimate",
        "TD1Estimate",
        "TDLambdaEstimate",
    ],
    "tdrl.envs.libs.gym": ["GymEnv", "GymWrapper", "space_to_spec"],
}

# packages that export a split module's public names: the same objects as the module's
PACKAGE_EXPORTS = {
    "tdrl.objectives.value.advantages": ["tdrl.objectives.value"],
    "tdrl.envs.libs.gym": ["tdrl.envs.libs", "tdrl.envs"],
}


@pytest.mark.parametrize("module_name", sorted(BEFORE_SPLIT))
def test_every_name_defined_before_the_split_is_still_importable(module_name):
    module = importlib.import_module(module_name)
    missing = [name for name in BEFORE_SPLIT[module_name] if not hasattr(module, name)]
    assert not missing, f"{module_name} no longer has {missing}"


@pytest.mark.parametrize("module_name", sorted(MOVED))
def test_moved_names_are_the_siblings_objects(module_name):
    module = importlib.import_module(module_name)
    for sibling_name, names in MOVED[module_name].items():
        sibling = importlib.import_module(sibling_name)
        for name in names:
            assert getattr(module, name) is getattr(sibling, name), f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", sorted(STAY_DEFINED))
def test_public_classes_stay_defined_where_they_are_imported_from(module_name):
    module = importlib.import_module(module_name)
    for name in STAY_DEFINED[module_name]:
        assert getattr(module, name).__module__ == module_name, f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", sorted(PACKAGE_EXPORTS))
def test_packages_export_the_split_modules_public_objects(module_name):
    module = importlib.import_module(module_name)
    for package_name in PACKAGE_EXPORTS[module_name]:
        package = importlib.import_module(package_name)
        exported = [name for name in module.__all__ if name in package.__all__]
        assert exported, f"{package_name} exports none of {module_name}'s public names"
        for name in exported:
            assert getattr(package, name) is getattr(module, name), f"{package_name}.{name}"


def test_a_saved_exploration_module_and_dedup_storage_name_their_public_modules():
    from tensordict import TensorDict

    from tdrl.data.replay_buffers import DedupNextStorage, LazyTensorStorage
    from tdrl.modules import EGreedyModule
    from tdrl.specs import Categorical

    module = EGreedyModule(Categorical(3), eps_init=0.5, eps_end=0.5)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    assert b"tdrl.modules.exploration" in buffer.getvalue()
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is EGreedyModule
    assert loaded.eps.item() == 0.5

    storage = DedupNextStorage(LazyTensorStorage(8))
    frames = torch.arange(4.0).unsqueeze(-1)
    storage.set(slice(0, 3), TensorDict({"observation": frames[:-1], "next": {"observation": frames[1:]}}, [3]))
    payload = pickle.dumps(storage)
    assert b"tdrl.data.replay_buffers.dedup" in payload
    restored = pickle.loads(payload)
    assert torch.equal(restored.get(slice(0, 3))["next", "observation"], frames[1:])


def test_a_spawned_collector_worker_finds_the_worker_code_in_its_new_module():
    from tdrl.collectors import MultiSyncDataCollector
    from tdrl.testing import CountingEnv

    collector = MultiSyncDataCollector(
        [CountingEnv], None, frames_per_batch=3, total_frames=3, mp_start_method="spawn", timeout=120.0
    )
    try:
        batch = next(iter(collector))
    finally:
        collector.shutdown()
    assert batch["next", "observation"].reshape(-1).tolist() == [1.0, 2.0, 3.0]


def _rollout_data(seed: int):
    from tensordict import TensorDict

    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(2, 6, 3, generator=generator)
    done = torch.zeros(2, 6, 1, dtype=torch.bool)
    done[:, -1] = True
    return TensorDict(
        {
            "observation": obs,
            "next": {
                "observation": torch.randn(2, 6, 3, generator=generator),
                "reward": torch.randn(2, 6, 1, generator=generator),
                "done": done,
                "terminated": done.clone(),
            },
        },
        [2, 6],
    )


def test_a_saved_estimator_names_the_advantages_module_and_computes_the_same_advantage():
    from tensordict.nn import TensorDictModule

    from tdrl.objectives.value import GAE, TD0Estimate

    torch.manual_seed(0)
    value_net = TensorDictModule(torch.nn.Linear(3, 1), in_keys=["observation"], out_keys=["state_value"])
    gae = GAE(gamma=0.9, lmbda=0.8, value_network=value_net, average_gae=True)
    buffer = io.BytesIO()
    torch.save(gae, buffer)
    assert b"tdrl.objectives.value.advantages" in buffer.getvalue()
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is GAE
    expected = gae(_rollout_data(1))
    got = loaded(_rollout_data(1))
    assert torch.equal(got["advantage"], expected["advantage"])
    assert torch.equal(got["value_target"], expected["value_target"])

    with pytest.warns(UserWarning, match="use TD0Estimator"):
        old_name = TD0Estimate(gamma=0.5, value_network=None)
    restored = pickle.loads(pickle.dumps(old_name))
    assert type(restored) is TD0Estimate
    assert restored.gamma.item() == 0.5


def test_a_gym_env_still_steps_and_takes_the_fast_rollout():
    pytest.importorskip("gymnasium")
    from tdrl.envs.libs.gym import GymEnv

    env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    try:
        env.set_seed(0)
        td = env.reset()
        step = env.step(td.set("action", torch.tensor(1)))
        assert step["next", "observation"].shape == (4,)
        assert step["next", "reward"].item() == 1.0
        assert env._rollout_fast(env.reset(), 4, False) is not None  # the policy-free rollout's own loop
        rollout = env.rollout(30, break_when_any_done=False)
        assert rollout.batch_size == (30,)
        continuing = ~rollout["next", "done"].squeeze(-1)[:-1]
        assert torch.equal(rollout["observation"][1:][continuing], rollout["next", "observation"][:-1][continuing])
    finally:
        env.close()
