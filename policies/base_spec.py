"""What a base controller string names: the one parser of `--base`, `base_controller` and a residual's `base`.

Four forms, everywhere the project names a base (`rrl eval --base`, the control node's
`base_controller` + `base_artifact` parameters, `rrl switch`, a residual artifact's `base` field):

    waypoint              the task's scripted waypoint expert
    waypoint:VARIANT      a documented variant of it (e.g. the bowl's `no_retry`)
    replay:BAG_DIR        a recorded demonstration bag (`rrl record`), replayed open loop: the
                          episode recorded with the reset seed, action by action (policies.replay)
    PATH                  a policy artifact directory (model.onnx + policy.yaml: a bc, req_prior or
                          crr_prior artifact) or a bare `.onnx` file under the plain ONNX contract
                          (policies.plain_onnx)

`parse_base(text)` checks the form and, for a path, that it is a directory with a policy.yaml or
an .onnx file (for `replay:`, a directory with a rosbag2 `metadata.yaml`); it does not load
anything (no ONNX Runtime, no simulator, no bag read), so the command line can refuse a bad base
before it builds a task. Variants are checked against the task's expert table when the task is
known (`check_variant`).

The control node carries a base in two parameters: `base_controller` holds every form that is not a
model path (`waypoint`, `waypoint:VARIANT`, `replay:BAG_DIR`: one string, so one `ros2 param set`
swaps it) or `bc`, and `base_artifact` the model path of a `bc` base (`parse_node_base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC_FILE = "policy.yaml"
"""The artifact description file (policies.artifact.SPEC_FILE; repeated here so this module imports nothing heavy)."""
WAYPOINT = "waypoint"
REPLAY = "replay"
BAG_METADATA = "metadata.yaml"
"""The file that makes a directory a rosbag2 bag (training.demos.bag reads and checks it)."""


class BaseSpecError(ValueError):
    """A base string that names no base; the message says what was expected."""


@dataclass(frozen=True)
class BaseSpec:
    """A parsed base: the waypoint expert (optionally a variant), an artifact directory, or a plain ONNX file."""

    kind: str
    """`waypoint`, `replay` (a demonstration bag), `artifact` (a policy artifact directory) or `onnx` (a bare
    ONNX file)."""
    variant: str | None = None
    """The waypoint expert's variant (None: the default expert)."""
    path: Path | None = None
    """The bag directory, artifact directory or ONNX file (kind `replay`, `artifact` or `onnx`)."""

    @property
    def is_waypoint(self) -> bool:
        return self.kind == WAYPOINT

    @property
    def is_replay(self) -> bool:
        return self.kind == REPLAY

    @property
    def text(self) -> str:
        """The string form: `waypoint[:VARIANT]`, `replay:BAG_DIR` or the path."""
        if self.is_waypoint:
            return WAYPOINT if self.variant is None else f"{WAYPOINT}:{self.variant}"
        if self.is_replay:
            return f"{REPLAY}:{self.path}"
        return str(self.path)

    @property
    def name(self) -> str:
        """The base's name in status messages and reports: `waypoint[:VARIANT]`, `replay:BAG_DIR` or `bc:PATH`."""
        return self.text if self.is_waypoint or self.is_replay else f"bc:{self.path}"

    @property
    def node_kind(self) -> str:
        """The control node's `base_controller` value for this base (`waypoint[:VARIANT]`, `replay:BAG_DIR` or `bc`)."""
        return self.text if self.is_waypoint or self.is_replay else "bc"

    def matches(self, trained_on: str) -> bool:
        """Whether a residual trained on base `trained_on` (its artifact's `base` field) fits this base.

        Waypoint bases must match exactly (a residual on `waypoint:no_retry` does not fit `waypoint`);
        a learned base matches by its path or its directory name (artifacts record the directory name,
        so a shipped pair keeps fitting wherever it is copied)."""
        if self.is_waypoint or self.is_replay:
            return trained_on == self.text
        return trained_on in (str(self.path), self.path.name)


def is_waypoint(text: str) -> bool:
    """`waypoint` or `waypoint:VARIANT`."""
    return text == WAYPOINT or text.startswith(WAYPOINT + ":")


def is_replay(text: str) -> bool:
    """`replay:BAG_DIR` (or a bare `replay`, which parse_base refuses with the form it needs)."""
    return text == REPLAY or text.startswith(REPLAY + ":")


def parse_base(text: str) -> BaseSpec:
    """Parse `waypoint`, `waypoint:VARIANT`, `replay:BAG_DIR` or a path (the module docstring); raises BaseSpecError."""
    text = str(text).strip()
    if not text:
        raise BaseSpecError("empty base: expected waypoint, waypoint:VARIANT, replay:BAG_DIR or a policy artifact "
                            "directory")
    if is_waypoint(text):
        variant = text.split(":", 1)[1] if ":" in text else None
        if variant == "":
            raise BaseSpecError(f"base {text!r}: no variant after 'waypoint:' (use waypoint for the default expert)")
        return BaseSpec(WAYPOINT, variant=variant)
    if is_replay(text):
        return parse_replay(text.split(":", 1)[1] if ":" in text else "")
    return parse_base_path(text)


def parse_replay(bag: str | Path) -> BaseSpec:
    """`replay:BAG_DIR`: the directory must be a rosbag2 bag (a `metadata.yaml` in it); whether it is an rrl
    demonstration bag of the task, and intact, is checked when it is loaded (policies.replay)."""
    expected = f"a demonstration bag directory ({BAG_METADATA} + one .mcap file per episode, as `rrl record` writes)"
    if not str(bag).strip():
        raise BaseSpecError(f"base 'replay:': no bag directory after 'replay:' (expected replay:BAG_DIR, {expected})")
    path = Path(bag).expanduser()
    where = f"base replay:{bag}"
    if not path.exists():
        raise BaseSpecError(f"{where}: {path} does not exist (expected {expected})")
    if not path.is_dir():
        raise BaseSpecError(f"{where}: {path} is a file, not a bag directory (expected {expected})")
    if not (path / BAG_METADATA).is_file():
        hint = ("; it is a policy artifact: use it as the base itself, without replay:" if (path / SPEC_FILE).is_file()
                else " (an interrupted recording? training.demos.bag.reindex rebuilds it)" if any(path.glob("*.mcap"))
                else "")
        raise BaseSpecError(f"{where}: {path} has no {BAG_METADATA}, so it is not a rosbag2 bag{hint}")
    return BaseSpec(REPLAY, path=path)


def parse_base_path(text: str | Path, role: str = "base") -> BaseSpec:
    """A model given by path (`role` names it in messages: base or residual): an artifact directory or
    a bare .onnx file; raises BaseSpecError."""
    path = Path(text).expanduser()
    expected = (f"an artifact directory (model.onnx + {SPEC_FILE}) or an .onnx file under the plain ONNX contract")
    if role == "base":
        expected = "waypoint[:VARIANT], " + expected
    if not path.exists():
        raise BaseSpecError(f"{role} {str(text)!r} does not exist (expected {expected})")
    if path.is_dir():
        if not (path / SPEC_FILE).is_file():
            raise BaseSpecError(f"{role} {path} is a directory without {SPEC_FILE}: not a policy artifact")
        return BaseSpec("artifact", path=path)
    if path.suffix == ".onnx":
        return BaseSpec("onnx", path=path)
    raise BaseSpecError(f"{role} {path} is a file, not a policy artifact: expected {expected}")


def parse_node_base(base_controller: str, base_artifact: str) -> BaseSpec:
    """The control node's pair of parameters: `base_controller` (waypoint | waypoint:VARIANT | replay:BAG_DIR | bc)
    and `base_artifact` (the model path of a bc base).

    A waypoint or replay base with a non-empty `base_artifact` is accepted (the artifact is simply not used) only
    by the node, whose parameter keeps its last value; `rrl switch` refuses the combination itself. A replay base
    names its bag in `base_controller` itself (one parameter, so one `ros2 param set` swaps it)."""
    if base_controller == "bc":
        if not base_artifact:
            raise BaseSpecError("base_controller 'bc' needs base_artifact (an artifact directory or an ONNX file)")
        return parse_base_path(base_artifact)
    if base_controller == REPLAY:
        raise BaseSpecError("base_controller 'replay' needs its bag in the same parameter: base_controller "
                            "replay:BAG_DIR (base_artifact is for bc bases)")
    if not (is_waypoint(base_controller) or is_replay(base_controller)):
        raise BaseSpecError(f"base_controller must be waypoint, waypoint:VARIANT, replay:BAG_DIR or bc, "
                            f"got {base_controller!r}")
    return parse_base(base_controller)


def check_variant(spec: BaseSpec, task: str) -> None:
    """Refuse a waypoint base the task's expert table does not have (the expert's message lists the known variants)."""
    if not spec.is_waypoint:
        return
    from policies.experts import make_expert

    try:
        make_expert(task, variant=spec.variant)
    except (KeyError, ValueError) as e:
        raise BaseSpecError(f"base {spec.text!r}: {e.args[0] if e.args else e}") from None
