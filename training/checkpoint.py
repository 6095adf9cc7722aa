"""Checkpoints written and read as one unit: a directory per checkpoint, verified on resume.

Used by every trainer (DMPO, REQ, BC). A run's checkpoint directory (`RUN/checkpoints/`) holds

    ckpt-000000012000/       one complete checkpoint at step 12000 (frames; gradient steps for BC)
        learner.pt           the trainer's files (here DMPO's learner and replay) ...
        replay.npz
        MANIFEST.json        format, kind, step, the trainer's metadata, every file's sha256 and size
    ckpt-000000008000/       the previous checkpoint, kept as the fallback
    latest                   the name of the newest complete checkpoint, replaced atomically

Writing (`CheckpointStore.save`): every file goes into `ckpt-<step>.tmp/` and is fsynced, then
hashed by reading it back; the manifest is written last; the directory is fsynced and renamed to
its final name, `latest` is switched (write + fsync + rename), and only then are checkpoints other
than the new one and its predecessor removed. A kill at any moment leaves the previous checkpoint
complete (a leftover `*.tmp` directory is ignored on resume and removed by the next save). A full
disk or an unwritable directory raises `training.output.OutputError` naming the path, after the
temporary directory is removed; the previous checkpoint is untouched.

Reading (`CheckpointStore.load`): candidates newest first (the one `latest` names, then the
others by step). Each must have a manifest of this format and kind whose step matches its name,
and every listed file with the listed size and sha256; then the trainer's own `check` runs (it
loads the files and may raise `CheckpointError`, e.g. a replay whose step count disagrees with the
learner's frame counter). A refused checkpoint is reported as a `CheckpointWarning` naming it and
why, and the previous one is tried; when every one is refused, `CheckpointError` lists them all.

Files are written by `FileWriter`s, functions of an open binary file: `torch_file(obj)` (torch
serialises into memory first: `torch.save` reports a failing write as a RuntimeError "unexpected
pos", not as the OS error), `npz_file(arrays)`, `bytes_file(data)`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, TypeVar

from training.output import as_output_error, fsync_dir, remove_path

FORMAT = "rrl.checkpoint/1"
MANIFEST = "MANIFEST.json"
LATEST = "latest"
_NAME = re.compile(r"^ckpt-(\d{12})(?:\.(\d+))?$")

FileWriter = Callable[[BinaryIO], None]
"""Writes one checkpoint file into the open (binary, seekable) file it is given."""
T = TypeVar("T")


class CheckpointError(Exception):
    """A checkpoint (or a whole checkpoint directory) that cannot be resumed from; the message names it and why."""


class CheckpointWarning(UserWarning):
    """A checkpoint was refused on resume and an earlier one is used instead."""


@dataclass(frozen=True)
class Checkpoint:
    """One complete, verified checkpoint directory."""

    path: Path
    """The `ckpt-<step>` directory."""
    kind: str
    """Which trainer wrote it (`dmpo`, `req`, `bc`)."""
    step: int
    """The trainer's progress counter at the checkpoint (frames; gradient steps for BC)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Small facts the trainer stored in the manifest (counters to cross-check the files)."""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """File name -> {"sha256": hex digest, "size_bytes": int}."""

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise CheckpointError(f"{self.path}: has no {name} (files: {sorted(self.files)})")
        return self.path / name


def torch_file(obj: Any) -> FileWriter:
    """`torch.save(obj)`, serialised in memory and then written (so a failing write raises the OS error)."""

    def write(f: BinaryIO) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        f.write(buffer.getbuffer())

    return write


def npz_file(arrays: Mapping[str, Any]) -> FileWriter:
    """`np.savez(**arrays)` streamed into the file (uncompressed)."""

    def write(f: BinaryIO) -> None:
        import numpy as np

        np.savez(f, **arrays)

    return write


def bytes_file(data: bytes) -> FileWriter:
    return lambda f: f.write(data)


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def _write_synced(path: Path, write: FileWriter) -> None:
    with open(path, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_file_atomic(path: str | os.PathLike, write: FileWriter) -> None:
    """One file written whole or not at all: a temporary next to it, fsynced, renamed over `path`.

    For files outside a checkpoint that other code reads by name (BC's `best.pt`). A full disk or
    an unwritable directory raises `OutputError` with the temporary removed and `path` unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        _write_synced(tmp, write)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        remove_path(tmp)
        err = as_output_error(e, path, kept=f"{path.name} is unchanged" if path.exists() else "")
        if err is None:
            raise
        raise err from None


def refuse_old_layout(run_dir: str | os.PathLike, files: Iterable[str], layout: str) -> None:
    """Raise `CheckpointError` if `run_dir` holds a checkpoint of a previous layout (any of `files`).

    Those layouts wrote a checkpoint's files one by one, so a kill or a full disk between them left a
    mismatched pair that nothing can detect afterwards; such a run is not resumed.
    """
    run_dir = Path(run_dir)
    found = [name for name in files if (run_dir / name).exists()]
    if found:
        raise CheckpointError(
            f"{run_dir}: holds a checkpoint in the previous layout ({', '.join(found)}: {layout}), whose files "
            "were written separately and cannot be verified as a pair; start a new run (a new --out)")


class CheckpointStore:
    """The checkpoints of one run (`root`, e.g. `RUN/checkpoints`), written and read as whole units.

    `kind` names the trainer; a checkpoint of another kind is refused. The store keeps the newest
    checkpoint and the one before it in this run's line (the one it resumed from or saved last);
    everything else in `root` that looks like a checkpoint is removed after each save.
    """

    def __init__(self, root: str | os.PathLike, kind: str):
        self.root = Path(root)
        self.kind = kind
        self._previous: Path | None = None

    # -- writing ----------------------------------------------------------------------------------

    def save(self, step: int, files: Mapping[str, FileWriter], meta: Mapping[str, Any] | None = None) -> Checkpoint:
        """Write a complete checkpoint at `step` (see the module docstring); returns it."""
        if step < 0:
            raise ValueError(f"checkpoint step must be >= 0, got {step}")
        if not files or MANIFEST in files or any("/" in n or n.startswith(".") for n in files):
            raise ValueError(f"checkpoint file names {sorted(files)}: need at least one, plain names, not {MANIFEST}")
        final = self._free_name(step)
        tmp = self.root / f"{final.name}.tmp"
        renamed = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            entries = {}
            for name, write in files.items():
                _write_synced(tmp / name, write)
                entries[name] = {"sha256": sha256_of(tmp / name), "size_bytes": (tmp / name).stat().st_size}
            manifest = {"format": FORMAT, "kind": self.kind, "step": int(step), "meta": dict(meta or {}),
                        "files": entries}
            _write_synced(tmp / MANIFEST, bytes_file(json.dumps(manifest, indent=1, sort_keys=True).encode()))
            fsync_dir(tmp)
            os.rename(tmp, final)
            renamed = True
            fsync_dir(self.root)
            latest_tmp = self.root / f".{LATEST}.tmp"
            latest_tmp.unlink(missing_ok=True)
            _write_synced(latest_tmp, bytes_file(final.name.encode() + b"\n"))
            os.replace(latest_tmp, self.root / LATEST)
            fsync_dir(self.root)
        except BaseException as e:
            remove_path(tmp)
            remove_path(self.root / f".{LATEST}.tmp")
            if renamed:  # `latest` was not switched: the save did not happen
                remove_path(final)
            previous = self._previous if self._previous is not None and self._previous.exists() else None
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint was written"
            err = as_output_error(e, tmp, kept)
            if err is None:
                raise
            raise err from None
        checkpoint = Checkpoint(final, self.kind, int(step), dict(meta or {}), entries)
        self._prune(keep={final.name} | ({self._previous.name} if self._previous is not None else set()))
        self._previous = final
        return checkpoint

    def _free_name(self, step: int) -> Path:
        """`ckpt-<step>`, or `ckpt-<step>.<k>` when a directory of that step exists (a refused one, or a
        second save at the same step)."""
        base = f"ckpt-{step:012d}"
        name, k = base, 0
        while (self.root / name).exists():
            k += 1
            name = f"{base}.{k}"
        return self.root / name

    def _prune(self, keep: set[str]) -> None:
        """Remove checkpoints not in `keep` and leftovers of interrupted saves (best effort)."""
        for entry in self.root.iterdir():
            stem = entry.name[:-4] if entry.name.endswith(".tmp") else entry.name
            if entry.is_dir() and _NAME.match(stem) and entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)

    # -- reading ----------------------------------------------------------------------------------

    def candidates(self) -> list[Path]:
        """Final-named checkpoint directories, newest first: the one `latest` names, then by step."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)]
        found.sort(key=_order, reverse=True)
        try:
            named = (self.root / LATEST).read_text().strip()
        except OSError:
            named = ""
        first = [p for p in found if p.name == named]
        return first + [p for p in found if p.name != named]

    def verify(self, path: Path) -> Checkpoint:
        """The checkpoint at `path` if its manifest and every file check out; else `CheckpointError`."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise CheckpointError(f"{path}: incomplete (no {MANIFEST})")
        try:
            manifest = json.loads(manifest_path.read_text())
            fmt, kind, step, files = manifest["format"], manifest["kind"], manifest["step"], manifest["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{manifest_path}: unreadable manifest ({type(e).__name__}: {e})") from None
        if fmt != FORMAT:
            raise CheckpointError(f"{manifest_path}: format {fmt!r}, expected {FORMAT!r}")
        if kind != self.kind:
            raise CheckpointError(f"{path}: a {kind!r} checkpoint, this run trains {self.kind!r}")
        if int(_NAME.match(path.name).group(1)) != step:
            raise CheckpointError(f"{path}: the manifest says step {step}, the directory name another")
        for name, entry in files.items():
            file = path / name
            if not file.is_file():
                raise CheckpointError(f"{path}: incomplete ({name} is missing)")
            size = file.stat().st_size
            if size != entry["size_bytes"]:
                raise CheckpointError(f"{file}: {size} bytes, the manifest says {entry['size_bytes']}")
            digest = sha256_of(file)
            if digest != entry["sha256"]:
                raise CheckpointError(f"{file}: sha256 {digest[:12]}..., the manifest says {entry['sha256'][:12]}... "
                                      "(changed or corrupted after it was written)")
        return Checkpoint(path, kind, int(step), dict(manifest.get("meta") or {}), dict(files))

    def load(self, check: Callable[[Checkpoint], T]) -> tuple[Checkpoint, T] | None:
        """The newest checkpoint that verifies and passes `check`, with what `check` returned.

        None when the run has no checkpoint yet. Refused checkpoints are reported as
        `CheckpointWarning`s; `CheckpointError` when there are checkpoints and every one is refused.
        """
        refused: list[str] = []
        for path in self.candidates():
            try:
                checkpoint = self.verify(path)
                result = check(checkpoint)
            except CheckpointError as e:
                refused.append(str(e))
                continue
            for reason in refused:
                warnings.warn(f"checkpoint refused: {reason}; resuming from {path} instead", CheckpointWarning,
                              stacklevel=2)
            self._previous = path
            return checkpoint, result
        if refused:
            raise CheckpointError(f"{self.root}: no checkpoint can be resumed from: " + "; ".join(refused))
        return None


def _order(path: Path) -> tuple[int, int]:
    m = _NAME.match(path.name)
    return int(m.group(1)), int(m.group(2) or 0)

