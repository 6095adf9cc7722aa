"""What a base controller string names: the one parser of `--base`, `base_controller` and a residual's `base`.

Three forms, everywhere the project names a base (`rrl eval --base`, the control node's
`base_controller` + `base_artifact` parameters, `rrl switch`, a residual artifact's `base` field):

    waypoint              the task's scripted waypoint expert
    waypoint:VARIANT      a documented variant of it (e.g. the bowl's `no_retry`)
    PATH                  a policy artifact directory (model.onnx + policy.yaml: a bc, req_prior or
                          crr_prior artifact) or a bare `.onnx` file under the plain ONNX contract
                          (policies.plain_onnx)

`parse_base(text)` checks the form and, for a path, that it is a directory with a policy.yaml or
an .onnx file; it does not load anything (no ONNX Runtime, no simulator), so the command line can
refuse a bad base before it builds a task. Variants are checked against the task's expert table
when the task is known (`check_variant`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC_FILE = "policy.yaml"
"""The artifact description file (policies.artifact.SPEC_FILE; repeated here so this module imports nothing heavy)."""
WAYPOINT = "waypoint"


class BaseSpecError(ValueError):
    """A base string that names no base; the message says what was expected."""


@dataclass(frozen=True)
class BaseSpec:
    """A parsed base: the waypoint expert (optionally a variant), an artifact directory, or a plain ONNX file."""

    kind: str
    """`waypoint`, `artifact` (a policy artifact directory) or `onnx` (a bare ONNX file)."""
    variant: str | None = None
    """The waypoint expert's variant (None: the default expert)."""
    path: Path | None = None
    """The artifact directory or ONNX file (kind `artifact` or `onnx`)."""

    @property
    def is_waypoint(self) -> bool:
        return self.kind == WAYPOINT

    @property
    def text(self) -> str:
        """The string form: `waypoint[:VARIANT]` or the path."""
        if self.is_waypoint:
            return WAYPOINT if self.variant is None else f"{WAYPOINT}:{self.variant}"
        return str(self.path)

    @property
    def name(self) -> str:
        """The base's name in status messages and reports: `waypoint[:VARIANT]` or `bc:PATH`."""
        return self.text if self.is_waypoint else f"bc:{self.path}"

    @property
    def node_kind(self) -> str:
        """The control node's `base_controller` value for this base (`waypoint[:VARIANT]` or `bc`)."""
        return self.text if self.is_waypoint else "bc"

    def matches(self, trained_on: str) -> bool:
        """Whether a residual trained on base `trained_on` (its artifact's `base` field) fits this base.

        Waypoint bases must match exactly (a residual on `waypoint:no_retry` does not fit `waypoint`);
        a learned base matches by its path or its directory name (artifacts record the directory name,
        so a shipped pair keeps fitting wherever it is copied)."""
        if self.is_waypoint:
            return trained_on == self.text
        return trained_on in (str(self.path), self.path.name)


def is_waypoint(text: str) -> bool:
    """`waypoint` or `waypoint:VARIANT`."""
    return text == WAYPOINT or text.startswith(WAYPOINT + ":")


def parse_base(text: str) -> BaseSpec:
    """Parse `waypoint`, `waypoint:VARIANT` or a path (see the module docstring); raises BaseSpecError."""
    text = str(text).strip()
    if not text:
        raise BaseSpecError("empty base: expected waypoint, waypoint:VARIANT or a policy artifact directory")
    if is_waypoint(text):
        variant = text.split(":", 1)[1] if ":" in text else None
        if variant == "":
            raise BaseSpecError(f"base {text!r}: no variant after 'waypoint:' (use waypoint for the default expert)")
        return BaseSpec(WAYPOINT, variant=variant)
    return parse_base_path(text)


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
    """The control node's pair of parameters: `base_controller` (waypoint | waypoint:VARIANT | bc) and `base_artifact`.

    A waypoint base with a non-empty `base_artifact` is accepted (the artifact is simply not used) only
    by the node, whose parameter keeps its last value; `rrl switch` refuses the combination itself."""
    if base_controller == "bc":
        if not base_artifact:
            raise BaseSpecError("base_controller 'bc' needs base_artifact (an artifact directory or an ONNX file)")
        return parse_base_path(base_artifact)
    if not is_waypoint(base_controller):
        raise BaseSpecError(f"base_controller must be waypoint, waypoint:VARIANT or bc, got {base_controller!r}")
    return parse_base(base_controller)


def check_variant(spec: BaseSpec, task: str) -> None:
    """Refuse a waypoint base the task's expert table does not have (the expert's message lists the known variants)."""
    if not spec.is_waypoint:
        return
    from controllers.experts import make_expert

    try:
        make_expert(task, variant=spec.variant)
    except (KeyError, ValueError) as e:
        raise BaseSpecError(f"base {spec.text!r}: {e.args[0] if e.args else e}") from None
