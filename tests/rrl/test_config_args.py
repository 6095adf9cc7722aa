"""Config dataclasses as command lines (rrl.config_args): flags, docstring help, --config YAML, precedence."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from rrl.config_args import ConfigError, add_config_arguments, config_from_args


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
