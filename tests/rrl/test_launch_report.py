"""`rrl launch --report FILE` where FILE cannot be written: read-only directory, full disk.

Root ignores file permissions, so the tests mount real file systems: a read-only tmpfs and a tiny
tmpfs that is filled up. Where mounting is not permitted (no CAP_SYS_ADMIN) they are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rrl.commands.launch import check_report_path, write_report

ROOT = Path(__file__).resolve().parents[2]
RRL_LAUNCH = [sys.executable, "-c", "import argparse, sys; from rrl.commands import launch as c; "
              "p = argparse.ArgumentParser(prog='rrl launch'); c.add_arguments(p); sys.exit(c.run(p.parse_args()))"]
"""`rrl launch` (the command module alone, so another command's imports cannot slow or break these tests)."""


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs mounted with `options` (e.g. "ro" or "size=64k"), unmounted afterwards."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        if shutil.which("mount") is None:
            pytest.skip("no mount command on this machine")
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                             text=True)
        if out.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here ({out.stderr.strip()}); needs CAP_SYS_ADMIN")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def fill(directory: Path, leave_bytes: int = 0) -> None:
    """Fill the file system of `directory` with one file, leaving about `leave_bytes` free."""
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize - leave_bytes
    with open(directory / "fill", "wb") as f:
        try:
            f.write(b"\0" * free)
            f.flush()
        except OSError:
            pass


def launch_with_report(report: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*RRL_LAUNCH, str(ROOT / "launch" / "ur5.launch.yaml"), "clock_mode:=lockstep",
                           "--report", str(report)], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_read_only_report_directory_is_refused_before_the_stack_starts(tmpfs):
    ro = tmpfs("ro")
    for report in (ro / "r.json", ro / "sub" / "r.json"):
        out = launch_with_report(report)
        assert out.returncode == 2, out.stdout + out.stderr
        assert out.stderr.strip() == f"rrl launch: cannot write the report {report}: read-only file system; nothing started"
        assert "started" not in out.stdout
    assert os.listdir(ro) == []


def test_a_full_disk_is_refused_before_the_stack_starts(tmpfs):
    full = tmpfs("size=64k")
    fill(full)
    out = launch_with_report(full / "r.json")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"cannot write the report {full / 'r.json'}: no space left on device" in out.stderr
    assert "started" not in out.stdout and os.listdir(full) == ["fill"]  # the probe file is gone


def test_a_disk_that_fills_during_the_run_keeps_the_old_report_and_no_temporary_file(tmpfs):
    disk = tmpfs("size=256k")
    report = disk / "r.json"
    report.write_text('{"old": true}')
    fill(disk, leave_bytes=32 * 1024)
    assert check_report_path(report) is None  # room for the probe: the stack would start
    problem = write_report(report, {"results": ["x" * 100] * 2000})  # ~200 kB: does not fit
    assert problem == f"cannot write the report {report}: no space left on device"
    assert report.read_text() == '{"old": true}' and sorted(os.listdir(disk)) == ["fill", "r.json"]
