"""Real file systems that fail writes, for the full-disk and read-only tests.

The `mounts` fixture:
- `mounts.disk(size_kib)`: a fresh tmpfs of that size; `mounts.fill(path, leave_bytes)` then leaves
  only about that much free. ENOSPC comes from the kernel, as on a full disk.
- `mounts.read_only()`: an empty tmpfs mounted read-only (EROFS); `mounts.remount_read_only(path)`
  turns a `disk` read-only after something was written to it.

Permission bits are no test here (the tests run as root, which ignores them), so these mount. When
mounting is not permitted (no root, no `mount`, a container without CAP_SYS_ADMIN) the test is
skipped with the reason. Everything mounted is unmounted at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _mount(args: list[str], path: Path) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command: cannot build a full or read-only file system for this test")
    result = subprocess.run(["mount", *args, str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({result.stderr.strip() or result.returncode}); "
                    "this test needs a real full / read-only file system")


@pytest.fixture
def mounts(tmp_path):
    """`mounts.disk(size_kib)` and `mounts.read_only()`; all unmounted at teardown."""
    mounted: list[Path] = []

    class Mounts:
        def disk(self, size_kib: int) -> Path:
            path = tmp_path / f"disk{len(mounted)}"
            path.mkdir()
            _mount(["-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs"], path)
            mounted.append(path)
            return path

        def read_only(self) -> Path:
            path = tmp_path / f"ro{len(mounted)}"
            path.mkdir()
            _mount(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"], path)
            mounted.append(path)
            return path

        def remount_read_only(self, path: Path) -> None:
            _mount(["-o", "remount,ro"], path)

        @staticmethod
        def free_bytes(path: Path) -> int:
            st = os.statvfs(path)
            return st.f_bavail * st.f_frsize

        def fill(self, path: Path, leave_bytes: int) -> Path:
            """A ballast file so that about `leave_bytes` stay free on `path`'s file system."""
            ballast = path / "ballast"
            with open(ballast, "wb") as f:
                f.write(b"\0" * max(0, self.free_bytes(path) - leave_bytes))
            return ballast

    yield Mounts()
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], capture_output=True)
