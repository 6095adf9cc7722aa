"""The machine record every benchmark prints beside its numbers (bench scripts run as `python bench/NAME.py`,
so this module is importable as `machine_info`)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(*packages: str) -> dict:
    """CPU model, cores, Python, platform, load average, niceness and the installed versions of `packages`."""
    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg": os.getloadavg(), "niceness": os.nice(0),
            "versions": versions}
