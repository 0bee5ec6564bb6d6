"""Modules split into private siblings keep every name where it was, as the same object.

``collectors/multi.py``, ``data/replay_buffers/dedup.py``, ``modules/exploration.py``,
``examples/_job.py`` and ``trainers/trainers.py`` each moved part of their code to private
siblings. Everything they defined at the top level before is still importable from them
(the moved names re-exported, so ``module.name is sibling.name``), and the public classes
are still defined in them, so pickles and ``torch.save`` files name the same paths.
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
