"""One seed-allocation rule (training/seeds.py): disjoint ranges for demonstrations, held-out evaluation,
statistics and every training seed; the trainers draw their episodes through it (checked on the seeds their
loops actually reset with, and by reading their sources for seeds computed by hand)."""

import ast
from pathlib import Path

import numpy as np
import pytest

from training import seeds

ROOT = Path(__file__).resolve().parents[2]

TRAINER_SOURCES = ["training/dmpo/train.py", "training/dmpo/run_residual.py", "training/dmpo/residual.py",
                   "training/harness.py", "training/workers.py", "training/req/train.py",
                   "training/req/intertwine.py", "training/bc/train.py", "training/demos/recording.py",
                   "rrl/commands/record.py", "rrl/commands/train_residual.py", "rrl/commands/train_req.py",
                   "rrl/commands/train_bc.py"]
"""Where episodes are seeded for training, demonstrations, statistics and in-training evaluation.
(training/demos/teleop.py still adds `seed + i` itself: to be moved onto `training.seeds` and listed here.)"""


def seed_arithmetic(path: Path) -> list[str]:
    """`a + b` / `a * b` where an operand names a seed (`seed`, `config.seed`, `EVAL_SEED_BASE`, ...)."""

    def names_seed(node: ast.AST) -> bool:
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        return "seed" in name.lower()

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            if names_seed(node.left) or names_seed(node.right):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def all_ranges() -> list[seeds.SeedRange]:
    return [seeds.DEMOS, seeds.EVALUATION, seeds.STATISTICS] + [seeds.training_range(s) for s in range(seeds.MAX_RUN_SEEDS)]


def test_the_ranges_are_disjoint_and_fixed_where_results_depend_on_them():
    ranges = sorted(all_ranges(), key=lambda r: r.start)
    for a, b in zip(ranges, ranges[1:]):
        assert a.stop <= b.start, f"{a} overlaps {b}"
    assert seeds.EVAL_SEED_BASE == seeds.EVALUATION.start == 1_000_000  # shipped results were measured from here
    assert seeds.STATS_SEED_BASE == seeds.STATISTICS.start == 9_000_000
    assert ranges[-1].stop <= 2**31 - 1  # simulators taking 32-bit seeds
    from training.evaluation import DEMO_SEED_BASE, EVAL_SEED_BASE

    assert (DEMO_SEED_BASE, EVAL_SEED_BASE) == (seeds.DEMO_SEED_BASE, seeds.EVAL_SEED_BASE)


def test_each_function_stays_in_its_range_and_raises_past_its_end():
    last = seeds.TRAIN_SEED_STRIDE - 1
    for s in (0, 1, seeds.MAX_RUN_SEEDS - 1):
        assert seeds.training_episode_seed(s, 0) in seeds.training_range(s)
        assert seeds.training_episode_seed(s, last) in seeds.training_range(s)
        with pytest.raises(seeds.SeedRangeError, match=f"training seed {s} episode {last + 1} is outside"):
            seeds.training_episode_seed(s, last + 1)
    for bad in (-1, seeds.MAX_RUN_SEEDS, 1.5, True):
        with pytest.raises(seeds.SeedRangeError, match="seed must be an integer"):
            seeds.training_episode_seed(bad, 0)
    assert seeds.evaluation_episode_seed(0) == 1_000_000 and seeds.evaluation_episode_seed(3, first=1_000_010) == 1_000_013
    with pytest.raises(seeds.SeedRangeError):
        seeds.evaluation_episode_seed(len(seeds.EVALUATION))
    with pytest.raises(seeds.SeedRangeError, match="held-out"):
        seeds.evaluation_episode_seed(0, first=5)
    assert seeds.statistics_episode_seed(0) == 9_000_000
    assert seeds.demo_episode_seed(11, 2) == 13
    with pytest.raises(seeds.SeedRangeError, match="demonstration seeds must lie in"):
        seeds.demo_episode_seed(999_999, 1)  # would record on the first held-out seed
    with pytest.raises(seeds.SeedRangeError):
        seeds.demo_episode_seed(1_000_000, 0)


def test_no_trainer_computes_episode_seeds_by_hand():
    found = [hit for name in TRAINER_SOURCES for hit in seed_arithmetic(ROOT / name)]
    assert not found, "episode seeds computed outside training.seeds:\n" + "\n".join(found)


def test_the_seeds_every_trainer_resets_with_fall_in_disjoint_ranges(tmp_path):
    """DMPO and REQ training episodes for two run seeds, REQ's held-out evaluation, and recorded demos."""
    from dmpo.point_mass import PointMassReach
    from req.point_task import PointReach
    from training.dmpo.train import TrainConfig as DMPOTrain, train as train_dmpo
    from training.req.learner import REQConfig
    from training.req.train import TrainConfig as REQTrain, train as train_req

    class Log:
        def __init__(self, env):
            self.env, self.seeds = env, []

        def __getattr__(self, name):
            return getattr(self.env, name)

        def reset(self, seed):
            self.seeds.append(seed)
            return self.env.reset(seed)

    used: dict[str, list[int]] = {}
    for s in (0, 1):
        env = Log(PointMassReach(horizon=10))
        train_dmpo(env, lambda act: {"episodes": 0, "success_rate": 0.0, "mean_steps_success": None},
                   DMPOTrain(frames=40, min_replay=1000, eval_every_frames=1000, seed=s), tmp_path / f"dmpo{s}",
                   np.zeros(4), np.ones(4), progress=False)
        used[f"dmpo training seed {s}"] = env.seeds
        envs = []
        train_req(REQTrain(task="point_reach", frames=40, min_replay_steps=1000, eval_every_frames=1000, eval_episodes=2,
                           seed=s, learner=REQConfig(hidden=(8,))),
                  tmp_path / f"req{s}", env_factory=lambda c: envs.append(Log(PointReach())) or envs[-1], progress=False)
        used[f"req training seed {s}"], used[f"req evaluation {s}"] = envs[0].seeds, envs[1].seeds

    from sim_bridge import make_task
    from training.demos.bag import DemoBagWriter
    from training.demos.recording import record_policy
    from training.demos.schema import BagSpec

    class Zero:
        def reset(self, seed):
            pass

        def act(self, obs):
            return np.zeros(4)

    with make_task("ur5_pick") as task:
        task = Log(task)
        with DemoBagWriter(tmp_path / "demos", BagSpec.from_task(task.spec, None), source="test") as writer:
            record_policy(task, Zero(), writer, episodes=2, seed=seeds.DEMO_SEED_BASE, keep_failures=True, progress=False)
        used["demonstrations"] = task.seeds

    owner = {"dmpo training seed 0": seeds.training_range(0), "dmpo training seed 1": seeds.training_range(1),
             "req training seed 0": seeds.training_range(0), "req training seed 1": seeds.training_range(1),
             "req evaluation 0": seeds.EVALUATION, "req evaluation 1": seeds.EVALUATION, "demonstrations": seeds.DEMOS}
    for use, drawn in used.items():
        assert drawn and all(seed in owner[use] for seed in drawn), (use, drawn[:5])
    for a in ("dmpo", "req"):
        assert not set(used[f"{a} training seed 0"]) & set(used[f"{a} training seed 1"])
