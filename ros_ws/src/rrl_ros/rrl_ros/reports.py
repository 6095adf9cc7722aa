"""Node reports: each node writes `<node name>.json` into `$RRL_REPORT_DIR` when it is set.

`rrl launch` sets RRL_REPORT_DIR for every node and merges the files into its
`--report`; under `ros2 launch` the variable is unset and nothing is written.
Writes are atomic (temporary file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_node_report(node_name: str, payload: dict) -> Path | None:
    directory = os.environ.get("RRL_REPORT_DIR")
    if not directory:
        return None
    target = Path(directory) / f"{node_name}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{node_name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, target)
    return target
