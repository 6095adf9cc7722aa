"""`rrl train bc`: behavioural cloning of a base policy (training/bc/train.py), resumable.

Running the same command again on an existing --out continues a killed run where it stopped.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name the demos were recorded on, e.g. ur5_pick")
    p.add_argument("--demos", nargs="+", required=True, metavar="DIR", help="demonstration bag directories (rrl record)")
    p.add_argument("--obs", default="depth+proprio", choices=["depth", "depth+proprio", "state", "proprio"],
                   help="network inputs: depth frames (+ proprio) with the ResNet-18-half, or state/proprio with an MLP")
    p.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard logs, run.yaml)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (the best validation epoch is kept)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per gradient step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--image-px", type=int, default=None,
                   help="expected camera resolution of the demos (checked; the crop is 224/240 of it)")
    p.add_argument("--rotation-deg", type=float, default=5.0, help="max random rotation of the augmentation")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batch order and augmentation")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--export", default=None, metavar="DIR", help="also export the best epoch as an artifact to DIR")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")


def run(args: argparse.Namespace) -> int:
    from training.bc.train import BCConfig, export_run, train
    from training.output import writing

    try:
        config = BCConfig(task=args.task, demos=tuple(args.demos), obs=args.obs, epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, rotation_deg=args.rotation_deg, seed=args.seed,
                          threads=args.threads)
    except ValueError as e:
        raise SystemExit(f"rrl train bc: {e}") from None
    if args.image_px is not None and config.uses_images:
        from training.demos.bag import read_info

        for d in config.demos:
            hw = read_info(d).spec.image_hw
            if hw != (args.image_px, args.image_px):
                raise SystemExit(f"rrl train bc: {d} has {hw} px frames, --image-px says {args.image_px}")
    try:
        with writing(args.out):
            summary = train(config, args.out, progress=not args.json)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"rrl train bc: {e}") from None
    if args.export:
        with writing(args.export):
            artifact = export_run(args.out, args.export, overwrite=True)
        summary["artifact"] = str(artifact.path)
    summary.pop("history", None)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"best epoch {summary['best_epoch']} (val loss {summary['best_val_loss']:.4f}); run in {args.out}")
    return 0
