"""Real-time scheduling for a node process: SCHED_FIFO on every thread (rclpy's and the DDS ones).

A 10 Hz loop on a loaded machine misses its timing because the ordinary scheduler lets other
processes run first for milliseconds (bench/control_loop.py: jitter p99 ~10 ms under load with
SCHED_OTHER, ~0.3 ms with SCHED_FIFO). The nodes sleep between ticks, so a FIFO priority
cannot starve the machine. Needs CAP_SYS_NICE (or an RLIMIT_RTPRIO); without it the node warns
and runs on.
"""

from __future__ import annotations

import os


def set_fifo_priority(priority: int) -> str | None:
    """Put every thread of this process under SCHED_FIFO at `priority` (1..99); returns an error or None."""
    if not 1 <= priority <= 99:
        return f"rt_priority must be in 1..99, got {priority}"
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except (PermissionError, OSError) as e:
            return f"cannot set SCHED_FIFO priority {priority}: {e.strerror or e}"
    return None


def apply_rt_priority(node, priority: int) -> int:
    """Apply a node's `rt_priority` parameter (declared from `rrl_ros.params.RT_PRIORITY`): SCHED_FIFO on every thread.

    Returns the priority (0: ordinary scheduling). Where the system refuses SCHED_FIFO the node logs
    a warning and runs on with ordinary scheduling. Nodes re-apply the priority after DDS matching,
    since DDS creates threads then.
    """
    if priority:
        error = set_fifo_priority(priority)
        if error:
            node.get_logger().warning(f"{error}; running with ordinary scheduling")
    return priority
