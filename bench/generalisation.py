"""Success under environment shifts that training never saw: BC vs BC + residual (RRLfD's generalisation claim).

Each `--policy LABEL=BASE[+RESIDUAL]` runs the one composed policy `rrl eval` runs (base + residual +
safety layer, `policies.runtime.load_policy`) on the same held-out seeds, nominal and under each
`--shift` (`sim_bridge.shifts`; a seed keeps its layout under every shift, so the columns are paired).
Each cell is the success rate with its 95 % Wilson interval over the episodes (one trained policy: the
interval is over seeds of the evaluation, not of training). Writes OUT.json (the table, the commands'
equivalents and the machine) and OUT.png (grouped bars with the intervals), and prints the JSON.

    .venv/bin/python bench/generalisation.py --task ur5_pick \\
        --policy "BC (state)=policies/pretrained/bc_ur5_pick_state6" \\
        --policy "BC + residual=policies/pretrained/bc_ur5_pick_state6+policies/pretrained/residual_dmpo_ur5_pick" \\
        --shift heavy --shift slippery --episodes 100 --out bench/results/generalisation_ur5_pick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine_info import machine

NOMINAL = "nominal"


def parse_policy(item: str) -> tuple[str, str, str | None]:
    """LABEL=BASE or LABEL=BASE+RESIDUAL -> (label, base, residual or None)."""
    if "=" not in item:
        raise SystemExit(f"generalisation: --policy expects LABEL=BASE[+RESIDUAL], got {item!r}")
    label, spec = item.split("=", 1)
    base, _, residual = spec.partition("+")
    return label, base, residual or None


def evaluate_cell(task_name: str, base: str, residual: str | None, shifts: tuple[str, ...], episodes: int,
                  seed: int) -> dict:
    from policies.base_spec import check_variant, parse_base
    from policies.runtime import camera_for_artifacts, load_policy
    from sim_bridge import make_task
    from training.evaluation import evaluate, success_interval

    parsed = parse_base(base)
    check_variant(parsed, task_name)
    start = time.monotonic()
    with make_task(task_name, camera=camera_for_artifacts(base, residual), shifts=shifts) as task:
        policy = load_policy(task.spec, parsed, residual)
        result = evaluate(task, policy, episodes=episodes, seed=seed, progress=False)
    summary = result.summary()
    wins = sum(e.success for e in result.episodes)
    low, high = success_interval(wins, episodes)
    flags = (f" --residual {residual}" if residual else "") + "".join(f" --shift {s}" for s in shifts)
    return {"success_rate": summary["success_rate"], "ci95": [round(low, 4), round(high, 4)],
            "mean_steps_success": summary["mean_steps_success"], "episodes": episodes,
            "successes": [bool(e.success) for e in result.episodes], "wall_s": round(time.monotonic() - start, 1),
            "command": f"rrl eval --task {task_name} --base {base}{flags} --episodes {episodes} --seed {seed} --json"}


def plot(table: dict, columns: list[str], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(table)
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(columns), 3.6))
    x = np.arange(len(columns))
    for i, label in enumerate(labels):
        rates = [100 * table[label][c]["success_rate"] for c in columns]
        err = np.array([[100 * (table[label][c]["success_rate"] - table[label][c]["ci95"][0]),
                         100 * (table[label][c]["ci95"][1] - table[label][c]["success_rate"])] for c in columns]).T
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, rates, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(x, columns)
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("success (%), 95 % Wilson interval")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=min(len(labels), 3), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> int:
    from training.evaluation import EVAL_SEED_BASE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--policy", action="append", required=True, metavar="LABEL=BASE[+RESIDUAL]",
                    help="a base (waypoint, an artifact dir) and optional residual artifact (repeatable)")
    ap.add_argument("--shift", action="append", default=[], metavar="NAME",
                    help="a shift to evaluate under, one column each (repeatable; sim_bridge.shifts)")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.json and PREFIX.png")
    args = ap.parse_args()

    from sim_bridge import task_robot
    from sim_bridge.shifts import variation_for

    for shift in args.shift:
        try:
            variation_for([shift], task_robot(args.task))
        except ValueError as e:
            raise SystemExit(f"generalisation: --shift: {e}") from None
    columns = [NOMINAL, *args.shift]
    table: dict[str, dict[str, dict]] = {}
    for item in args.policy:
        label, base, residual = parse_policy(item)
        table[label] = {}
        for column in columns:
            shifts = () if column == NOMINAL else (column,)
            table[label][column] = evaluate_cell(args.task, base, residual, shifts, args.episodes, args.seed)
            print(f"{label:>24} {column:>13}: {100 * table[label][column]['success_rate']:5.1f} %", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"task": args.task, "episodes": args.episodes, "seed": args.seed, "columns": columns,
              "table": table, "machine": machine("numpy", "onnxruntime", "pybullet", "mujoco")}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    plot(table, columns, f"{args.task}, {args.episodes} held-out seeds per bar", out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if k != "table"} |
                     {"success": {label: {c: cell["success_rate"] for c, cell in row.items()} for label, row in table.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
