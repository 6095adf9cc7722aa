"""Every shipped REQ config file (`training/req/configs/*.yaml`, what the README's commands pass to
`rrl train req --config`) builds a valid TrainConfig: no unknown, mistyped or invalid field."""

from pathlib import Path

import pytest

from rrl.config_args import build_config, load_yaml_config
from training.req.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "training" / "req" / "configs").glob("*.yaml"))
TASK = {"ur5": "ur5_bowl", "adroit": "adroit_hammer"}


def test_there_are_config_files():
    assert {p.stem for p in CONFIGS} >= {"ur5_bowl", "adroit_hammer_residual"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_file_builds_a_train_config(path):
    task = next(t for prefix, t in TASK.items() if path.stem.startswith(prefix))
    config = build_config(TrainConfig, {**load_yaml_config(path), "task": task}, str(path))
    assert config.frames >= 1 and config.learner.hidden
