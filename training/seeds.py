"""Episode seeds: one allocation rule for demonstrations, training, statistics and held-out evaluation.

Every task episode is reset with a seed from one of these disjoint half-open ranges, so that no
trainer ever trains on, or measures statistics on, an episode that evaluation holds out, and no
two training seeds (`--seed`) share an episode:

    demonstrations  [0, 1_000_000)              demo_episode_seed(first, i) = first + i (default first 0)
    evaluation      [1_000_000, 2_000_000)      evaluation_episode_seed(i)  = 1_000_000 + i (first = 1_000_000)
    statistics      [9_000_000, 10_000_000)     statistics_episode_seed(i)  = 9_000_000 + i
    training        [10_000_000, 1_010_000_000) training_episode_seed(s, i) = 10_000_000 + s * 1_000_000 + i

Held-out evaluation starts at 1_000_000 (`EVAL_SEED_BASE`) and must stay there: every shipped
result was measured on those seeds. Training run seed `s` (0 <= s < 1000) owns the million seeds
`[10_000_000 + s * 1_000_000, ...)`, one per training episode; a run that would need more raises
`SeedRangeError` rather than spill into another seed's range. All seeds stay below 2**31 (some
simulators take 32-bit seeds).

Several rollout workers of one run share the run's range by drawing disjoint episode indices
`i` (a shared counter, or `i = worker + k * workers`); they never need a range of their own.

`batch_order_seed(s, epoch)` seeds a shuffle (BC's batch order), never a task, so it has no range.
"""

from __future__ import annotations

from dataclasses import dataclass


class SeedRangeError(ValueError):
    """A seed would leave the range its use owns (or a run seed is outside the allowed ones)."""


@dataclass(frozen=True)
class SeedRange:
    """A half-open range of episode seeds owned by one use."""

    name: str
    """What the seeds are for (`demonstrations`, `evaluation`, `statistics`, `training seed S`)."""
    start: int
    """First seed."""
    stop: int
    """One past the last seed."""

    def __contains__(self, seed: int) -> bool:
        return self.start <= seed < self.stop

    def __len__(self) -> int:
        return self.stop - self.start

    def seed(self, i: int) -> int:
        """The `i`-th seed of the range; `SeedRangeError` past its end."""
        if not 0 <= i < len(self):
            raise SeedRangeError(f"{self.name} episode {i} is outside its {len(self)} seeds "
                                 f"[{self.start}, {self.stop}); start a run with another seed")
        return self.start + i


DEMO_SEED_BASE = 0
"""Demonstrations use seeds from here up (one per recorded attempt)."""
EVAL_SEED_BASE = 1_000_000
"""Held-out evaluation seeds start here (fixed: shipped results were measured from here)."""
STATS_SEED_BASE = 9_000_000
"""Base-only statistics episodes (normalisation, the base's success) use seeds from here."""
TRAIN_SEED_BASE = 10_000_000
"""Training episodes of run seed 0 start here."""
TRAIN_SEED_STRIDE = 1_000_000
"""Training episodes each run seed owns (and the distance between two run seeds' ranges)."""
MAX_RUN_SEEDS = 1000
"""Run seeds (`--seed`) 0 .. MAX_RUN_SEEDS - 1 draw training episodes."""

DEMOS = SeedRange("demonstrations", DEMO_SEED_BASE, EVAL_SEED_BASE)
EVALUATION = SeedRange("evaluation", EVAL_SEED_BASE, 2_000_000)
STATISTICS = SeedRange("statistics", STATS_SEED_BASE, TRAIN_SEED_BASE)


def check_run_seed(run_seed: int) -> int:
    """`run_seed` if it may draw training episodes (an int in [0, MAX_RUN_SEEDS)), else `SeedRangeError`."""
    if isinstance(run_seed, bool) or not isinstance(run_seed, int) or not 0 <= run_seed < MAX_RUN_SEEDS:
        raise SeedRangeError(f"seed must be an integer in [0, {MAX_RUN_SEEDS}), got {run_seed!r}")
    return run_seed


def training_range(run_seed: int) -> SeedRange:
    """The training episode seeds of run seed `run_seed`."""
    start = TRAIN_SEED_BASE + check_run_seed(run_seed) * TRAIN_SEED_STRIDE
    return SeedRange(f"training seed {run_seed}", start, start + TRAIN_SEED_STRIDE)


def training_episode_seed(run_seed: int, i: int) -> int:
    """Seed of training episode `i` (0, 1, ...) of the run with seed `run_seed` (DMPO, REQ)."""
    return training_range(run_seed).seed(i)


def evaluation_episode_seed(i: int, first: int = EVAL_SEED_BASE) -> int:
    """Seed of held-out evaluation episode `i` (the same for every run, so evaluations compare).

    `first` starts the episodes later in the held-out range (every seed must stay inside it)."""
    if first not in EVALUATION:
        raise SeedRangeError(f"held-out evaluation seeds lie in [{EVALUATION.start}, {EVALUATION.stop}), got first {first}")
    return EVALUATION.seed(first - EVALUATION.start + i)


def statistics_episode_seed(i: int) -> int:
    """Seed of base-only statistics episode `i`."""
    return STATISTICS.seed(i)


def demo_episode_seed(first: int, i: int) -> int:
    """Seed of demonstration attempt `i` of a recording that starts at seed `first` (must stay in DEMOS)."""
    seed = first + i
    if seed not in DEMOS or first not in DEMOS:
        raise SeedRangeError(f"demonstration seeds must lie in [{DEMOS.start}, {DEMOS.stop}) (held-out evaluation "
                             f"starts at {EVAL_SEED_BASE}); attempt {i} from --seed {first} would use {seed}")
    return seed


def batch_order_seed(run_seed: int, epoch: int) -> int:
    """Seed of the shuffle of BC epoch `epoch` (a permutation seed, not an episode seed)."""
    return run_seed * 100_003 + epoch
