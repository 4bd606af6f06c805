"""Known errors end ``scripts/{train,eval,predict}.py`` with one ``error:`` line and exit code 1, no traceback.

Each case runs the script in a subprocess, as a user would, and checks the fact the line must name (a path or
a value), not its wording. ``ISNET_DEBUG=1`` brings the traceback back.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.utils.io import safe_torch_load
from tests import fixtures as fx

from .conftest import TINY

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("background", "road", "car", "sky")  # as many classes as the TINY checkpoint
FOLDER = ["data=folder", "data.num_workers=0", "data.batch_size=2", "data.crop_size=[32,32]",
          "data.scale=[64,32]", "data.test_scale=[64,32]"]  # fmt: skip
MODEL = [o for o in TINY if not o.startswith("data")]  # the TINY network and trainer, without its data
SYNTHETIC = [o for o in TINY if o.startswith("data")]
TRAIN = [*MODEL, "~logger", "callbacks=none"]


def run(script: str, args: list[str], run_dir: Path, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ISNET_DEBUG": "1" if debug else "0"}
    return subprocess.run(
        [sys.executable, f"scripts/{script}.py", *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *facts: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for fact in facts:
        assert fact in lines[0], lines[0]
    return lines[0]


def base(mask: Path) -> Path:
    """The dataset root of a mask at ``<root>/masks/val/<name>``."""
    return mask.parents[2]


@pytest.fixture(scope="module")
def ckpt(trained_run: Path) -> Path:
    return trained_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def bad_ckpts(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A truncated copy of the TINY checkpoint and a file whose unpickling would run code."""
    folder = tmp_path_factory.mktemp("bad_ckpts")
    truncated, unsafe = folder / "truncated.ckpt", folder / "unsafe.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:5000])
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, unsafe)
    return {"truncated": truncated, "unsafe": unsafe}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good folder dataset, one with a corrupt val image, a missing root and an empty folder."""
    base = tmp_path_factory.mktemp("data")
    good = fx.write_folder(base / "good", n_train=2, n_val=1, classes=CLASSES)
    corrupt = fx.write_folder(base / "corrupt", n_train=2, n_val=1, classes=CLASSES)
    bad_image = corrupt / "images" / "val" / "val_000.png"
    bad_image.write_bytes(b"this is not a PNG file")
    (base / "empty").mkdir()
    resized = fx.write_folder(base / "resized", n_train=2, n_val=1, classes=CLASSES) / "masks/val/val_000.png"
    Image.fromarray(np.zeros((7, 9), np.uint8)).save(resized)  # not the image's size
    stray = fx.write_folder(base / "stray", n_train=2, n_val=1, classes=CLASSES) / "masks/val/val_000.png"
    Image.fromarray(np.full(np.asarray(Image.open(stray)).shape, 9, np.uint8)).save(stray)  # 9 with 4 classes
    return {"good": good, "corrupt": corrupt, "bad_image": bad_image, "missing": base / "nope",
            "empty": base / "empty", "resized": resized, "stray": stray}  # fmt: skip


def test_lightning_checkpoint_loads_safely(ckpt: Path) -> None:
    """What ModelCheckpoint writes holds only tensors and plain containers: the test after training loads it
    through ``safe_torch_load`` (``weights_only=True``)."""
    checkpoint = safe_torch_load(ckpt)
    assert checkpoint["state_dict"] and checkpoint["hyper_parameters"]["num_classes"] == 4


def test_train_errors(data: dict[str, Path], bad_ckpts: dict[str, Path], tmp_path: Path) -> None:
    cases = {
        "missing_ckpt": ([*SYNTHETIC, f"ckpt_path={tmp_path / 'missing.ckpt'}"], [str(tmp_path / "missing.ckpt")]),
        **{f"{kind}_ckpt": ([*SYNTHETIC, f"ckpt_path={path}"], [str(path)]) for kind, path in bad_ckpts.items()},
        "wrong_root": ([*FOLDER, f"data.root={data['missing']}"], [str(data["missing"])]),
        "empty_root": (["data=ade20k", "data.num_workers=0", f"data.root={data['empty']}"],
                       [str(data["empty"]), "empty"]),
        # a DataLoader worker re-raises the error with its traceback inside the message: still one line
        "corrupt_image": ([*FOLDER, "data.num_workers=1", f"data.root={data['corrupt']}"], [str(data["bad_image"])]),
        "class_count": ([*SYNTHETIC, "model.num_classes=5"], ["model.num_classes=5", "4"]),
        "ddp_batch": ([*SYNTHETIC, "data.batch_size=3", "trainer=ddp_sim"], ["batch_size", "3", "2"]),
        "zero_epochs": ([*SYNTHETIC, "schedule.epochs=0"], ["schedule.epochs=0"]),
    }  # fmt: skip
    for name, (args, facts) in cases.items():
        run_dir = tmp_path / name
        proc = run("train", [*TRAIN, *args], run_dir)
        assert_one_error_line(proc, *facts)
        assert not (run_dir / "run.json").exists(), f"{name}: a failed run left a run folder"


def test_eval_errors(ckpt: Path, bad_ckpts: dict[str, Path], data: dict[str, Path], tmp_path: Path) -> None:
    cases = {
        "missing_ckpt": ([*TINY, f"ckpt={tmp_path / 'missing.ckpt'}"], [str(tmp_path / "missing.ckpt")]),
        **{f"{kind}_ckpt": ([*TINY, f"ckpt={path}"], [str(path)]) for kind, path in bad_ckpts.items()},
        "wrong_root": ([*MODEL, *FOLDER, f"ckpt={ckpt}", f"data.root={data['missing']}"], [str(data["missing"])]),
        "corrupt_image": ([*MODEL, *FOLDER, f"ckpt={ckpt}", f"data.root={data['corrupt']}"], [str(data["bad_image"])]),
        "class_count": ([*TINY, f"ckpt={ckpt}", "data.num_classes=6"], ["4", "6"]),
        "mask_size": ([*MODEL, *FOLDER, f"ckpt={ckpt}", f"data.root={base(data['resized'])}"],
                      [str(data["resized"])]),
        "stray_label": ([*MODEL, *FOLDER, f"ckpt={ckpt}", f"data.root={base(data['stray'])}"],
                        [str(data["stray"]), "9"]),
    }  # fmt: skip
    for name, (args, facts) in cases.items():
        assert_one_error_line(run("eval", args, tmp_path / name), *facts)


def test_predict_errors(
    ckpt: Path, bad_ckpts: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    image = data["good"] / "images" / "val" / "val_000.png"
    cases = {
        "missing_ckpt": ([f"ckpt={tmp_path / 'missing.ckpt'}", f"input={image}"], [str(tmp_path / "missing.ckpt")]),
        **{f"{kind}_ckpt": ([f"ckpt={path}", f"input={image}"], [str(path)]) for kind, path in bad_ckpts.items()},
        "wrong_input": ([f"ckpt={ckpt}", f"input={data['missing']}"], [str(data["missing"])]),
        "corrupt_image": ([f"ckpt={ckpt}", f"input={data['bad_image']}"], [str(data["bad_image"])]),
        "class_count": ([f"ckpt={ckpt}", f"input={image}", "data=synthetic", "data.num_classes=6"], ["4", "6"]),
    }  # fmt: skip
    for name, (args, facts) in cases.items():
        assert_one_error_line(
            run("predict", [*args, f"output_dir={tmp_path / name}"], tmp_path / name), *facts
        )


@pytest.mark.parametrize("script", ["train", "eval", "predict"])
def test_debug_switch_shows_the_traceback(script: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    args = {"train": [*TRAIN, f"ckpt_path={missing}"], "eval": [*TINY, f"ckpt={missing}"],
            "predict": [f"ckpt={missing}", f"input={missing}"]}[script]  # fmt: skip
    proc = run(script, args, tmp_path / "run", debug=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and str(missing) in proc.stderr
