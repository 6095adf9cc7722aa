"""A private ROS 2 domain for whatever starts its own stacks: `rrl demo`, bench/control_loop.py, the ROS tests.

One lock file per id (/tmp/rrl_ros_domain_<id>.lock, an exclusive flock held while the handle is open), so
demos, tests and benches running side by side on one machine never share a domain.
"""

from __future__ import annotations

import random

MAX_DOMAIN_ID = 232
"""Fast DDS's default port mapping allows domain ids up to 232."""


def claim_domain() -> tuple[int, object]:
    """(domain id, lock handle): an id nothing else on this machine holds until the handle is closed."""
    import fcntl

    ids = list(range(1, MAX_DOMAIN_ID + 1))
    random.shuffle(ids)
    for domain in ids:
        handle = open(f"/tmp/rrl_ros_domain_{domain}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return domain, handle
    raise RuntimeError("no free ROS domain id (every /tmp/rrl_ros_domain_<id>.lock is held)")
