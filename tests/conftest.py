"""Model builders shared by the policy, ROS and training tests: real ONNX graphs written with onnx.helper.

- `build_plain_onnx(path, in_size, out_values)`: a plain-contract model (policies.plain_onnx):
  "obs" [1, in_size] -> "action" = out_values + 0 * sum(obs).
- `residual_artifact(spec, out_dir, base, mu, nan_above=None)`: a real residual artifact
  (policy.yaml + model.onnx via policies.artifact.write_artifact): "x" = [state, base_action] ->
  "mu" = mu everywhere, or NaN on every dimension while state[index] > threshold when
  `nan_above=(index, threshold)` (a residual that fails on part of the state space).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def build_plain_onnx(path: Path, in_size: int, out_values) -> str:
    import onnx
    from onnx import TensorProto, helper

    out = np.asarray(out_values, np.float32).reshape(1, -1)
    const = helper.make_tensor("c", TensorProto.FLOAT, list(out.shape), out.reshape(-1).tolist())
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["obs"], ["s"], keepdims=1),
         helper.make_node("Mul", ["s", "zero"], ["z"]),
         helper.make_node("Add", ["c", "z"], ["action"])],
        "plain", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, in_size])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, list(out.shape))], initializer=[const, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def residual_artifact(spec, out_dir: Path, base: str, mu: float, nan_above: tuple[int, float] | None = None,
                      residual_scale: float = 0.5, action_std: float = 0.04) -> str:
    import onnx
    from onnx import TensorProto, helper

    from policies.artifact import PENDING_SHA256, ActionSpec, FieldStats, InputSpec, OutputSpec, PolicyArtifact, write_artifact

    S, A = spec.state.size, spec.action.size
    inits = [helper.make_tensor("c", TensorProto.FLOAT, [1, A], [mu] * A),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["s", "zero"], ["z"])]
    if nan_above is None:
        nodes.append(helper.make_node("Add", ["c", "z"], ["mu"]))
    else:
        index, threshold = nan_above
        inits += [helper.make_tensor("index", TensorProto.INT64, [1], [index]),
                  helper.make_tensor("threshold", TensorProto.FLOAT, [], [threshold]),
                  helper.make_tensor("nan", TensorProto.FLOAT, [1, A], [float("nan")] * A)]
        nodes += [helper.make_node("Add", ["c", "z"], ["finite"]),
                  helper.make_node("Gather", ["x", "index"], ["xi"], axis=1),
                  helper.make_node("Greater", ["xi", "threshold"], ["failing"]),
                  helper.make_node("Where", ["failing", "nan", "finite"], ["mu"])]
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S + A])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["batch", A])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=9)
    onnx.checker.check_model(model)
    desc = PolicyArtifact(
        kind="residual", algo="dmpo", task=spec.name, base=base, residual_scale=residual_scale,
        inputs=(InputSpec("x", ("state", "base_action"), (-1, S + A)),),
        outputs=(OutputSpec("mu", "residual_mean", (-1, A)),), action=ActionSpec.from_task(spec),
        normalisation={"action": FieldStats.from_arrays(np.zeros(A), np.full(A, action_std)),
                       "state": FieldStats.from_arrays(np.zeros(S), np.ones(S))},
        model_sha256=PENDING_SHA256)
    write_artifact(desc, model.SerializeToString(), out_dir)
    return str(out_dir)


@pytest.fixture
def plain_onnx():
    return build_plain_onnx


@pytest.fixture
def make_residual_artifact():
    return residual_artifact
