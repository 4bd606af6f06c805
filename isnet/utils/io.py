"""The one atomic file write and the one safe ``torch.load`` of the package."""

from __future__ import annotations

import json
import math
import os
import pickle
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isnet.errors import CheckpointError

__all__ = ["atomic_path", "atomic_torch_save", "atomic_write", "safe_torch_load", "write_json"]


def _refusal_reason(err: Exception) -> str:
    """The line of torch's weights-only error that names what was refused (e.g. ``GLOBAL posix.system``)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    hits = [
        line for line in lines if ("nsupported" in line and "GLOBAL" in line) or "Unsupported operand" in line
    ]
    reason = hits[-1] if hits else lines[0]
    return reason.split(". Please")[0].removeprefix("WeightsUnpickler error: ")[:200]


def safe_torch_load(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file without running code from it (``weights_only=True``), onto the CPU.

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
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated, or not a torch.save file): {err}"
        ) from err


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; fsync'd and renamed onto ``path`` on success.

    A crash at any point leaves ``path`` as it was; a failed block deletes the temporary file. The temporary
    name keeps the suffix (``torch.export.save`` wants ``.pt2``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str, overwrite: bool = True) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``torch.save`` through :func:`atomic_path`; refuses to replace a file unless ``overwrite``."""
    with atomic_path(path, overwrite) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON through :func:`atomic_path` (tensors become lists, NaN ``null``)."""
    return atomic_write(path, json.dumps(_json_safe(payload), indent=2) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor | np.generic):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
