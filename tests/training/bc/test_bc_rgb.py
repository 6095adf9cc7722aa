"""BC on RGB frames (the Adroit hand tasks): the training input of a frame stack is the runtime's
(`policies.runtime.image_input`) bit for bit, the recorded stacks are the observations the task serves,
the augmentation crops the 9 channels of a sample together, a short real run on recorded adroit_door
expert demos lowers the loss, and the exported artifact acts through the one policy path (`BCPolicy`
against torch on a real observation, `rrl eval`). 32 px demos keep it fast; the shipped bases use 84 px."""

import json

import numpy as np
import pytest
import torch

from policies.artifact import load_artifact
from policies.runtime import ArtifactModel, BCPolicy, image_input
from rrl.cli import main as rrl
from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from training.bc.network import fuse_batchnorm
from training.bc.train import BCConfig, Batches, build_net, evaluate_loss, export_run, load_dataset, rgb_channels, train
from training.export import round_weights_fp16
from training.harness import RunOptions

CPU = RunOptions(device="cpu", progress=False)
PX = 32
EPISODES = 4


@pytest.fixture(scope="module")
def rgb_demos(tmp_path_factory):
    """Real expert demos of adroit_door with a 32 px RGB camera (seeds from 0, successes only)."""
    out = tmp_path_factory.mktemp("adroit_rgb") / "door"
    assert rrl(["record", "--task", "adroit_door", "--source", "expert", "--episodes", str(EPISODES),
                "--camera-px", str(PX), "--out", str(out), "--json"]) == 0
    return out


def config(demos, **kw) -> BCConfig:
    return BCConfig(**{"task": "adroit_door", "demos": (str(demos),), "obs": "rgb+proprio", **kw})


def reference_channels(stack: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (3F, H, W) float32 by plain loops: channel 3f + c is colour c of frame f, / 255."""
    F_, H, W, _ = stack.shape
    out = np.zeros((3 * F_, H, W), np.float32)
    for f in range(F_):
        for c in range(3):
            out[3 * f + c] = stack[f, :, :, c].astype(np.float32) / np.float32(255)
    return out


def test_rgb_stack_layout_and_scale_match_the_runtime_input(rgb_demos):
    ds = load_dataset(config(rgb_demos), progress=False)
    batches = Batches(ds, config(rgb_demos))
    frames = ds.batch("train", np.arange(5))["frames"]
    assert frames.shape == (5, 3, PX, PX, 3) and frames.dtype == np.uint8
    images = batches.frames(frames)
    assert images.shape == (5, 9, PX, PX) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0 and float(images.max()) > 0.5
    for i in range(5):
        np.testing.assert_array_equal(images[i].numpy(), reference_channels(frames[i]))
        # what the runtime feeds the ONNX model for this stack, centre crop included
        runtime = image_input({"rgb": frames[i]}, "rgb", (-1, 9, *batches.crop))
        np.testing.assert_array_equal(batches.centre_crop(images[i:i + 1]).numpy(), runtime)
    with pytest.raises(ValueError, match=r"\(B, F, H, W, 3\)"):
        rgb_channels(torch.zeros(2, 3, PX, PX, dtype=torch.uint8))


def test_recorded_rgb_stacks_are_what_the_task_serves(rgb_demos):
    """The dataset's frame stack at step t (the first frame repeated at the start) equals the task's `rgb`
    observation after replaying the episode's recorded actions from its seed: what BC trains on is what
    `rrl eval` shows the policy."""
    ds = load_dataset(config(rgb_demos), progress=False)
    episode = ds.episodes[0]
    with make_task("adroit_door", camera=CameraConfig(width_px=PX, height_px=PX)) as task:
        obs = task.reset(episode.record.seed)
        for t in range(4):
            stack = ds.samples(np.array([0]), np.array([t]))["frames"][0]
            np.testing.assert_array_equal(stack, obs["rgb"], err_msg=f"step {t}")
            obs = task.step(episode.action[t]).obs


def test_rgb_augmentation_crops_the_nine_channels_of_a_sample_together(rgb_demos):
    cfg = config(rgb_demos, rotation_deg=0.0)
    ds = load_dataset(cfg, progress=False)
    batches = Batches(ds, cfg)
    assert batches.crop == (30, 30)
    images = batches.frames(ds.batch("train", np.arange(6))["frames"])
    out = batches.augment(images, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    top, left = torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 3, (6,), generator=gen)
    for i in range(6):
        torch.testing.assert_close(out[i], images[i, :, top[i]:top[i] + 30, left[i]:left[i] + 30], atol=1e-5, rtol=0)


def test_depth_variant_on_rgb_demos_is_refused(rgb_demos):
    with pytest.raises(ValueError, match="needs depth demos; the bags have camera 'rgb'"):
        load_dataset(config(rgb_demos, obs="depth"), progress=False)


def test_short_rgb_bc_run_lowers_the_loss_and_its_artifact_acts(rgb_demos, tmp_path, capsys):
    cfg = config(rgb_demos, epochs=5, batch_size=32, val_fraction=0.25)
    ds = load_dataset(cfg, progress=False)
    assert not ds.spec.binary_action_labels  # joint position targets only: the loss is the L2 term alone
    torch.manual_seed(cfg.seed)
    untrained_net = build_net(cfg, ds)
    untrained = {split: evaluate_loss(untrained_net, Batches(ds, cfg), cfg, split)["loss"] for split in ("train", "val")}
    summary = train(cfg, tmp_path / "run", CPU)
    assert summary["finished"]
    net = build_net(cfg, ds)
    net.load_state_dict(torch.load(tmp_path / "run" / "best.pt", weights_only=False)["model"])
    trained = evaluate_loss(net, Batches(ds, cfg), cfg, "train")
    assert np.isnan(trained["gripper_accuracy"]) and trained["gripper_ce"] == 0.0
    assert trained["loss"] < 0.5 * untrained["train"], (untrained, trained)
    assert summary["best_val_loss"] < untrained["val"], (untrained, summary)

    art = export_run(tmp_path / "run", tmp_path / "art")
    assert art.camera.modality == "rgb" and art.camera.history == 3 and art.camera.width_px == PX
    assert art.inputs[0].sources == ("rgb",) and art.inputs[0].shape == (-1, 9, 30, 30)
    assert art.action.binary_fields == ()
    assert max(art.provenance["export"]["parity_max_abs_diff"].values()) <= 1e-4
    with make_task("adroit_door", camera=CameraConfig(width_px=PX, height_px=PX)) as task:
        artifact = load_artifact(tmp_path / "art", task.spec)
        policy = BCPolicy(ArtifactModel(artifact))
        obs = task.reset(1_000_000)
        out = policy.step(obs)
        exported = fuse_batchnorm(net)
        round_weights_fp16(exported)  # what was exported (float16 weights, float32 compute)
        rgb = torch.from_numpy(reference_channels(obs["rgb"])[None, :, 1:31, 1:31])
        proprio = torch.from_numpy(artifact.normalisation["proprio"].normalise(obs["proprio"])[None])
        with torch.no_grad():
            actions, z = exported(rgb, proprio)
        np.testing.assert_allclose(out.features, z[0].numpy(), atol=1e-4)
        stats = artifact.normalisation["action"]
        expected = actions[0, 0].numpy() * np.array(stats.std) + np.array(stats.mean)
        np.testing.assert_allclose(out.action, expected, atol=1e-4 * max(stats.std))
    assert rrl(["eval", "--task", "adroit_door", "--base", str(tmp_path / "art"), "--episodes", "1", "--json"]) == 0
    line = [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.startswith("{")][-1]
    assert line["episodes"] == 1 and line["seed"] == 1_000_000 and line["safety"]["base_errors"] == 0
    assert line["safety"]["nonfinite_fallbacks"] == 0 and line["safety"]["nonfinite_holds"] == 0
