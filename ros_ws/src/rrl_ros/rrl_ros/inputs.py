"""The latest message of each input of the timer-driven loop, with a staleness limit each. No ROS.

A robot's inputs arrive on their own clocks (joint states at 125-500 Hz, a camera at 15-30 Hz,
object poses from a perception node); the control node's timer reads the newest message of each.
An input is stale when it never arrived or its age exceeds its limit; the age is the node's clock
minus the message's header stamp (the time the data was measured), or minus the arrival time when
the message carries no stamp. A required input that is stale holds the robot for the tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Latest:
    """The newest message of one input."""

    msg: Any
    stamp_ns: int
    """Header stamp (node clock's time base), or the arrival time when the message has none."""
    received_ns: int
    """Node clock at arrival."""
    count: int = 1
    """Messages received on this input so far."""


@dataclass
class LatestInputs:
    """Latest message per input and the per-input staleness counters."""

    limits_s: dict[str, float]
    """Input key -> the age above which it is stale, s."""
    topics: dict[str, str] = field(default_factory=dict)
    """Input key -> topic name, for messages."""
    latest: dict[str, Latest] = field(default_factory=dict)
    stale_ticks: dict[str, int] = field(default_factory=dict)
    """Input key -> ticks on which it was stale (or missing)."""

    def put(self, key: str, msg: Any, stamp_ns: int, received_ns: int) -> None:
        count = self.latest[key].count + 1 if key in self.latest else 1
        self.latest[key] = Latest(msg, int(stamp_ns) if stamp_ns > 0 else int(received_ns), int(received_ns), count)

    def snapshot(self) -> "LatestInputs":
        """The newest messages as they are now, for one tick (new messages go on arriving in the original);
        the staleness counters are shared, so a tick counts into this object's."""
        return LatestInputs(self.limits_s, self.topics, dict(self.latest), self.stale_ticks)

    def age_s(self, key: str, now_ns: int) -> float | None:
        """Seconds since the newest message of `key` was measured (never negative); None if none arrived."""
        got = self.latest.get(key)
        return None if got is None else max(0.0, (now_ns - got.stamp_ns) * 1e-9)

    def stale(self, keys, now_ns: int, count: bool = True) -> dict[str, float | None]:
        """The stale inputs among `keys`: key -> age (None: never arrived); counted in `stale_ticks`."""
        out = {}
        for key in keys:
            age = self.age_s(key, now_ns)
            if age is None or not age <= self.limits_s[key]:
                out[key] = age
                if count:
                    self.stale_ticks[key] = self.stale_ticks.get(key, 0) + 1
        return out

    def newest_stamp_ns(self, keys) -> int | None:
        stamps = [self.latest[k].stamp_ns for k in keys if k in self.latest]
        return max(stamps) if stamps else None

    def describe(self, key: str, age: float | None) -> str:
        topic = self.topics.get(key, key)
        if age is None:
            return f"no message on {topic} yet"
        return f"{topic} is {age * 1e3:.0f} ms old (limit {self.limits_s[key] * 1e3:.0f} ms)"
