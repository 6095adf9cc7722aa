"""Policy artifacts: writing, loading, and refusing tampered, edited or mismatched ones with a clear message.

The artifacts are real: a small torch MLP exported through `training.export.export_artifact`
and read back with ONNX Runtime. Tests that change policy.yaml on purpose write it with
`write_sealed` (what a writer would produce) so that the check under test, not the seal, refuses it.
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from policies.artifact import (
    PENDING_SHA256, STD_FLOOR, ActionSpec, ArtifactError, FieldStats, InputSpec, OutputSpec, PolicyArtifact,
    load_artifact, sealed_yaml, update_metrics,
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


REPO = Path(__file__).resolve().parents[2]


def copy_artifact(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("model.onnx", "policy.yaml"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def read_spec(d: Path) -> dict:
    return yaml.safe_load((d / "policy.yaml").read_text())


def write_sealed(d: Path, raw: dict) -> None:
    """policy.yaml with `raw` as content and a valid seal, as a (buggy or foreign) writer would leave it."""
    (d / "policy.yaml").write_text(sealed_yaml(raw))


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
    raw = read_spec(d)
    raw["outputs"][1]["shape"] = [-1, 32]
    write_sealed(d, raw)
    with pytest.raises(ArtifactError, match="ONNX output 'features' has shape \\[-1, 16\\], spec says \\[-1, 32\\]"):
        load_artifact(d)
    raw["outputs"][1]["shape"] = [-1, 16]
    raw["inputs"][0]["name"] = "obs"
    write_sealed(d, raw)
    with pytest.raises(ArtifactError, match=r"ONNX graph inputs \['state'\] != spec \['obs'\]"):
        load_artifact(d)


def test_malformed_yaml_and_missing_files_are_named(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "m")
    raw = read_spec(d)
    raw["kind"] = "magic"
    write_sealed(d, raw)
    with pytest.raises(ArtifactError, match="unknown kind 'magic'"):
        load_artifact(d)
    del raw["normalisation"]
    raw["kind"] = "bc"
    write_sealed(d, raw)
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


class ConstantResidual(torch.nn.Module):
    def forward(self, x):  # mu = 1 everywhere
        return torch.ones(x.shape[0], 4) + 0.0 * x[:, :4]


@pytest.fixture(scope="module")
def res_dir(tmp_path_factory) -> Path:
    """A residual (c = 0.5) on the BC base `bc_toy`."""
    desc = dataclasses.replace(
        bc_description(), kind="residual", algo="dmpo", base="bc_toy", residual_scale=0.5,
        inputs=(InputSpec("x", ("state", "base_action", "features"), (-1, 27)),),
        outputs=(OutputSpec("mu", "residual_mean", (-1, 4)),))
    samples = {"x": np.random.default_rng(2).normal(size=(4, 27)).astype(np.float32)}
    out = tmp_path_factory.mktemp("art") / "res"
    export_artifact(ConstantResidual(), samples, desc, out)
    return out


def test_residual_composition_scales_by_c_sigma_and_clips(bc_dir, res_dir):
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




# ----- the seal: policy.yaml is covered as a whole -----
def test_edited_residual_scale_is_refused_as_an_edit(res_dir, tmp_path):
    """`residual_scale: 1000` typed into a written policy.yaml used to load silently (and scale the residual 2000x)."""
    d = copy_artifact(res_dir, tmp_path / "r")
    text = (d / "policy.yaml").read_text()
    assert "residual_scale: 0.5\n" in text
    (d / "policy.yaml").write_text(text.replace("residual_scale: 0.5\n", "residual_scale: 1000\n"))
    with pytest.raises(ArtifactError, match=r"r/policy.yaml: content does not match its artifact_sha256: policy.yaml was "
                                            r"edited after it was written .*python -m policies.artifact reseal .*/r"):
        load_artifact(d)
    # a number people rely on is sealed too
    assert "metrics: {}\n" in text
    (d / "policy.yaml").write_text(text.replace("metrics: {}\n", "metrics: {success_rate: 1.0}\n"))
    with pytest.raises(ArtifactError, match="edited after it was written"):
        load_artifact(d)
    # layout is not content: the same values in another YAML style still load
    (d / "policy.yaml").write_text(yaml.safe_dump(yaml.safe_load(text), default_flow_style=False, sort_keys=True))
    assert load_artifact(d).residual_scale == 0.5


def test_unsealed_artifact_is_refused_naming_the_field_and_the_reseal_command(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "old")
    raw = read_spec(d)
    del raw["artifact_sha256"]  # as written before artifacts were sealed
    (d / "policy.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ArtifactError, match=r"old/policy.yaml: no artifact_sha256: .* `python -m policies.artifact reseal .*/old`"):
        load_artifact(d)


def test_update_metrics_reseals_and_keeps_the_artifact_loadable(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "u")
    update_metrics(d, {"success_rate": 0.5, "episodes": 100})
    a = load_artifact(d, SPEC)
    assert a.metrics["success_rate"] == 0.5 and a.metrics["episodes"] == 100
    update_metrics(d, {"success_rate": 0.75})  # merged, sealed again
    assert load_artifact(d, SPEC).metrics == {"success_rate": 0.75, "episodes": 100}
    text = (d / "policy.yaml").read_text()
    (d / "policy.yaml").write_text(text.replace("success_rate: 0.75", "success_rate: 0.95"))
    with pytest.raises(ArtifactError, match="edited after it was written"):
        load_artifact(d)


def reseal_command(*dirs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policies.artifact", "reseal", *map(str, dirs)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_reseal_command_seals_a_trusted_artifact_and_refuses_a_changed_model(bc_dir, tmp_path):
    sealed_text = (bc_dir / "policy.yaml").read_text()
    d = copy_artifact(bc_dir, tmp_path / "old")
    raw = read_spec(d)
    del raw["artifact_sha256"]
    (d / "policy.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    done = reseal_command(d)
    assert done.returncode == 0, done.stderr
    assert "sealed (policy.yaml was unsealed)" in done.stdout
    assert (d / "policy.yaml").read_text() == sealed_text  # the same values, the same seal as at export
    load_artifact(d, SPEC)
    # a model that no longer matches model_sha256 is never sealed; policy.yaml is left as it was
    data = bytearray((d / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))
    done = reseal_command(d)
    assert done.returncode == 2
    assert "sha256 of model.onnx" in done.stderr and "refusing to seal it" in done.stderr
    assert (d / "policy.yaml").read_text() == sealed_text
    # nor is content that is not a valid artifact
    e = copy_artifact(bc_dir, tmp_path / "bad")
    raw = read_spec(e)
    raw["inputs"][0]["scale"] = 2.0
    (e / "policy.yaml").write_text(yaml.safe_dump(raw))
    done = reseal_command(e)
    assert done.returncode == 2 and "inputs[0]: unknown key 'scale'" in done.stderr


# ----- every key at every level is known and typed -----
def _set(path: tuple, value):
    def edit(raw: dict) -> None:
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set(("inputs", 0, "scale"), 2.0), r"inputs\[0\]: unknown key 'scale'; known: dtype, name, shape, sources"),
    (_set(("outputs", 1, "x"), 1), r"outputs\[1\]: unknown key 'x'; known: dtype, name, role, shape"),
    (_set(("normalisation", "action", "foo"), [1.0]), r"normalisation.action: unknown key 'foo'; known: mean, std"),
    (_set(("normalisation", "goal"), {"mean": [0.0], "std": [1.0]}), r"normalisation: unknown key 'goal'; known: action, proprio, state"),
    (_set(("camera",), {"modality": "depth", "width_px": 64, "height_px": 64, "bar": 1}), r"camera: unknown key 'bar'"),
    (_set(("action", "y"), 0), r"action: unknown key 'y'; known: binary_fields, fields, high, low"),
    (_set(("residual_scal",), 0.1), r"policy.yaml: unknown key 'residual_scal'; known: action, algo, artifact_sha256, base"),
    (_set(("residual_scale",), "ten"), r"policy.yaml: residual_scale: expected a number, got str 'ten'"),
    (_set(("inputs", 0, "shape", 1), "7"), r"inputs\[0\].shape\[1\]: expected an integer, got str '7'"),
    (_set(("action", "low", 0), "low"), r"action.low\[0\]: expected a number, got str 'low'"),
    (_set(("normalisation", "state", "std", 2), None), r"normalisation.state.std\[2\]: expected a number, got NoneType"),
    (_set(("action", "binary_fields"), "gripper"), r"action.binary_fields: expected a list, got str 'gripper'"),
    (_set(("metrics",), [0.5]), r"metrics: expected a mapping, got list"),
    (_set(("kind",), ["bc"]), r"kind: expected a string, got list"),
], ids=['inputs[0].scale', 'outputs[1].x', 'normalisation.action.foo', 'normalisation.goal', 'camera.bar', 'action.y', 'residual_scal', 'residual_scale str', 'inputs[0].shape[1] str', 'action.low[0] str', 'normalisation.state.std[2] null', 'action.binary_fields str', 'metrics list', 'kind list'])
def test_unknown_or_mistyped_keys_are_refused_with_their_path(bc_dir, tmp_path, edit, message):
    d = copy_artifact(bc_dir, tmp_path / "k")
    raw = read_spec(d)
    edit(raw)
    write_sealed(d, raw)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(d)


def test_provenance_is_free_form_and_metrics_values_too(bc_dir, tmp_path):
    d = copy_artifact(bc_dir, tmp_path / "p")
    raw = read_spec(d)
    raw["provenance"]["anything"] = {"nested": [1, {"deeper": None}]}
    raw["metrics"] = {"success_rate": 0.5, "per_seed": [1, 0, 1], "notes": {"by": "hand"}}
    write_sealed(d, raw)
    a = load_artifact(d, SPEC)
    assert a.provenance["anything"]["nested"][1] == {"deeper": None} and a.metrics["notes"] == {"by": "hand"}


# ----- one normalisation class -----
def test_field_stats_of_samples_floors_constants_and_leaves_binary_dims_alone():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(2.0, 0.3, 500), np.full(500, 0.7), 0.5 + 1e-4 * rng.normal(size=500),
                  (rng.random(500) < 0.3).astype(float)], axis=1)
    s = FieldStats.of(x, binary_mask=np.array([False, False, False, True]))
    np.testing.assert_allclose(s.mean[:2], [x[:, 0].mean(), 0.7], rtol=1e-6)
    np.testing.assert_allclose(s.std[0], x[:, 0].std(), rtol=1e-6)
    assert s.std[1] == 1.0 and s.std[2] == 1.0 and x[:, 2].std() < STD_FLOOR  # constant and near-constant: a shift
    assert (s.mean[3], s.std[3]) == (0.0, 1.0)  # binary: not normalised
    assert all(v == float(np.float32(v)) for v in s.mean + s.std)  # stored at the precision normalise runs at
    np.testing.assert_allclose(s.denormalise(s.normalise(x)), x, atol=1e-5)
    with pytest.raises(ValueError, match=r"non-finite values in dimensions \[1\]"):
        FieldStats.of(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="binary_mask has shape"):
        FieldStats.of(x, binary_mask=np.array([True]))
