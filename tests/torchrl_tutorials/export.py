"""TorchRL's "Exporting TorchRL modules" tutorial (export), on tdrl.

Our own program making the tutorial's imports and calls in order, ``torchrl`` swapped for
``tdrl``, with the random warm-up and the training cut by ``scale``. What cannot run here is
substituted by the minimum, each marked below: no Atari ROMs (``ale_py``) are installed, so
the DQN trains on a local env with Pong's spec (210x160 RGB pixels, 6 actions) and the
ALE/ONNX section is skipped unless ``ale_py`` and ``onnxruntime`` are importable;
AOTInductor compiles C++ for minutes, so it runs only with ``TUTORIAL_AOTI=1``. The
``torch.export`` sections (deterministic, stochastic and recurrent policies) run as written.
Run by tests/test_torchrl_tutorials.py; nothing runs on import.
"""

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import tensordict.utils
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule as Mod
from tensordict.nn import TensorDictSequential
from tensordict.nn import TensorDictSequential as Seq
from torch.optim import Adam

from tdrl._utils import timeit

# the tutorial imports SyncDataCollector, which TorchRL 0.14.1 no longer has: its spelling
from tdrl.collectors import Collector
from tdrl.data import Bounded, Categorical, Composite, LazyTensorStorage, ReplayBuffer, Unbounded
from tdrl.envs import (
    Compose,
    EnvBase,
    GrayScale,
    Resize,
    StepCounter,
    ToTensorImage,
    TransformedEnv,
    set_exploration_type,
)
from tdrl.modules import ConvNet, EGreedyModule, QValueModule
from tdrl.objectives import DQNLoss, SoftUpdate


class PongLikeEnv(EnvBase):
    """Stands in for GymEnv("ALE/Pong-v5", categorical_action_encoding=True): same specs, random frames."""

    def __init__(self):
        super().__init__()
        self.observation_spec = Composite(pixels=Bounded(0, 255, shape=(210, 160, 3), dtype=torch.uint8))
        self.action_spec = Categorical(6)
        self.reward_spec = Unbounded(shape=(1,))
        self._t = 0

    def _frame(self):
        return torch.randint(0, 256, (210, 160, 3), dtype=torch.uint8, generator=self.rng)

    def _reset(self, tensordict=None, **kwargs):
        self._t = 0
        return TensorDict({"pixels": self._frame()}, [])

    def _step(self, tensordict):
        self._t += 1
        done = torch.tensor([self._t >= 300])
        return TensorDict(
            {
                "pixels": self._frame(),
                "reward": torch.zeros(1),
                "done": done,
                "terminated": done.clone(),
                "truncated": torch.zeros(1, dtype=torch.bool),
            },
            [],
        )

    def _set_seed(self, seed):
        self.rng = torch.Generator().manual_seed(int(seed) if seed is not None else 0)


def main(scale: float = 1.0):
    torch.manual_seed(0)

    # the tutorial: GymEnv("ALE/Pong-v5", categorical_action_encoding=True), which needs Atari ROMs
    env = TransformedEnv(
        PongLikeEnv(),
        Compose(ToTensorImage(), Resize(84, interpolation="nearest"), GrayScale(), StepCounter()),
    )
    env.set_seed(0)

    value_mlp = ConvNet.default_atari_dqn(num_actions=env.action_spec.space.n)
    value_net = Mod(value_mlp, in_keys=["pixels"], out_keys=["action_value"])
    policy = Seq(value_net, QValueModule(spec=env.action_spec))
    exploration_module = EGreedyModule(env.action_spec, annealing_num_steps=100_000, eps_init=0.5)
    policy_explore = Seq(policy, exploration_module)

    init_rand_steps = max(100, int(5000 * scale))
    frames_per_batch = 100
    optim_steps = max(1, int(10 * scale))
    collector = Collector(
        env, policy_explore, frames_per_batch=frames_per_batch, total_frames=-1, init_random_frames=init_rand_steps
    )
    rb = ReplayBuffer(storage=LazyTensorStorage(100_000))

    loss = DQNLoss(value_network=policy, action_space=env.action_spec, delay_value=True)
    optim = Adam(loss.parameters())
    updater = SoftUpdate(loss, eps=0.99)

    total_count = 0
    total_episodes = 0
    t0 = time.time()
    max_batches = init_rand_steps // frames_per_batch + 2  # the cut budget: a couple of trained batches
    for i, data in enumerate(collector):
        # Write data in replay buffer
        rb.extend(data)
        max_length = rb[:]["next", "step_count"].max()
        if len(rb) > init_rand_steps:
            # Optim loop (we do several optim steps
            # per batch collected for efficiency)
            for _ in range(optim_steps):
                sample = rb.sample(128)
                loss_vals = loss(sample)
                loss_vals["loss"].backward()
                optim.step()
                optim.zero_grad()
                # Update exploration factor
                exploration_module.step(data.numel())
                # Update target params
                updater.step()
                total_count += data.numel()
                total_episodes += data["next", "done"].sum()
        if max_length > 200 or i + 1 >= max_batches:
            break
    collector.shutdown()
    print(f"trained on {total_count} frames in {time.time() - t0:.1f} s")

    policy_transform = TensorDictSequential(
        env.transform[:-1],  # the last transform is a step counter which we don't need for preproc
        policy_explore.requires_grad_(False),  # Using the explorative version of the policy for didactic purposes
    )

    fake_td = env.base_env.fake_tensordict()
    pixels = fake_td["pixels"]
    with set_exploration_type("DETERMINISTIC"):
        exported_policy = torch.export.export(
            # Select only the "action" output key
            policy_transform.select_out_keys("action"),
            args=(),
            kwargs={"pixels": pixels},
            strict=False,
        )
    print("Deterministic policy")
    exported_policy.graph_module.print_readable()

    output = exported_policy.module()(pixels=pixels)
    print("Exported module output", output)
    # (ours) the exported program gives the policy's action
    with set_exploration_type("DETERMINISTIC"), torch.no_grad():
        expected = policy_transform(TensorDict({"pixels": pixels}, []))["action"]
    assert torch.equal(torch.as_tensor(output), expected), (output, expected)

    with set_exploration_type("RANDOM"):
        exported_stochastic_policy = torch.export.export(
            policy_transform.select_out_keys("action"), args=(), kwargs={"pixels": pixels}, strict=False
        )
    print("Stochastic policy")
    exported_stochastic_policy.graph_module.print_readable()

    from tensordict.nn import TensorDictModule

    from tdrl.envs import BatchSizeTransform
    from tdrl.modules import MLP, LSTMModule

    lstm = LSTMModule(
        input_size=32,
        num_layers=2,
        hidden_size=256,
        in_keys=["observation", "hidden0", "hidden1"],
        out_keys=["intermediate", "hidden0", "hidden1"],
    )
    # the tutorial calls lstm.set_recurrent_mode(False), which raises on TorchRL 0.14.1 (removed in 0.8):
    # False is the default recurrent mode there, so the line is left out
    lstm = lstm.make_python_based()

    recurrent_policy = TensorDictSequential(
        # Unsqueeze the first dim of all tensors to make LSTMCell happy
        BatchSizeTransform(reshape_fn=lambda x: x.unsqueeze(0)),
        lstm,
        TensorDictModule(
            MLP(in_features=256, out_features=5, num_cells=[64, 64]), in_keys=["intermediate"], out_keys=["action"]
        ),
        # Squeeze the first dim of all tensors to get the original shape back
        BatchSizeTransform(reshape_fn=lambda x: x.squeeze(0)),
    )
    recurrent_policy.select_out_keys("action", "hidden0", "hidden1")
    print("recurrent policy input keys:", recurrent_policy.in_keys)
    print("recurrent policy output keys:", recurrent_policy.out_keys)

    fake_obs = torch.randn(32)
    fake_hidden0 = torch.randn(2, 256)
    fake_hidden1 = torch.randn(2, 256)
    # Tensor indicating whether the state is the first of a sequence
    fake_is_init = torch.zeros((), dtype=torch.bool)
    exported_recurrent_policy = torch.export.export(
        recurrent_policy,
        args=(),
        kwargs={"observation": fake_obs, "hidden0": fake_hidden0, "hidden1": fake_hidden1, "is_init": fake_is_init},
        strict=False,
    )
    print("Recurrent policy graph:")
    exported_recurrent_policy.graph_module.print_readable()
    # (ours) the exported recurrent policy gives the module's action and hidden states
    out = exported_recurrent_policy.module()(
        observation=fake_obs, hidden0=fake_hidden0, hidden1=fake_hidden1, is_init=fake_is_init
    )
    ref = recurrent_policy(
        TensorDict(observation=fake_obs, hidden0=fake_hidden0, hidden1=fake_hidden1, is_init=fake_is_init)
    )
    torch.testing.assert_close(out[0], ref["action"])

    from tempfile import TemporaryDirectory

    if os.environ.get("TUTORIAL_AOTI") == "1":  # compiles C++ for minutes: only on request
        from torch._inductor import aoti_compile_and_package, aoti_load_package

        with TemporaryDirectory() as tmpdir:
            path = str(Path(tmpdir) / "model.pt2")
            with torch.no_grad():
                pkg_path = aoti_compile_and_package(
                    exported_policy, args=(), kwargs={"pixels": pixels}, package_path=path
                )
            print("pkg_path", pkg_path)
            tensordict.utils.print_directory_tree(tmpdir)
            compiled_module = aoti_load_package(pkg_path)
            print(compiled_module(pixels=pixels))

    if importlib.util.find_spec("ale_py") is None or importlib.util.find_spec("onnxruntime") is None:
        print("ale_py or onnxruntime is not installed: the ALE/ONNX section is skipped")
        with timeit("TorchRL version"), torch.no_grad(), set_exploration_type("DETERMINISTIC"):
            env.rollout(max(10, int(1000 * scale)), policy_explore)
        timeit.print()
        return
    from ale_py import ALEInterface, roms

    ale = ALEInterface()
    ale.loadROM(roms.Pong)
    ale.reset_game()
    action = 0
    reward = ale.act(action)
    screen_obs = ale.getScreenRGB()
    print("Observation from ALE simulator:", type(screen_obs), screen_obs.shape, reward)

    import onnxruntime

    with set_exploration_type("DETERMINISTIC"):
        pixels = torch.as_tensor(screen_obs)
        onnx_policy_export = torch.onnx.dynamo_export(policy_transform, pixels=pixels)
    with TemporaryDirectory() as tmpdir:
        onnx_file_path = str(Path(tmpdir) / "policy.onnx")
        onnx_policy_export.save(onnx_file_path)
        ort_session = onnxruntime.InferenceSession(onnx_file_path, providers=["CPUExecutionProvider"])

    def onnx_policy(screen_obs: np.ndarray) -> int:
        onnxruntime_input = {ort_session.get_inputs()[0].name: screen_obs}
        onnxruntime_outputs = ort_session.run(None, onnxruntime_input)
        return int(onnxruntime_outputs[0])

    with timeit("ONNX rollout"):
        num_steps = max(10, int(1000 * scale))
        ale.reset_game()
        for _ in range(num_steps):
            screen_obs = ale.getScreenRGB()
            action = onnx_policy(screen_obs)
            reward = ale.act(action)
    with timeit("TorchRL version"), torch.no_grad(), set_exploration_type("DETERMINISTIC"):
        env.rollout(num_steps, policy_explore)
    timeit.print()


if __name__ == "__main__":
    main(float(os.environ.get("TUTORIAL_SCALE", "1.0")))
