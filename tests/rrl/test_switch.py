"""`rrl switch` refuses, before any ROS call, what the control node would refuse or silently ignore (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RRL_SWITCH = [sys.executable, "-c", "import argparse, sys; from rrl.commands import switch as c; "
              "p = argparse.ArgumentParser(prog='rrl switch'); c.add_arguments(p); sys.exit(c.run(p.parse_args()))"]
"""`rrl switch` (the command module alone, so another command's imports cannot slow or break these tests)."""


@pytest.mark.parametrize("args, message", [
    (["--base", "waypoint", "--artifact", "X"], "--artifact X is only for --base bc: a waypoint base loads no artifact"),
    (["--base", "waypoint:no_retry", "--artifact", "X"], "a waypoint:no_retry base loads no artifact"),
    (["--base", "bc"], "--base bc needs --artifact DIR"),
    (["--base", "bc", "--artifact", "missing_dir"], "does not exist"),
    (["--base", "bc", "--artifact", "README.md"], "is a file, not a policy artifact"),
])
def test_a_request_the_node_would_refuse_or_ignore_exits_2_without_calling_it(args, message):
    # --timeout 0.1: had the command gone to ROS, it would fail with exit 1 ("service ... not available")
    out = subprocess.run([*RRL_SWITCH, *args, "--timeout", "0.1"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
