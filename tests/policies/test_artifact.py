"""Policy artifacts: writing, loading, and refusing tampered or mismatched ones with a clear message.

The artifacts are real: a small torch MLP exported through `training.export.export_artifact`
and read back with ONNX Runtime.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from policies.artifact import (
    PENDING_SHA256, ActionSpec, ArtifactError, FieldStats, InputSpec, OutputSpec, PolicyArtifact, load_artifact,
    update_metrics,
)
from policies.onnx_runtime import OnnxSession
from policies.runtime import ArtifactModel, BCPolicy, ComposedPolicy, ResidualPolicy
from sim_bridge.spec import Layout, TaskSpec
from training.export import ExportParityError, export_artifact

SPEC = TaskSpec(
    name="toy_reach", robot="ur5", control_rate_hz=10.0, max_steps=50,
    action=Layout((("tool_vel", 3), ("gripper", 1))), action_low=(-0.1, -0.1, -0.1, 0.0), action_high=(0.1, 0.1, 0.1, 1.0),
    proprio=Layout((("tool_pos", 3), ("gripper", 1))), state=Layout((("tool_pos", 3), ("gripper", 1), ("cube_pos", 3))),
    binary_action_fields=("gripper",),
)


class StateBC(torch.nn.Module):
    """(state) -> (action with a sigmoid gripper, 16-d features)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.Tanh())
        self.head = torch.nn.Linear(16, 4)

    def forward(self, state):
        z = self.body(state)
        a = self.head(z)
        return torch.cat([a[:, :3], torch.sigmoid(a[:, 3:])], dim=1), z


def bc_description() -> PolicyArtifact:
    return PolicyArtifact(
        kind="bc", algo="bc", task=SPEC.name,
        inputs=(InputSpec("state", ("state",), (-1, 7)),),
        outputs=(OutputSpec("action", "action", (-1, 4)), OutputSpec("features", "features", (-1, 16))),
        action=ActionSpec.from_task(SPEC),
        normalisation={"action": FieldStats((0.01, 0.0, -0.01, 0.0), (0.05, 0.05, 0.05, 1.0)),
                       "state": FieldStats.from_arrays(np.full(7, 0.2), np.full(7, 0.5))},
        model_sha256=PENDING_SHA256, provenance={"dataset": ["demos/toy"]},
    )


@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("art") / "bc_toy"
    samples = {"state": np.random.default_rng(0).normal(size=(32, 7)).astype(np.float32)}
    export_artifact(StateBC(), samples, bc_description(), out)
    return out


def copy_artifact(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("model.onnx", "policy.yaml"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_written_artifact_round_trips(bc_dir):
    a = load_artifact(bc_dir, SPEC)
    assert a.kind == "bc" and a.task == "toy_reach" and a.path == bc_dir
    assert a.provenance["dataset"] == ["demos/toy"] and a.provenance["git_commit"]
    assert a.provenance["export"]["parity_max_abs_diff"]["action"] <= 1e-4
    assert dataclasses.replace(a, path=None) == PolicyArtifact.from_dict(yaml.safe_load((bc_dir / "policy.yaml").read_text()))


def test_changed_model_bytes_are_refused_as_tampered(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "t")
    data = bytearray((d / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 of model.onnx .* changed after export"):
        load_artifact(d)


def test_spec_that_disagrees_with_the_graph_is_refused(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "s")
    raw = yaml.safe_load((d / "policy.yaml").read_text())
    raw["outputs"][1]["shape"] = [-1, 32]
    (d / "policy.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match="ONNX output 'features' has shape \\[-1, 16\\], spec says \\[-1, 32\\]"):
        load_artifact(d)
    raw["outputs"][1]["shape"] = [-1, 16]
    raw["inputs"][0]["name"] = "obs"
    (d / "policy.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match=r"ONNX graph inputs \['state'\] != spec \['obs'\]"):
        load_artifact(d)


def test_malformed_yaml_and_missing_files_are_named(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "m")
    raw = yaml.safe_load((d / "policy.yaml").read_text())
    raw["kind"] = "magic"
    (d / "policy.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match="unknown kind 'magic'"):
        load_artifact(d)
    del raw["normalisation"]
    raw["kind"] = "bc"
    (d / "policy.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ArtifactError, match=r"missing keys \['normalisation'\]"):
        load_artifact(d)
    (d / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="missing model.onnx"):
        load_artifact(d)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nowhere")


def test_task_mismatch_is_named(bc_dir):
    other = dataclasses.replace(SPEC, name="toy_push")
    with pytest.raises(ArtifactError, match="trained for task 'toy_reach', not 'toy_push'"):
        load_artifact(bc_dir, other)
    wider = dataclasses.replace(SPEC, action_high=(0.2, 0.2, 0.2, 1.0))
    with pytest.raises(ArtifactError, match="action limits"):
        load_artifact(bc_dir, wider)
    bigger_state = dataclasses.replace(SPEC, state=Layout((("tool_pos", 3), ("gripper", 1), ("cube_pos", 3), ("goal", 2))))
    with pytest.raises(ArtifactError, match="state stats have 7 dims, task state has 9"):
        load_artifact(bc_dir, bigger_state)


def test_residual_description_is_validated():
    base = bc_description()
    with pytest.raises(ArtifactError, match="must name its base"):
        dataclasses.replace(base, kind="residual", algo="dmpo",
                            outputs=(OutputSpec("mu", "residual_mean", (-1, 4)),), residual_scale=0.1)
    with pytest.raises(ArtifactError, match="residual_scale c > 0"):
        dataclasses.replace(base, kind="residual", algo="dmpo", base="waypoint",
                            outputs=(OutputSpec("mu", "residual_mean", (-1, 4)),))
    with pytest.raises(ArtifactError, match="width 9, its sources"):
        InputSpec("x", ("state", "base_action"), (-1, 9))  # spec alone is fine ...
        dataclasses.replace(base, inputs=(InputSpec("x", ("state", "base_action"), (-1, 9)),))  # ... 7 + 4 != 9


def test_export_refuses_when_onnx_and_torch_disagree(tmp_path):
    class Flaky(StateBC):
        def forward(self, state):  # differs between the traced graph and eager calls on other batches
            a, z = super().forward(state)
            return a + (0.0 if state.shape[0] == 2 else 1e-2), z

    with pytest.raises(ExportParityError, match="refusing to write"):
        export_artifact(Flaky(), {"state": np.random.default_rng(1).normal(size=(8, 7)).astype(np.float32)},
                        bc_description(), tmp_path / "flaky")
    assert not (tmp_path / "flaky" / "model.onnx").exists()


def test_runtime_session_is_single_threaded_without_spinning(bc_dir):
    s = OnnxSession(bc_dir / "model.onnx")
    assert s.options.intra_op_num_threads == 1 and s.options.inter_op_num_threads == 1
    assert s.options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_bc_runtime_normalises_and_denormalises(bc_dir):
    a = load_artifact(bc_dir, SPEC)
    policy = BCPolicy(ArtifactModel(a))
    state = np.linspace(-0.3, 0.4, 7).astype(np.float32)
    out = policy.step({"state": state})
    net = StateBC().eval()
    with torch.no_grad():
        ref, z = net(torch.from_numpy(a.normalisation["state"].normalise(state))[None])
    ref = ref[0].numpy() * np.array(a.normalisation["action"].std) + np.array(a.normalisation["action"].mean)
    np.testing.assert_allclose(out.action[:3], ref[:3], atol=1e-5)
    assert out.action[3] == float(ref[3] > 0.5)
    np.testing.assert_allclose(out.features, z[0].numpy(), atol=1e-5)


def test_residual_composition_scales_by_c_sigma_and_clips(bc_dir, tmp_path):
    class Residual(torch.nn.Module):
        def forward(self, x):  # mu = 1 everywhere
            return torch.ones(x.shape[0], 4) + 0.0 * x[:, :4]

    desc = dataclasses.replace(
        bc_description(), kind="residual", algo="dmpo", base="bc_toy", residual_scale=0.5,
        inputs=(InputSpec("x", ("state", "base_action", "features"), (-1, 27)),),
        outputs=(OutputSpec("mu", "residual_mean", (-1, 4)),))
    samples = {"x": np.random.default_rng(2).normal(size=(4, 27)).astype(np.float32)}
    res_dir = tmp_path / "res"
    export_artifact(Residual(), samples, desc, res_dir)
    base = BCPolicy(ArtifactModel(load_artifact(bc_dir, SPEC)))
    residual = ResidualPolicy(ArtifactModel(load_artifact(res_dir, SPEC)))
    policy = ComposedPolicy(SPEC, base, residual)
    obs = {"state": np.zeros(7, np.float32)}
    action = policy.act(obs)
    np.testing.assert_allclose(policy.last_residual_mean, 1.0, atol=1e-6)
    np.testing.assert_allclose(residual.scale, [0.025, 0.025, 0.025, 0.5])
    u = policy.last_base.action
    expected = SPEC.clip_action(np.concatenate([u[:3] + 0.025, u[3:]]))  # the gripper stays the base's
    np.testing.assert_allclose(action, expected)


def test_update_metrics_keeps_the_model_valid(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "u")
    update_metrics(d, {"success_rate": 0.5, "episodes": 100})
    a = load_artifact(d, SPEC)
    assert a.metrics["success_rate"] == 0.5
