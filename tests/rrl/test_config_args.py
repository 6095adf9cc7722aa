"""Config dataclasses as command lines (rrl.config_args): flags, docstring help, --config YAML, precedence."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from rrl.config_args import ConfigError, add_config_arguments, build_config, config_from_args


@dataclass(frozen=True)
class Inner:
    """A nested config."""

    lr: float = 3e-4
    """Learning rate."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths."""


@dataclass(frozen=True)
class Outer:
    """A run config."""

    task: str
    """Task name."""
    frames: int = 1000
    """Environment steps to train for."""
    residual: bool = False
    """Learn a residual."""
    variant: str | None = None
    """Expert variant."""
    inner: Inner = field(default_factory=Inner)
    """The learner."""

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_config_arguments(p, Outer)
    args = p.parse_args(argv)
    return config_from_args(Outer, args, args.config), p


def test_flags_override_yaml_which_overrides_defaults(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("task: ur5_bowl\nframes: 50\ninner:\n  lr: 0.01\n  hidden: [64, 64]\n")
    config, _ = parse(["--config", str(cfg_file), "--frames", "70", "--residual", "--inner.lr", "0.5", "--variant", "none"])
    assert config == Outer(task="ur5_bowl", frames=70, residual=True, variant=None, inner=Inner(lr=0.5, hidden=(64, 64)))
    config, _ = parse(["--task", "ur5_pick", "--inner.hidden", "8", "8", "8"])
    assert config.inner.hidden == (8, 8, 8) and config.frames == 1000


def test_help_is_the_field_docstring():
    _, p = parse(["--task", "x"])
    text = p.format_help()
    assert "Environment steps to train for. (default 1000)" in text and "--inner.lr" in text and "Learning rate." in text


def test_bad_configs_are_refused_with_the_field_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: ur5_pick\nframez: 5\n")
    with pytest.raises(ConfigError, match=r"unknown field 'framez'; did you mean \['frames'\]"):
        parse(["--config", str(bad)])
    with pytest.raises(ConfigError, match="frames must be >= 1"):
        parse(["--task", "x", "--frames", "0"])
    with pytest.raises(ConfigError, match="missing required field"):
        parse([])
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="line 2: not valid YAML"):
        parse(["--config", str(broken)])
    with pytest.raises(SystemExit):
        parse(["--task", "x", "--frames", "ten"])


def test_flattened_nested_fields_get_flat_flags_and_stay_nested_in_the_config():
    p = argparse.ArgumentParser()
    add_config_arguments(p, Outer, flatten=("inner",))
    args = p.parse_args(["--task", "t", "--frames", "5", "--lr", "0.5"])
    config = config_from_args(Outer, args)
    assert config.frames == 5 and config.inner.lr == 0.5 and config.inner.hidden == Inner().hidden
    with pytest.raises(SystemExit):
        p.parse_args(["--task", "t", "--inner.lr", "0.5"])  # no nested spelling once flattened


def test_train_residual_and_req_flags_are_their_config_fields(tmp_path):
    """`rrl train residual|req`: flat flags for the nested loop/learner fields, YAML nested, and REQ's presets."""
    import yaml

    from rrl.cli import build_parser
    from rrl.commands.train_req import config_values
    from training.dmpo.config import ResidualRunConfig
    from training.req.config import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["train", "residual", "--task", "ur5_pick", "--base", "waypoint", "--out", "r",
                              "--frames", "300", "--init-std", "0.33", "--residual-scale", "0.33", "--workers", "2"])
    config = config_from_args(ResidualRunConfig, args)
    assert (config.train.frames, config.train.learner.init_std, config.residual_scale) == (300, 0.33, 0.33)
    assert config.train.learner.policy_lr == ResidualRunConfig(task="t", base="waypoint").train.learner.policy_lr

    (tmp_path / "req.yaml").write_text(yaml.safe_dump({"task": "ur5_bowl", "frames": 100, "learner": {"n_step": 5}}))
    def req(*flags):
        return config_values(parser.parse_args(["train", "req", "--out", "r", "--config", str(tmp_path / "req.yaml"),
                                                *flags]))

    plain = req()
    assert plain["frames"] == 100 and plain["learner"] == {"n_step": 5}  # the file alone: no preset applied
    crr = req("--algo", "crr", "--mode", "rlfd", "--acting", "importance", "--frames", "7")
    assert crr["frames"] == 7 and crr["mode"] == "rlfd"
    assert crr["learner"] == {"n_step": 5, "operator": "td0", "acting": "importance", "expert_action_improvement": False}
    kept = req("--mode", "rlfd", "--expert-action-improvement")
    assert kept["learner"]["expert_action_improvement"] is True  # given explicitly: the preset does not override
    built = build_config(TrainConfig, crr)
    assert built.algo == "crr" and built.learner.n_step == 5 and not built.learner.expert_action_improvement
