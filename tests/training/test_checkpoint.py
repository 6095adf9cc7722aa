"""The checkpoint unit (training/checkpoint.py): written whole, verified on resume, the previous one kept;
a full disk (a real tmpfs) and a read-only mount give one OutputError naming the path."""

import json
import os

import numpy as np
import pytest

from training.checkpoint import (LATEST, MANIFEST, CheckpointError, CheckpointStore, CheckpointWarning, bytes_file,
                                 npz_file, refuse_old_layout, torch_file, write_file_atomic)
from training.output import OutputError


def save(store, step, payload_bytes=1000):
    return store.save(step, {"learner.pt": torch_file({"step": step}),
                             "replay.npz": npz_file({"steps": np.array([step]), "pad": np.zeros(payload_bytes, np.uint8)})},
                      meta={"frames": step})


def read(ckpt):
    import torch

    with np.load(ckpt.file("replay.npz")) as z:
        steps = int(z["steps"][0])
    learner = torch.load(ckpt.file("learner.pt"), weights_only=False)["step"]
    if steps != learner:
        raise CheckpointError(f"{ckpt.path}: replay at {steps}, learner at {learner}")
    return learner


def names(root):
    return sorted(p.name for p in root.iterdir())


def test_a_checkpoint_is_one_directory_with_hashes_and_the_previous_one_is_kept(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", "dmpo")
    assert store.load(read) is None
    for step in (100, 200, 300):
        save(store, step)
    assert names(tmp_path / "checkpoints") == ["ckpt-000000000200", "ckpt-000000000300", LATEST]
    assert (tmp_path / "checkpoints" / LATEST).read_text().strip() == "ckpt-000000000300"
    manifest = json.loads((tmp_path / "checkpoints" / "ckpt-000000000300" / MANIFEST).read_text())
    assert manifest["kind"] == "dmpo" and manifest["step"] == 300 and manifest["meta"] == {"frames": 300}
    replay = tmp_path / "checkpoints" / "ckpt-000000000300" / "replay.npz"
    assert manifest["files"]["replay.npz"]["size_bytes"] == replay.stat().st_size
    assert len(manifest["files"]["replay.npz"]["sha256"]) == 64
    ckpt, value = CheckpointStore(tmp_path / "checkpoints", "dmpo").load(read)
    assert value == 300 and ckpt.step == 300
    # a second save at the same step (a run's last checkpoint right after a periodic one) does not clobber it
    save(store, 300)
    assert names(tmp_path / "checkpoints") == ["ckpt-000000000300", "ckpt-000000000300.1", LATEST]


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_manifest", "mismatch"])
def test_a_damaged_newest_checkpoint_is_refused_by_name_and_the_previous_one_used(tmp_path, damage):
    store = CheckpointStore(tmp_path, "dmpo")
    save(store, 100)
    newest = save(store, 200).path
    if damage == "flip":
        data = bytearray((newest / "replay.npz").read_bytes())
        data[len(data) // 2] ^= 0x01
        (newest / "replay.npz").write_bytes(bytes(data))
        reason = "sha256"
    elif damage == "truncate":
        data = (newest / "learner.pt").read_bytes()
        (newest / "learner.pt").write_bytes(data[:-10])
        reason = "bytes, the manifest says"
    elif damage == "no_manifest":
        (newest / MANIFEST).unlink()
        reason = "incomplete"
    else:  # a replay from another checkpoint, with a manifest that agrees: the trainer's own check refuses it
        other = CheckpointStore(tmp_path / "other", "dmpo")
        os.replace(save(other, 150).path / "replay.npz", newest / "replay.npz")
        manifest = json.loads((newest / MANIFEST).read_text())
        from training.checkpoint import sha256_of

        manifest["files"]["replay.npz"] = {"sha256": sha256_of(newest / "replay.npz"),
                                           "size_bytes": (newest / "replay.npz").stat().st_size}
        (newest / MANIFEST).write_text(json.dumps(manifest))
        reason = "replay at 150, learner at 200"
    with pytest.warns(CheckpointWarning, match=rf"ckpt-000000000200.*{reason}.*resuming from .*ckpt-000000000100"):
        ckpt, value = CheckpointStore(tmp_path, "dmpo").load(read)
    assert value == 100


def test_a_killed_save_leaves_the_previous_checkpoint_and_its_leftover_is_ignored(tmp_path):
    store = CheckpointStore(tmp_path, "req")
    save(store, 100)

    class Killed(BaseException):
        pass

    def dies(f):
        f.write(b"half a learner")
        raise Killed

    with pytest.raises(Killed):
        store.save(200, {"replay.npz": npz_file({"steps": np.array([200])}), "learner.pt": dies})
    assert names(tmp_path) == ["ckpt-000000000100", LATEST]  # the temporary directory went
    # a SIGKILL leaves the temporary directory: resume ignores it, the next save removes it
    (tmp_path / "ckpt-000000000200.tmp").mkdir()
    (tmp_path / "ckpt-000000000200.tmp" / "replay.npz").write_bytes(b"partial")
    resumed = CheckpointStore(tmp_path, "req")
    assert resumed.load(read)[1] == 100
    save(resumed, 300)
    assert names(tmp_path) == ["ckpt-000000000100", "ckpt-000000000300", LATEST]


def test_every_checkpoint_refused_is_an_error_naming_each(tmp_path):
    store = CheckpointStore(tmp_path, "bc")
    for step in (1, 2):
        (save(store, step).path / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"no checkpoint can be resumed from: .*ckpt-000000000002.*ckpt-000000000001"):
        store.load(read)
    with pytest.raises(CheckpointError, match="a 'bc' checkpoint, this run trains 'dmpo'"):
        save(store, 3)
        CheckpointStore(tmp_path, "dmpo").load(read)


def test_a_run_in_the_previous_layout_is_refused_with_the_layout_named(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "learner.pt").write_bytes(b"old")
    with pytest.raises(CheckpointError, match=r"previous layout \(checkpoint/learner.pt: .*start a new run"):
        refuse_old_layout(tmp_path, ["checkpoint/learner.pt", "checkpoint/replay.npz"], "learner.pt and replay.npz")


def test_full_disk_gives_one_clear_error_and_keeps_the_earlier_checkpoint(mounts):
    disk = mounts.disk(256)
    store = CheckpointStore(disk / "run" / "checkpoints", "dmpo")
    save(store, 100, payload_bytes=60_000)
    with pytest.raises(OutputError) as error:
        save(store, 200, payload_bytes=400_000)
    message = str(error.value)
    assert "no space left on device" in message and "ckpt-000000000200.tmp" in message
    assert "ckpt-000000000100 is intact" in message
    assert names(disk / "run" / "checkpoints") == ["ckpt-000000000100", LATEST]  # no temporaries left
    assert CheckpointStore(disk / "run" / "checkpoints", "dmpo").load(read)[1] == 100
    # torch's own writer would say "unexpected pos"; the store writes torch files itself
    mounts.fill(disk, 4096)
    with pytest.raises(OutputError, match="no space left on device"):
        store.save(300, {"learner.pt": torch_file({"w": np.zeros(100_000)})})
    with pytest.raises(OutputError, match=r"best.pt: no space left on device"):
        write_file_atomic(disk / "best.pt", torch_file({"w": np.zeros(100_000)}))
    assert not list(disk.glob(".*.tmp")) and names(disk / "run" / "checkpoints") == ["ckpt-000000000100", LATEST]


def test_read_only_directory_gives_one_clear_error(mounts):
    disk = mounts.disk(256)
    store = CheckpointStore(disk / "checkpoints", "req")
    save(store, 100)
    mounts.remount_read_only(disk)
    with pytest.raises(OutputError, match=r"ckpt-000000000200.tmp: read-only file system; the previous checkpoint"):
        save(store, 200)
    assert CheckpointStore(disk / "checkpoints", "req").load(read)[1] == 100
    with pytest.raises(OutputError, match=r"ro\d/checkpoints: read-only file system"):
        CheckpointStore(mounts.read_only() / "checkpoints", "req").save(1, {"a": bytes_file(b"x")})
