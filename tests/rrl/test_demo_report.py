"""`rrl.demo_report`: the demo's rows, comparison, table and plot from launch reports (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from rrl import demo_report


def launch_report(clock_mode: str, outcomes: list[tuple[bool, int]], first_seed: int = 1_000_000, **safety) -> dict:
    """A launch report of the shape `rrl launch --report` writes (rrl.commands.launch.summarize)."""
    results = [{"episode": i, "seed": first_seed + i, "success": ok, "steps": steps}
               for i, (ok, steps) in enumerate(outcomes)]
    counters = {"stale_holds": 0, "nonfinite_fallbacks": 0, "clipped": 0, "base_errors": 0, **safety}
    return {
        "results": results, "success_rate": sum(ok for ok, _ in outcomes) / len(outcomes),
        "jitter_p99_ms": None if clock_mode == "lockstep" else 0.6,
        "latency_p99_ms": 12.0 if clock_mode == "lockstep" else 2.1, "missed_deadlines": 0, "exit_code": 0,
        "control": {"control": {"kind": "control", "safety": counters, "swaps": []}},
        "sim": {"sim_bridge": {"kind": "sim_bridge", "clock_mode": clock_mode, "ticks_without_command": 1,
                               "hold_ticks": 0, "bad_commands": 0, "nonfinite_commands": 0, "foreign_commands": 0,
                               "trajectory_sha256": "ab"}},
    }


def rows() -> list[dict]:
    base = demo_report.configuration("bc", launch_report("lockstep", [(False, 200), (True, 60), (False, 200)],
                                                         clipped=5), "bc", None)
    residual = demo_report.configuration("bc + res", launch_report("lockstep", [(True, 40), (True, 50), (False, 200)],
                                                                   clipped=2, stale_holds=1), "bc", "res")
    realtime = demo_report.configuration("bc + res, realtime", launch_report("realtime", [(True, 38)]), "bc", "res")
    return [base, residual, realtime]


def test_configuration_counts_success_steps_and_safety():
    base, residual, realtime = rows()
    assert (base["episodes"], base["successes"], base["mean_steps_success"]) == (3, 1, 60)
    assert residual["mean_steps_success"] == 45
    assert base["clipped"] == 5 and base["other_safety"] == 1  # the sim's tick without a command
    assert residual["other_safety"] == 2  # + the stale hold
    # lockstep has no deadlines: loop timing does not apply; realtime keeps it
    assert base["jitter_p99_ms"] is None and base["missed_deadlines"] is None and base["latency_p99_ms"] is None
    assert realtime["jitter_p99_ms"] == 0.6 and realtime["missed_deadlines"] == 0


def test_build_report_compares_the_lockstep_pair_seed_by_seed():
    report = demo_report.build_report(rows(), task="ur5_pick")
    cmp = report["comparison"]
    assert cmp["same_seeds"] and cmp["residual_not_below_base"]
    assert cmp["success_gain"] == pytest.approx(1 / 3)
    assert cmp["fixed_by_residual"] == [1_000_000] and cmp["broken_by_residual"] == []
    worse = demo_report.configuration("worse", launch_report("lockstep", [(False, 200)] * 3), "bc", "res")
    assert not demo_report.build_report([rows()[0], worse])["comparison"]["residual_not_below_base"]


def test_one_control_node_per_launch_is_expected():
    report = launch_report("lockstep", [(True, 30)])
    report["control"]["control2"] = report["control"]["control"]
    with pytest.raises(ValueError, match="expected one control node"):
        demo_report.configuration("x", report, "bc", None)


def test_tables_have_a_line_per_configuration():
    report = demo_report.build_report(rows())
    text = demo_report.format_table(report).splitlines()
    assert len(text) == 2 + 3 and text[0].startswith("configuration")
    assert "0.33 (1/3)" in text[2] and "0.67 (2/3)" in text[3] and "0.60 ms" in text[4]
    markdown = demo_report.format_markdown_table(report).splitlines()
    assert len(markdown) == 2 + 3 and markdown[4].startswith("| bc + res, realtime | realtime | 1.00 (1/1)")


def test_plot_writes_a_png_with_both_panels(tmp_path):
    import imageio.v2 as iio

    report = demo_report.build_report(rows(), title="test")
    path = demo_report.plot_report(report, tmp_path / "demo.png", horizon_steps=200)
    image = np.asarray(iio.imread(path))
    assert image.shape[0] > 300 and image.shape[1] > 2 * image.shape[0]  # two panels side by side
    with pytest.raises(ValueError, match="no lockstep configuration"):
        demo_report.plot_report(demo_report.build_report(rows()[2:]), tmp_path / "x.png")
