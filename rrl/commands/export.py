"""`rrl export RUN --out DIR`: a training run's best checkpoint -> policy artifact (model.onnx + policy.yaml).

Every run directory holds `run.yaml` with its `kind` (bc, residual, req, ...); the table below
names the function that exports each kind: `fn(run_dir, out_dir, overwrite=...) -> PolicyArtifact`.

A failed write (full disk, read-only --out) is reported as one line naming the path and the
reason (exit 2), with what the export had created in --out removed.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

# run kind (run.yaml `kind`) -> (module, function)
EXPORTERS: dict[str, tuple[str, str]] = {
    "bc": ("training.bc.train", "export_run"),
    "residual": ("training.dmpo.run_residual", "export_run"),
    "dmpo_finetune": ("training.dmpo.run_residual", "export_finetune"),
    "req": ("training.req.export", "export_run"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="training run directory (holds run.yaml)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing artifact in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    import yaml

    from training.output import removing_new_files, writing

    run_file = Path(args.run) / "run.yaml"
    if not run_file.is_file():
        raise SystemExit(f"rrl export: {args.run} is not a training run (no run.yaml)")
    kind = (yaml.safe_load(run_file.read_text()) or {}).get("kind")
    if kind not in EXPORTERS:
        raise SystemExit(f"rrl export: {run_file} has kind {kind!r}; exportable kinds: {sorted(EXPORTERS)}")
    module, fn = EXPORTERS[kind]
    export = getattr(importlib.import_module(module), fn)
    with writing(args.out), removing_new_files(args.out):
        artifact = export(args.run, args.out, overwrite=args.overwrite)
    report = {"artifact": str(artifact.path), "kind": artifact.kind, "algo": artifact.algo, "task": artifact.task,
              "model_sha256": artifact.model_sha256,
              "parity_max_abs_diff": artifact.provenance.get("export", {}).get("parity_max_abs_diff")}
    print(json.dumps(report) if args.json else f"wrote {artifact.path} ({artifact.kind}/{artifact.algo}, {artifact.task})")
    return 0
