"""Plot `bench/feature_probe.py` results side by side: how far each base's features place the cube, against
a probe that always answers the mean, with each base's success on the 100 held-out seeds where known.

    .venv/bin/python bench/feature_probe_plot.py \\
        --probe "pick, 60 demos=bench/results/feature_probe_pick_depth72.json" \\
        --probe "bowl, 60 demos=bench/results/feature_probe_bowl_depth43.json" --out bench/results/feature_probe.png

Each `--probe LABEL=JSON`; the success comes from the JSON's `--outcomes` file (bench/ur5_failures.py), or
`--success LABEL=RATE` when the probe had none. Prints one JSON object (the plotted numbers).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pair(text: str) -> tuple[str, str]:
    label, _, value = text.rpartition("=")
    if not label or not value:
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE, got {text!r}")
    return label, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", type=pair, action="append", required=True, help="LABEL=feature_probe JSON")
    ap.add_argument("--success", type=pair, action="append", default=[], help="LABEL=success rate (0..1)")
    ap.add_argument("--out", required=True, help="PNG")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    given = {label: float(rate) for label, rate in args.success}
    rows = []
    for label, path in args.probe:
        probe = json.loads(Path(path).read_text())
        success = given.get(label)
        if success is None and probe.get("outcomes"):
            counts = json.loads(Path(probe["outcomes"]).read_text())["counts"]
            success = counts["success"] / sum(counts.values())
        rows.append({"label": label, "json": path, "probe_rmse_cm": probe["probe_rmse_cm"],
                     "mean_rmse_cm": probe["mean_rmse_cm"], "step0_median_cm": probe["step0_error_cm"]["median"],
                     "base_success_rate": success})
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2.5, 4.2))
    x = range(len(rows))
    w = 0.27
    ax.bar([i - w for i in x], [r["mean_rmse_cm"] for r in rows], w, color="0.8", label="always the mean (RMSE)")
    ax.bar(list(x), [r["probe_rmse_cm"] for r in rows], w, color="tab:blue", label="probe, first 20 steps (RMSE)")
    ax.bar([i + w for i in x], [r["step0_median_cm"] for r in rows], w, color="tab:orange",
           label="probe at step 0 (median)")
    for i, r in enumerate(rows):
        if r["base_success_rate"] is not None:
            top = max(r["mean_rmse_cm"], r["probe_rmse_cm"], r["step0_median_cm"])
            ax.text(i, top + 0.4, f"base {100 * r['base_success_rate']:.0f} %", ha="center", fontsize=8)
    ax.set_xticks(list(x), [r["label"] for r in rows], fontsize=8)
    ax.set_ylabel("cube xy error, cm (held-out episodes)")
    ax.set_title("Where the frozen BC features place the cube (linear probe)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(0, max(r["mean_rmse_cm"] for r in rows) * 1.35)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(json.dumps({"out": args.out, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
