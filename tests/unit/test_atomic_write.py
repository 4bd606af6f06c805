"""No half-written files: :func:`isnet.utils.io.atomic_path` (under every atomic write) renames a temporary file.

A child process starts saving a large checkpoint over an existing valid one and is killed with SIGKILL at
several points of the write (while pickling, after some megabytes of tensor data, during ``fsync``, just
before the rename). Each time the previous file must still be there, byte-identical and loadable, and no
partial file may carry the checkpoint's name. An exception raised mid-write must also leave no temporary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from isnet.errors import CheckpointError
from isnet.utils.io import atomic_torch_save, safe_torch_load, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG_MB = 48  # the new checkpoint's size; large enough that writing it takes many write calls

# The child saves a large dict over ``target``. Depending on ``mode`` it stops (sleeps, so the parent can
# kill it at a known point) inside pickling, inside fsync or just before the rename; ``size`` mode just writes
# and the parent kills it once the temporary file has grown past a threshold.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    import isnet.utils.io as io

    target, mode, ready = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    big_mb = int(sys.argv[4])

    def stall(*_args, **_kwargs):
        ready.write_text("stalled")
        time.sleep(600)

    class Stall:
        def __reduce__(self):
            stall()
            return (int, (0,))

    payload = {f"w{i}": torch.full((1024, 256), float(i)) for i in range(big_mb)}  # 1 MiB each
    if mode == "pickle":
        payload = {"a": payload["w0"], "stall": Stall(), **payload}
    elif mode == "fsync":
        io.os.fsync = stall
    elif mode == "rename":
        io.os.replace = stall
    ready.write_text("started") if mode == "size" else None
    io.atomic_torch_save(payload, target, overwrite=True)
    ready.write_text("finished")
    """
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temp_files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*"))


def _old_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    state = {"weight": torch.arange(12.0).reshape(3, 4), "step": torch.tensor(7)}
    atomic_torch_save({"state_dict": state, "meta": {"epoch": 1}}, path)
    return state


def _kill_child(target: Path, mode: str, threshold_bytes: int = 0) -> None:
    """Start the child and SIGKILL it at the point ``mode`` names."""
    ready = target.parent / "ready.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), mode, str(ready), str(BIG_MB)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"child exited early: {proc.communicate()[1].decode()[-2000:]}"
            state = ready.read_text() if ready.exists() else ""
            if mode != "size" and state == "stalled":
                break
            if mode == "size" and state == "started":
                temps = _temp_files(target.parent, target.name)
                if temps and temps[0].stat().st_size >= threshold_bytes:
                    break
            time.sleep(0.002)
        else:
            pytest.fail(f"child never reached the kill point {mode!r}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert ready.read_text() != "finished", "the save completed before the kill; nothing was tested"


KILL_POINTS = [
    ("pickle", 0),
    ("size", 1 << 20),
    ("size", (BIG_MB // 2) << 20),
    ("fsync", 0),
    ("rename", 0),
]


@pytest.mark.parametrize(
    ("mode", "threshold"), KILL_POINTS, ids=[f"{m}-{t >> 20}MiB" for m, t in KILL_POINTS]
)
def test_sigkill_mid_write_keeps_previous_checkpoint(tmp_path: Path, mode: str, threshold: int) -> None:
    target = tmp_path / "last.ckpt"
    old_state = _old_checkpoint(target)
    old_digest = _digest(target)

    _kill_child(target, mode, threshold)

    assert _digest(target) == old_digest  # the name still points at the complete previous file
    loaded = safe_torch_load(target)
    assert loaded["meta"] == {"epoch": 1}
    for key, value in old_state.items():
        assert torch.equal(loaded["state_dict"][key], value)
    # The killed write left at most its hidden temporary file, never a file under the checkpoint's name.
    others = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("last.ckpt", "ready.txt"))
    assert len(others) == 1 and others[0].startswith(".last.ckpt.")
    if mode != "pickle":
        # Bytes had really been written: the kill happened in the middle of a large write.
        assert (tmp_path / others[0]).stat().st_size >= max(threshold, 1)
    leftover = tmp_path / others[0]
    if mode in ("pickle", "size"):
        with pytest.raises(CheckpointError, match=re.escape(str(leftover))):
            safe_torch_load(leftover)  # the leftover is incomplete, and refused as such
    else:
        # Killed after the last byte but before the rename: the new data is complete but was never published.
        assert torch.equal(safe_torch_load(leftover)[f"w{BIG_MB - 1}"], torch.full((1024, 256), BIG_MB - 1.0))


def test_sigkill_mid_first_write_leaves_no_file_under_the_name(tmp_path: Path) -> None:
    target = tmp_path / "model.pth"
    _kill_child(target, "size", 1 << 20)
    assert not target.exists()
    with pytest.raises(CheckpointError, match=re.escape(str(target))):
        safe_torch_load(target)


class _Explode:
    def __reduce__(self) -> tuple[object, ...]:
        raise OSError("No space left on device (simulated)")


def test_exception_mid_write_removes_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    _old_checkpoint(target)
    old_digest = _digest(target)
    with pytest.raises(OSError, match="No space left"):
        atomic_torch_save({"w": torch.zeros(1000), "x": _Explode()}, target, overwrite=True)
    assert _digest(target) == old_digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_no_silent_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    _old_checkpoint(target)
    old_digest = _digest(target)
    with pytest.raises(FileExistsError, match=re.escape(str(target))):
        atomic_torch_save({"w": torch.ones(3)}, target)
    assert _digest(target) == old_digest
    atomic_torch_save({"w": torch.ones(3)}, target, overwrite=True)
    assert torch.equal(safe_torch_load(target)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_truncated_checkpoint_is_refused_with_its_name(tmp_path: Path) -> None:
    """A file cut short by a writer that is not atomic (e.g. a plain copy) gives a clear error."""
    good = tmp_path / "good.pth"
    atomic_torch_save({f"w{i}": torch.randn(256, 256) for i in range(4)}, good)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut_{cut}.pth"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=re.escape(str(bad))):
            safe_torch_load(bad)


def test_write_json(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a" / "m.json", {"x": float("nan"), "y": torch.tensor([1.0, 2.0]),
                                                         "z": np.float32(0.5)})  # fmt: skip
    assert json.loads(path.read_text()) == {"x": None, "y": [1.0, 2.0], "z": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]
