"""Safe reading and atomic writing of checkpoint files."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["CheckpointError", "atomic_torch_save", "atomic_write_text", "safe_torch_load"]


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the reason."""


def _refusal_reason(err: Exception) -> str:
    """The line of torch's weights-only error that names what was refused (e.g. ``GLOBAL posix.system``)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    hits = [
        line for line in lines if ("nsupported" in line and "GLOBAL" in line) or "Unsupported operand" in line
    ]
    reason = hits[-1] if hits else (lines[0] if lines else type(err).__name__)
    return reason.split(". Please")[0].removeprefix("WeightsUnpickler error: ")[:200]


def safe_torch_load(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file without running code from it (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, truncated, or holds objects other than tensors and plain
            containers (a pickle that would execute code is refused, not run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains Python objects other than tensors and plain containers, "
            f"and unpickling them could run code; nothing in it was executed ({_refusal_reason(err)})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err


def _chmod_like_open(path: str) -> None:
    """mkstemp creates 0600 files; give the result the permissions a plain ``open()`` would (0666 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Run ``write`` on a hidden temporary file beside ``path``, fsync it, then rename it onto ``path``.

    A crash at any point leaves ``path`` as it was (the complete previous file, or nothing); a failed write
    deletes its temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _chmod_like_open(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename it into place.

    A crash mid-write leaves any previous file untouched, never a half-written one.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it")
    return _atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    return _atomic_write(Path(path), lambda handle: handle.write(text.encode()))
