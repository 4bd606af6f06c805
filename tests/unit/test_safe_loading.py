"""Loading a checkpoint never runs code from it.

Every public way of reading a ``.pth`` goes through :func:`isnet.utils.io.safe_torch_load`
(``torch.load(weights_only=True)``). These tests build files whose unpickling would create a marker file
(``open(path, "w")``, ``os.system("touch ...")``, ``exec(...)``, ``subprocess.call``), check that the payload
is live (a plain ``torch.load(weights_only=False)`` does create the marker), and then show that each entry
point refuses the file with an error naming it and saying nothing was executed, and that the marker is absent.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import isnet
from isnet.cli.convert import convert, to_hub_dir
from isnet.errors import CheckpointError
from isnet.utils.io import safe_torch_load

REPO_ROOT = Path(__file__).resolve().parents[2]


def _payloads(marker: Path) -> dict[str, tuple[Callable[..., object], tuple[object, ...]]]:
    """``__reduce__`` results that each create ``marker`` when unpickled."""
    return {
        "open": (open, (str(marker), "w")),
        "os.system": (os.system, (f"touch '{marker}'",)),
        "exec": (exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.call": (subprocess.call, (["touch", str(marker)],)),
    }


PAYLOADS = ["open", "os.system", "exec", "subprocess.call"]
FORMATS = ["zip", "legacy", "pickle"]


class _Exploit:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func: Callable[..., object], args: tuple[object, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.func, self.args


def _write(obj: object, path: Path, fmt: str) -> Path:
    """Write ``obj`` as a torch zip file, a legacy torch file or a bare pickle."""
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as handle:
            pickle.dump(obj, handle, protocol=2)
    return path


def _sssegmentation_like(exploit: _Exploit) -> dict[str, object]:
    """A released-checkpoint layout (``{'model': state_dict, ...}``) carrying the payload."""
    return {"model": {"backbone_net.conv1.weight": torch.zeros(2, 3, 1, 1)}, "meta": exploit}


def _isnet_like(exploit: _Exploit) -> dict[str, object]:
    """Our own checkpoint layout carrying the payload in ``meta``."""
    return {"format": "isnet", "version": 1, "config": {}, "state_dict": {}, "meta": {"note": exploit}}


ENTRY_POINTS: dict[str, Callable[[Path, Path], object]] = {
    "isnet.load_checkpoint": lambda src, tmp: isnet.load_checkpoint(src),
    "isnet.from_sssegmentation": lambda src, tmp: isnet.from_sssegmentation(src),
    "isnet.utils.io.safe_torch_load": lambda src, tmp: safe_torch_load(src),
    "isnet.cli.convert.convert": lambda src, tmp: convert(src, tmp / "converted.pth"),
    "isnet.cli.convert.to_hub_dir": lambda src, tmp: to_hub_dir(src, tmp / "hub"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_live(tmp_path: Path, payload: str, fmt: str) -> None:
    """Control: the crafted file does run its payload when loaded unsafely, so the refusals below mean something."""
    marker = tmp_path / "marker"
    path = _write(_sssegmentation_like(_Exploit(*_payloads(marker)[payload])), tmp_path / "evil.pth", fmt)
    assert not marker.exists()
    if fmt == "pickle":
        with open(path, "rb") as handle:
            pickle.load(handle)
    else:
        torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_entry_point_refuses_code_and_runs_nothing(
    tmp_path: Path, entry: str, payload: str, fmt: str
) -> None:
    marker = tmp_path / "marker"
    exploit = _Exploit(*_payloads(marker)[payload])
    layout = _isnet_like if entry == "isnet.load_checkpoint" else _sssegmentation_like
    path = _write(layout(exploit), tmp_path / f"evil_{fmt}.pth", fmt)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError) as info:
        ENTRY_POINTS[entry](path, tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "\x1b[" not in message  # no terminal escape codes copied from torch's message
    assert not marker.exists()
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == before
    )  # nothing written (no converted output either)


def test_refusal_names_the_blocked_callable(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = _write(_sssegmentation_like(_Exploit(*_payloads(marker)["os.system"])), tmp_path / "e.pth", "zip")
    with pytest.raises(CheckpointError, match=r"GLOBAL (posix|os|nt)\.system"):
        isnet.from_sssegmentation(path)


def test_safe_files_still_load(tmp_path: Path) -> None:
    """The refusal is specific: a checkpoint of tensors and plain containers loads and round-trips."""
    model = isnet.ISNet(backbone="resnet18d", num_classes=3, feats_channels=16, transform_channels=8)
    path = isnet.save_checkpoint(model, tmp_path / "ok.pth", meta={"epoch": 3, "tags": ["a", "b"]})
    loaded = isnet.load_checkpoint(path)
    assert loaded.meta == {"epoch": 3, "tags": ["a", "b"]}
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)


def test_convert_script_refuses_code(tmp_path: Path) -> None:
    """The command-line converter exits with status 1, names the file and runs nothing."""
    marker = tmp_path / "marker"
    src = _write(
        _sssegmentation_like(_Exploit(*_payloads(marker)["os.system"])), tmp_path / "evil.pth", "zip"
    )
    dst = tmp_path / "out.pth"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "convert_sssegmentation.py"), str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 1, result.stderr
    assert f"refusing to load {src}" in result.stderr and "nothing in it was executed" in result.stderr
    assert not marker.exists() and not dst.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_from_pretrained_refuses_a_poisoned_cache(tmp_path: Path, payload: str) -> None:
    """A tampered file in the download cache (or a hostile mirror) is refused, not run."""
    from isnet.hub import from_pretrained

    marker = tmp_path / "marker"
    cache = tmp_path / "cache"
    cache.mkdir()
    path = _write(
        _sssegmentation_like(_Exploit(*_payloads(marker)[payload])),
        cache / "isnet_resnet50os8_ade20k.pth",
        "zip",
    )
    with pytest.raises(CheckpointError) as info:
        from_pretrained("isnet_r50_d8_ade20k", cache_dir=cache, progress=False)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_backbone_weights_file_refuses_code(tmp_path: Path, payload: str) -> None:
    """``ISNet(pretrained=<file>)`` reads backbone weights without running code from the file."""
    from isnet.models.pretrained import PretrainedError

    marker = tmp_path / "marker"
    exploit = _Exploit(*_payloads(marker)[payload])
    path = _write(
        {"state_dict": {"conv1.weight": torch.zeros(1)}, "x": exploit}, tmp_path / "backbone.pth", "zip"
    )
    with pytest.raises(PretrainedError, match=re.escape(str(path))):
        isnet.ISNet(backbone="resnet18d", num_classes=3, pretrained=str(path))
    assert not marker.exists()
