"""DMPO with an image encoder (from scratch on images, end-to-end fine-tuning of an image BC).

The encoder is Acme's observation network: trained by the critic's loss alone, read by the policy through the
target copy; the replay stores each frame once and stacks it at sampling exactly as the task stacks it; an
image agent learns a choice only its frames show; the end-to-end fine-tuning policy starts as the BC artifact
acts through the runtime; and `rrl train residual --base none --obs depth+proprio` runs and resumes.
"""

import json

import numpy as np
import pytest
import torch
import yaml

from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from training.dmpo.learner import Batch, DMPOConfig
from training.dmpo.networks import EncodedPolicy, GaussianPolicy, ImageEncoder
from training.dmpo.train import DMPOActor, ImageField, TrainConfig, flat_input, make_agent, train
from training.harness import read_eval_log
from training.replay import FieldSpec, ReplayBuffer
from training.rollout import run_episode

from .point_mass import PixelBandit, evaluate_pixel_bandit

# The point-mass tests' small learner, with a wider critic: the choice must be read out of 256 image features.
SMALL = DMPOConfig(
    policy_hidden=(64, 64), critic_hidden=(256, 256), init_std=0.5, init_log_temperature=1.0, init_log_alpha_mean=1.0,
    init_log_alpha_std=10.0, target_update_period=50, epsilon_mean=0.01, epsilon_std=1e-4, policy_lr=1e-3, critic_lr=1e-3,
)


def bandit_encoder(seed: int = 0) -> ImageEncoder:
    torch.manual_seed(seed)
    encoder = ImageEncoder(PixelBandit.observation_dim, (1, 8, 8))
    env, frames = PixelBandit(), []
    for i in range(32):
        env.reset(900_000 + i)
        frames.append(env.frames())
    encoder.calibrate(torch.as_tensor(np.stack(frames)))
    return encoder


def test_encoder_reads_vector_then_image_over_any_leading_dims():
    encoder = bandit_encoder().eval()
    x = torch.rand(3, 5, encoder.input_dim)
    out = encoder(x)
    assert out.shape == (3, 5, 256 + 1)
    torch.testing.assert_close(out[1, 2], encoder(x[1, 2][None])[0], atol=1e-3, rtol=1e-3)  # batched conv rounding
    torch.testing.assert_close(out[..., 256:], x[..., :1])  # the vector fields pass through after the features
    with pytest.raises(ValueError, match="expected 65"):
        encoder(torch.rand(2, 64))


def test_calibrated_fresh_encoder_gives_features_that_vary_with_the_image():
    torch.manual_seed(0)
    fresh = ImageEncoder(1, (1, 8, 8)).eval()
    calibrated = bandit_encoder().eval()
    env, rows = PixelBandit(), []
    for i in range(16):
        env.reset(i)
        rows.append(np.concatenate([[0.0], env.frames().reshape(-1)]))
    x = torch.as_tensor(np.array(rows), dtype=torch.float32)
    with torch.no_grad():
        spread_fresh, spread_calibrated = fresh(x)[:, :256].std(0).mean(), calibrated(x)[:, :256].std(0).mean()
    assert spread_calibrated > 0.3 and spread_calibrated > 20 * spread_fresh


def test_the_critic_loss_trains_the_encoder_and_the_policy_loss_does_not():
    def learner(critic_lr):
        config = TrainConfig(batch_size=16, learner=DMPOConfig(**{**SMALL.__dict__, "critic_lr": critic_lr}))
        return make_agent(1, 1, config, encoder=bandit_encoder())

    rng = np.random.default_rng(0)
    s = 1 + 64
    batch = Batch(torch.as_tensor(rng.random((16, s)), dtype=torch.float32), torch.randn(16, 1),
                  torch.as_tensor(rng.integers(0, 2, 16), dtype=torch.float32), torch.full((16,), 0.9),
                  torch.as_tensor(rng.random((16, s)), dtype=torch.float32))
    for critic_lr, encoder_moves in ((1e-12, False), (1e-3, True)):
        agent = learner(critic_lr)
        before = {k: v.clone() for k, v in agent.encoder.state_dict().items() if "running" not in k and "num_batches" not in k}
        target_before = {k: v.clone() for k, v in agent.target_encoder.state_dict().items()}
        policy_before = [p.clone() for p in agent.policy.parameters()]
        for _ in range(3):
            agent.update(batch)
        moved = max((agent.encoder.state_dict()[k] - v).abs().max().item() for k, v in before.items())
        assert (moved > 1e-6) == encoder_moves, (critic_lr, moved)  # only the critic's optimiser moves it
        assert any(not torch.equal(a, b) for a, b in zip(policy_before, agent.policy.parameters()))  # the policy learns
        for k, v in target_before.items():  # the target copy waits for the next sync (period 50)
            assert torch.equal(agent.target_encoder.state_dict()[k], v), k
        assert agent.encoder.training and not agent.target_encoder.training
    # the actors read the target encoder: acting is the function the policy was improved on
    acting = agent.acting_policy
    assert isinstance(acting, EncodedPolicy) and acting.encoder is agent.target_encoder and acting.policy is agent.policy
    # a checkpoint of an image learner restores its encoders, and is refused by a learner without one
    state = agent.state_dict()
    other = learner(1e-3)
    other.load_state_dict(state)
    for k, v in agent.encoder.state_dict().items():
        assert torch.equal(other.encoder.state_dict()[k], v)
    plain = make_agent(1 + 64, 1, TrainConfig(learner=SMALL))
    with pytest.raises(ValueError, match="image encoder"):
        plain.load_state_dict(state)


@pytest.mark.timeout(600)
def test_an_image_agent_learns_a_choice_only_its_frames_show(tmp_path):
    encoder = bandit_encoder()
    config = TrainConfig(frames=1200, batch_size=64, min_replay=200, frames_per_update=1, eval_every_frames=300,
                         gamma=0.95, learner=SMALL)
    train(PixelBandit(), evaluate_pixel_bandit, config, tmp_path, np.zeros(encoder.out_dim), np.ones(encoder.out_dim),
          progress=False, encoder=encoder, image=ImageField((1, 8, 8), 1))
    rows = read_eval_log(tmp_path)
    # a policy blind to the frame gets about half (0.44-0.62 over these 50 held-out episodes); typically 1.0 by 900
    assert rows[0]["success_rate"] <= 0.65 and rows[-1]["success_rate"] >= 0.85, rows


def test_replayed_image_inputs_equal_what_the_actor_saw():
    """The replay stores one frame per step and stacks `history` of them at sampling: for every stored step the
    learner's input [vector, stack] is exactly the one the actor acted on (first frames repeated at the start)."""
    from policies.runtime import ConstantBase
    from training.dmpo.residual import CameraInput, ResidualEnv, ResidualSpace, base_statistics
    from training.dmpo.run_residual import RandomBase

    task = make_task("ur5_pick", camera=CameraConfig(width_px=32, height_px=32))
    try:
        stats, _ = base_statistics(task, RandomBase(task.spec), episodes=1)
        camera = CameraInput("depth", (3, 30, 30), 3)
        space = ResidualSpace(task.spec, ("proprio",), stats, residual_scale=1.0, mode="scratch", camera=camera)
        env = ResidualEnv(task, ConstantBase(space.constant_u()), space)
        vector_dim = env.reset(1_000_000).size
        encoder = ImageEncoder(vector_dim, camera.shape).eval()
        seen = []

        class Recording(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = EncodedPolicy(encoder, GaussianPolicy(encoder.out_dim, 4, init_mean_weight=0.5))

            def forward(self, x):
                seen.append(x[0].numpy().copy())
                return self.inner(x)

        actor = DMPOActor(Recording(), torch.Generator().manual_seed(0), images=True)
        image = ImageField(camera.frame_shape, camera.history)
        replay = ReplayBuffer(500, {"obs": FieldSpec((vector_dim,)), "action": FieldSpec((4,), kind="step"),
                                    "image": FieldSpec(image.frame_shape, dtype="float16", history=image.history)})
        for seed in (1_000_000, 1_000_001):
            start = len(seen)
            run_episode(env, actor, seed, replay)
            del seen[start + 12:]  # keep the first steps of each episode (the stack fills up there)
            task_steps = len(seen) - start
            assert task_steps == 12
        slots = np.flatnonzero(replay._data["_has_step"])
        by_episode = [slots[replay._data["_episode"][slots] == e][:12] for e in (0, 1)]
        sample = replay.gather(np.concatenate(by_episode), 1, 0.99)
        inputs = flat_input(sample.obs)
        np.testing.assert_array_equal(inputs, np.array(seen))
        assert inputs.shape[1] == vector_dim + 3 * 30 * 30
        stacks = sample.obs["image"][:, :, 0]  # (B, history, h, w)
        np.testing.assert_array_equal(stacks[0, 0], stacks[0, 2])  # the first step repeats its one frame
        assert not np.array_equal(stacks[11, 0], stacks[11, 2])  # the arm moved between frames
    finally:
        task.close()


def image_bc_artifact(spec, stats, root, camera_px=32):
    """A depth+proprio BC artifact (random BCNet, weights kept float32) with its run checkpoint, as `rrl train bc` writes."""
    from policies.artifact import PENDING_SHA256, ActionSpec, CameraSpec, FieldStats, InputSpec, OutputSpec, PolicyArtifact
    from training.bc.network import BCNet, ExportWrapper, fuse_batchnorm
    from training.export import export_artifact

    torch.manual_seed(3)
    p = spec.proprio.size
    net = BCNet(4, image_channels=3, scalar_dim=p)
    with torch.no_grad():  # trained-looking BatchNorm statistics, so that evaluation mode is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    (root / "run").mkdir(parents=True)
    torch.save({"model": net.state_dict()}, root / "run" / "best.pt")
    crop = 30
    artifact = PolicyArtifact(
        kind="bc", algo="bc", task=spec.name,
        inputs=(InputSpec("depth", ("depth",), (-1, 3, crop, crop)), InputSpec("proprio", ("proprio",), (-1, p))),
        outputs=(OutputSpec("action", "action", (-1, 4)), OutputSpec("features", "features", (-1, 256))),
        action=ActionSpec.from_task(spec),
        normalisation={"proprio": stats["proprio"], "action": FieldStats(stats["action"].mean, stats["action"].std)},
        model_sha256=PENDING_SHA256, camera=CameraSpec("depth", width_px=camera_px, height_px=camera_px, history=3),
        provenance={"run": str(root / "run")},
    )
    rng = np.random.default_rng(0)
    samples = {"depth": rng.random((8, 3, crop, crop)).astype(np.float32),
               "proprio": rng.normal(size=(8, p)).astype(np.float32)}
    wrapper = ExportWrapper(fuse_batchnorm(net), torch.tensor([False, False, False, True])).eval()
    return export_artifact(wrapper, samples, artifact, root / "bc", weights_fp16=False)


def pick_image_bc_artifact(root):
    """`image_bc_artifact` for ur5_pick at 32 px, with statistics from one random-action episode."""
    from training.dmpo.residual import base_statistics
    from training.dmpo.run_residual import RandomBase

    task = make_task("ur5_pick", camera=CameraConfig(width_px=32, height_px=32))
    try:
        stats, _ = base_statistics(task, RandomBase(task.spec), episodes=1)
        return image_bc_artifact(task.spec, stats, root)
    finally:
        task.close()


def test_end_to_end_finetuning_starts_as_the_bc_policy(tmp_path):
    """The BC's own ResNet and head as the fine-tuning policy act as the BC artifact does through the runtime
    (on the frames at the replay's float16 precision, hence the tolerance)."""
    from policies.runtime import ComposedPolicy, load_base
    from training.dmpo.config import ResidualRunConfig
    from training.dmpo.residual import FineTunePolicy, bc_encoder, bc_head
    from training.dmpo.run_residual import RandomBase, _camera_input, _space, largest_command_difference

    task = make_task("ur5_pick", camera=CameraConfig(width_px=32, height_px=32))
    try:
        from training.dmpo.residual import base_statistics

        stats, _ = base_statistics(task, RandomBase(task.spec), episodes=1)
        artifact = image_bc_artifact(task.spec, stats, tmp_path)
        bc = load_base(str(artifact.path), task.spec)
        config = ResidualRunConfig(task="ur5_pick", base=str(artifact.path), finetune=True, finetune_encoder=True)
        space = _space(config, task, bc, dict(bc.artifact.normalisation))
        assert space.sources == ("proprio",) and space.camera == _camera_input(config, bc)
        assert space.camera.shape == (3, 30, 30) and space.camera.source == "depth"
        weight, bias, sources = bc_head(bc.artifact)
        assert sources == ("features", "proprio")
        encoder = ImageEncoder(task.spec.proprio.size, space.camera.shape, resnet=bc_encoder(bc.artifact)).eval()
        policy = EncodedPolicy(encoder, FineTunePolicy(weight, bias, init_std=0.1))
        mean = lambda x: policy(torch.as_tensor(x)[None])[0][0].detach().numpy()  # noqa: E731
        composer, limits, u = space.composer(), space.limits, space.constant_u()
        runtime = ComposedPolicy(task.spec, bc)

        class FineTuning:  # the fine-tuning action map over the runtime's own base output
            def reset(self, seed):
                pass

            def act(self, obs):
                return limits.clip(composer.compose(u, mean(space.input(obs, runtime.last_base))))

        assert largest_command_difference(task, runtime, FineTuning(), seed=1_000_004, steps=20) < 2e-3
    finally:
        task.close()


def test_image_settings_are_checked():
    from training.dmpo.config import ResidualRunConfig

    with pytest.raises(ValueError, match="give --finetune too"):
        ResidualRunConfig(task="ur5_pick", base="policies/pretrained/bc_ur5_pick", finetune_encoder=True)
    with pytest.raises(ValueError, match="applies to DMPO from scratch"):
        ResidualRunConfig(task="ur5_pick", base="waypoint", obs="depth+proprio")
    with pytest.raises(ValueError, match="obs must be one of"):
        ResidualRunConfig(task="ur5_pick", base="none", obs="depth")
    assert ResidualRunConfig(task="ur5_pick", base="none", obs="depth+proprio").trains_encoder
    with pytest.raises(ValueError, match="has a depth camera"):
        from training.dmpo.run_residual import _make

        _make(ResidualRunConfig(task="ur5_pick", base="none", obs="rgb+proprio", camera_px=16))


@pytest.mark.timeout(600)
def test_rrl_train_dmpo_from_scratch_on_depth_runs_and_resumes(tmp_path):
    from rrl.cli import main

    run = tmp_path / "run"
    args = ["train", "residual", "--algo", "dmpo", "--task", "ur5_pick", "--base", "none", "--obs", "depth+proprio",
            "--camera-px", "32", "--frames", "250", "--min-replay", "100", "--batch-size", "32",
            "--eval-every-frames", "1000", "--eval-episodes", "1", "--stats-episodes", "1", "--out", str(run), "--json"]
    assert main(args) == 0
    saved = yaml.safe_load((run / "run.yaml").read_text())
    assert saved["kind"] == "dmpo_scratch" and saved["sources"] == ["proprio"]
    assert saved["camera"] == {"source": "depth", "stack": [3, 30, 30]}
    first = json.loads((run / "summary.json").read_text())
    assert first["learner_steps"] > 0 and first["mode"] == "scratch"
    assert main(args[:args.index("--frames") + 1] + ["450"] + args[args.index("--frames") + 2:]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["learner_steps"] > first["learner_steps"]
    assert [r["frames"] for r in read_eval_log(run)][-1] >= 450


@pytest.mark.timeout(600)
def test_end_to_end_finetuning_runs_and_exports_a_bc_artifact_the_runtime_runs(tmp_path):
    """`rrl train residual --finetune --finetune-encoder` on an image BC, then `rrl export`: a `bc` artifact (algo
    dmpo) whose ONNX graph the export checked against the learner through the composed policy; `rrl eval` runs it."""
    from rrl.cli import main

    bc = pick_image_bc_artifact(tmp_path)
    run = tmp_path / "ft"
    assert main(["train", "residual", "--algo", "dmpo", "--task", "ur5_pick", "--base", str(bc.path), "--finetune",
                 "--finetune-encoder", "--frames", "250", "--min-replay", "100", "--batch-size", "32",
                 "--eval-every-frames", "1000", "--eval-episodes", "1", "--stats-episodes", "1", "--out", str(run), "--json"]) == 0
    saved = yaml.safe_load((run / "run.yaml").read_text())
    assert saved["kind"] == "dmpo_finetune" and saved["sources"] == ["proprio"] and saved["camera"]["stack"] == [3, 30, 30]
    assert main(["export", str(run), "--out", str(tmp_path / "exported"), "--json"]) == 0
    exported = yaml.safe_load((tmp_path / "exported" / "policy.yaml").read_text())
    assert exported["kind"] == "bc" and exported["algo"] == "dmpo" and exported["provenance"]["fine_tuned_from"] == str(bc.path)
    assert exported["camera"]["width_px"] == 32
    assert main(["eval", "--task", "ur5_pick", "--base", str(tmp_path / "exported"), "--episodes", "1", "--json"]) == 0
    # a residual run is not a fine-tuning run
    from training.dmpo.run_residual import export_finetune

    with pytest.raises(ValueError, match="not a fine-tuning run"):
        (tmp_path / "fake").mkdir()
        (tmp_path / "fake" / "run.yaml").write_text("kind: residual\n")
        export_finetune(tmp_path / "fake", tmp_path / "x")


@pytest.mark.timeout(600)
def test_finetuning_with_frozen_features_runs_from_the_artifact_alone(tmp_path):
    """A shipped image BC whose run directory is gone: its head and network come out of its own graph (BatchNorm
    folded, as exported), fine-tuning with the features frozen trains and exports from them (the export checks the
    new graph against the learner through the composed policy), and end-to-end fine-tuning, which needs the run's
    BatchNorm statistics, is refused in a message that names the run and the way that still works."""
    import shutil

    from policies.artifact import load_artifact
    from rrl.cli import main
    from training.dmpo.residual import bc_encoder, bc_head, bc_weights

    bc = pick_image_bc_artifact(tmp_path)
    from_run = bc_head(bc)
    assert not bc_weights(bc)[1]
    shutil.rmtree(tmp_path / "run")
    weights, folded = bc_weights(bc)
    assert folded and "encoder.stem.0.bias" in weights and not any("bn" in k for k in weights)
    for ours, theirs in zip(bc_head(bc)[:2], from_run[:2]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # float32 weights: the head is stored as trained
    with pytest.raises(FileNotFoundError, match="BatchNorm statistics.*features frozen"):
        bc_encoder(bc)

    run = tmp_path / "ft"
    assert main(["train", "residual", "--algo", "dmpo", "--task", "ur5_pick", "--base", str(bc.path), "--finetune",
                 "--frames", "200", "--min-replay", "100", "--batch-size", "32", "--eval-every-frames", "1000",
                 "--eval-episodes", "1", "--stats-episodes", "1", "--out", str(run), "--json"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "exported"), "--json"]) == 0
    exported = load_artifact(tmp_path / "exported")
    assert exported.kind == "bc" and exported.algo == "dmpo" and exported.camera.width_px == 32
    with pytest.raises(SystemExit, match="BatchNorm statistics"):
        main(["train", "residual", "--algo", "dmpo", "--task", "ur5_pick", "--base", str(bc.path), "--finetune",
              "--finetune-encoder", "--frames", "200", "--stats-episodes", "1", "--out", str(tmp_path / "e2e")])
