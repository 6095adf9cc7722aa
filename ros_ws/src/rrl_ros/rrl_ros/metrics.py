"""Control-loop metrics: period, jitter, observation-to-command latency, missed deadlines.

Per command the control node records when it published (monotonic wall clock),
the tick it answered and the observation-to-command latency (command publish
time minus the time the sim stamped the observation, both wall clock, same
machine). From these:

- period: time between the commands of two consecutive ticks (a skipped tick
  breaks the chain rather than counting a double period as jitter);
- jitter: |period - nominal period|;
- missed deadline: a command published more than one period after its
  observation (the robot has already stepped on without it), or a tick that was
  never answered (a gap in the tick numbers).

`summary()` gives p50/p99/max in milliseconds plus the counts, with the keys the
launch report uses (`jitter_p99_ms`, `latency_p99_ms`, `missed_deadlines`).
Pure numpy; no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def percentiles_ms(values_s: list[float], prefix: str) -> dict[str, float | None]:
    if not values_s:
        return {f"{prefix}_p50_ms": None, f"{prefix}_p99_ms": None, f"{prefix}_max_ms": None}
    a = np.asarray(values_s, dtype=np.float64) * 1e3
    return {f"{prefix}_p50_ms": round(float(np.percentile(a, 50)), 4),
            f"{prefix}_p99_ms": round(float(np.percentile(a, 99)), 4),
            f"{prefix}_max_ms": round(float(a.max()), 4)}


@dataclass
class LoopMetrics:
    """Accumulates one control loop's timing."""

    period_s: float
    """Nominal control period, s."""
    deadlines: bool = True
    """Count missed deadlines (realtime); in lockstep there is no deadline."""
    periods_s: list[float] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    missed_deadlines: int = 0
    ticks: int = 0
    worst_latency: tuple[float, int] = (0.0, -1)
    """(latency s, tick) of the slowest command, to find where an outlier happened."""
    worst_period: tuple[float, int] = (0.0, -1)
    """(|period - nominal| s, tick) of the worst period."""
    _last: tuple[int, float] | None = None

    def record(self, tick: int, publish_time_s: float, latency_s: float, lateness_s: float | None = None) -> None:
        """One command: the tick it answers, its publish time (monotonic, s) and its latency (s).

        `lateness_s`: how long after its scheduled time the command went out, where the loop has a schedule
        (the timer loop: tick k is due at t_0 + k period); a deadline is missed when it exceeds a period.
        Without it the latency decides (the observation loop: the sim steps on one period after observing)."""
        self.ticks += 1
        self.latencies_s.append(latency_s)
        if latency_s > self.worst_latency[0]:
            self.worst_latency = (latency_s, tick)
        if self.deadlines and (latency_s if lateness_s is None else lateness_s) > self.period_s:
            self.missed_deadlines += 1
        if self._last is not None:
            last_tick, last_time = self._last
            if tick == last_tick + 1:
                self.periods_s.append(publish_time_s - last_time)
                if abs(self.periods_s[-1] - self.period_s) > self.worst_period[0]:
                    self.worst_period = (abs(self.periods_s[-1] - self.period_s), tick)
            elif tick > last_tick + 1 and self.deadlines:
                self.missed_deadlines += tick - last_tick - 1
        self._last = (tick, publish_time_s)

    def break_chain(self) -> None:
        """Forget the previous tick (e.g. at an episode reset, whose first period includes the reset)."""
        self._last = None

    def summary(self) -> dict:
        jitter = [abs(p - self.period_s) for p in self.periods_s]
        out = {"ticks": self.ticks, "period_nominal_ms": round(self.period_s * 1e3, 4)}
        out.update(percentiles_ms(self.periods_s, "period"))
        # in lockstep there is no nominal period to deviate from: no jitter figure
        out.update(percentiles_ms(jitter if self.deadlines else [], "jitter"))
        out.update(percentiles_ms(self.latencies_s, "latency"))
        out["missed_deadlines"] = self.missed_deadlines
        out["worst_latency_tick"] = self.worst_latency[1]
        out["worst_period_tick"] = self.worst_period[1]
        return out
