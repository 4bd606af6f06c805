"""The entry scripts as a user runs them (subprocesses): a Hydra sweep, eval, predict and convert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import TINY

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


@pytest.mark.slow
def test_multirun_sweep_writes_one_folder_per_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    done = run_script("scripts/train.py", "-m", *TINY, "debug=fdr", "data.num_classes=3,4",
                      f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for job, classes in ((0, 3), (1, 4)):
        config = (sweep / str(job) / "config.yaml").read_text()
        assert f"num_classes: {classes}" in config
        assert json.loads((sweep / str(job) / "metrics.json").read_text())["train/loss"] > 0


@pytest.mark.slow
def test_eval_and_predict_scripts(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out_json = tmp_path / "eval.json"
    done = run_script("scripts/eval.py", *TINY, f"ckpt={ckpt}", f"output_json={out_json}",
                      f"hydra.run.dir={tmp_path / 'eval_run'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out_json.read_text())
    assert "mIoU (single-scale)" in done.stdout and "shape_3" in done.stdout
    assert 0.0 <= result["mIoU"] <= 1.0 and len(result["IoU"]) == 4

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(
            images / f"{i}.jpg"
        )
    out = tmp_path / "pred"
    done = run_script("scripts/predict.py", f"ckpt={ckpt}", f"input={images}", f"output_dir={out}",
                      f"hydra.run.dir={tmp_path / 'pred_run'}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for i in range(2):
        for kind in ("mask", "overlay", "labels"):
            assert (out / f"{i}_{kind}.png").is_file()
    assert np.asarray(Image.open(out / "0_labels.png")).max() < 4


@pytest.mark.slow
def test_convert_script_reports_errors(tmp_path: Path) -> None:
    done = run_script(
        "scripts/convert_sssegmentation.py", str(tmp_path / "missing.pth"), str(tmp_path / "out.pth")
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and str(tmp_path / "missing.pth") in done.stderr
    assert not (tmp_path / "out.pth").exists()
