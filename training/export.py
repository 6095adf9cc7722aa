"""Export a torch module to a policy artifact (model.onnx + policy.yaml), refusing on a parity failure.

`export_artifact(module, example_inputs, artifact, out_dir, samples)`:

1. traces `module` (eval mode, CPU) with the legacy TorchScript ONNX exporter
   (`torch.onnx.export(..., dynamo=False)`, opset 17) with a dynamic batch axis on every input
   and output. torch 2.13's default `dynamo=True` exporter needs the `onnxscript` package,
   which is not a dependency here; the TorchScript path handles conv/BN/MLP graphs exactly;
2. runs the ONNX model under ONNX Runtime (the runtime's own one-thread session,
   `policies.onnx_runtime`) and torch on real samples (e.g. validation demos) and compares every
   output: max |onnx - torch| must be <= `atol` (1e-4), else `ExportParityError` and nothing is
   written;
3. writes the artifact through `policies.artifact.write_artifact` (the model's sha256 and the seal
   of policy.yaml, `artifact_sha256`, computed there), with provenance extended by the git commit,
   library versions and the parity measured.

`module.forward(*inputs)` takes the inputs in `artifact.inputs` order and returns a tensor or a
tuple of tensors in `artifact.outputs` order. Trainers (BC, DMPO, REQ) build the artifact
description (kind, algo, specs, statistics) and a small export wrapper module; this file knows
nothing about any of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from policies.artifact import PolicyArtifact, write_artifact
from policies.onnx_runtime import OnnxSession

OPSET = 17
PARITY_ATOL = 1e-4


class ExportParityError(RuntimeError):
    """ONNX Runtime and torch disagree on real samples beyond the tolerance."""


def git_commit(repo: Path | None = None) -> str:
    """`<sha>` of HEAD, with `+dirty` when the work tree has changes; `unknown` outside git."""
    cwd = str(repo or Path(__file__).resolve().parents[1])
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def onnx_bytes(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], input_names: list[str],
               output_names: list[str]) -> bytes:
    """Serialise `module` to ONNX with a dynamic batch dimension on every input and output."""
    module = module.eval().cpu()
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(module, tuple(example_inputs), str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        return path.read_bytes()


FP16_SUFFIX = "__fp16"
"""Name suffix of an initialiser stored as float16 by `store_weights_fp16` (the float32 name is the Cast's output)."""


def store_weights_fp16(model: bytes, min_elements: int = 16) -> bytes:
    """Store the float32 initialisers of an ONNX model as float16, each followed by a Cast back to float32.

    Halves the file; the computation stays float32 (ONNX Runtime folds the casts at load time).
    The caller rounds the torch weights the same way first (`round_weights_fp16`), so the parity
    check compares identical arithmetic. Tensors under `min_elements` (scalars, shapes) are kept.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load_from_string(model)
    graph = m.graph
    initialisers, casts = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + FP16_SUFFIX)
            initialisers.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast"))
        else:
            initialisers.append(init)
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def round_weights_fp16(module: torch.nn.Module) -> None:
    """Round every floating parameter and buffer of `module` to float16 precision, in place (kept float32)."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def parity(module: torch.nn.Module, model: bytes, samples: Mapping[str, np.ndarray], output_names: list[str],
           batch: int = 64) -> dict[str, float]:
    """Max |onnx - torch| per output over the samples (dict input name -> (N, ...) arrays)."""
    names = list(samples)
    n = len(next(iter(samples.values())))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(model)
        session = OnnxSession(path, warmup_runs=1)
        worst = {o: 0.0 for o in output_names}
        module = module.eval()
        for start in range(0, n, batch):
            feeds = {k: np.ascontiguousarray(samples[k][start:start + batch], dtype=np.float32) for k in names}
            with torch.no_grad():
                ref = module(*[torch.from_numpy(feeds[k]) for k in session.input_names])
            ref = (ref,) if isinstance(ref, torch.Tensor) else tuple(ref)
            got = session.run(feeds)
            for name, r in zip(output_names, ref):
                worst[name] = max(worst[name], float(np.max(np.abs(got[name] - r.numpy()))))
    return worst


def export_artifact(module: torch.nn.Module, samples: Mapping[str, np.ndarray], artifact: PolicyArtifact,
                    out_dir: str | Path, atol: float = PARITY_ATOL, overwrite: bool = False,
                    extra_provenance: Mapping[str, Any] | None = None, weights_fp16: bool = False) -> PolicyArtifact:
    """Export, check parity on `samples` (input name -> (N, ...) float32 real samples), write the artifact.

    `artifact` describes the model; its `model_sha256` may be `PENDING_SHA256`. With `weights_fp16`
    the weights are rounded to float16 in `module` (in place) and stored as float16 in the file (half
    the size; computation stays float32); parity is then checked against the rounded module.
    Returns the loaded, validated artifact.
    """
    input_names = [i.name for i in artifact.inputs]
    output_names = [o.name for o in artifact.outputs]
    if set(samples) != set(input_names):
        raise ValueError(f"samples have inputs {sorted(samples)}, the artifact declares {input_names}")
    n = {k: len(v) for k, v in samples.items()}
    if len(set(n.values())) != 1 or min(n.values()) < 1:
        raise ValueError(f"samples must hold the same number (>= 1) of rows per input, got {n}")
    example = tuple(torch.from_numpy(np.ascontiguousarray(samples[k][:2], dtype=np.float32)) for k in input_names)
    if weights_fp16:
        round_weights_fp16(module)
    model = onnx_bytes(module, example, input_names, output_names)
    if weights_fp16:
        model = store_weights_fp16(model)
    diffs = parity(module, model, samples, output_names)
    bad = {k: v for k, v in diffs.items() if not v <= atol}
    if bad:
        raise ExportParityError(f"ONNX Runtime differs from torch by {bad} (> {atol}) on {min(n.values())} samples; "
                                f"refusing to write {out_dir}")
    import onnx
    import onnxruntime

    provenance = {
        **dict(artifact.provenance),
        **dict(extra_provenance or {}),
        "git_commit": git_commit(),
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "export": {"opset": OPSET, "exporter": "torch.onnx legacy (dynamo=False)",
                   "weights": "float16 (rounded before the parity check; float32 compute)" if weights_fp16 else "float32", "parity_samples": min(n.values()),
                   "parity_max_abs_diff": diffs, "parity_atol": atol},
    }
    return write_artifact(dataclasses.replace(artifact, provenance=provenance), model, out_dir, overwrite=overwrite)
