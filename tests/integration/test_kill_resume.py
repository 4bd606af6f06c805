"""Kill-and-resume: a training run killed with SIGKILL mid-epoch and resumed with ``ckpt_path=last`` ends with
exactly the weights of an uninterrupted run of the same length.

Both runs use ``scripts/train.py`` (the real CLI and configs) on synthetic data with augmentation and dropout,
on the CPU, with ``trainer.deterministic=true``. The interrupted run is stopped at a known optimiser step in
the middle of an epoch (a callback reports the step and waits; the test then sends SIGKILL), so
``last.ckpt`` holds the end of the previous epoch. Resuming replays the interrupted epoch from its start:
the train sampler (``isnet.data.TrainSampler``) gives the same batches with the same per-sample augmentation
seeds ``(seed, epoch, index)``, whichever DataLoader worker loads them, and the per-epoch reseeding
(``isnet.lit.EpochSeed``) the same dropout masks. Limit: progress inside the interrupted epoch is lost (it is
recomputed, not restored). Shown for in-process loading and for 2 persistent worker processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from isnet.utils.io import safe_torch_load

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4  # num_train 16 / batch 4
EPOCHS = 3
KILL_AT_STEP = STEPS_PER_EPOCH + 2  # in the middle of the second epoch

pytestmark = pytest.mark.slow


class StallAtStep(pl.Callback):
    """Test hook: after optimiser step ``step`` write ``flag`` and wait to be killed."""

    def __init__(self, step: int, flag: str) -> None:
        self.step = step
        self.flag = Path(flag)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if trainer.global_step == self.step:
            self.flag.write_text(f"{trainer.current_epoch} {trainer.global_step}")
            time.sleep(600)


def _overrides(run_dir: Path, workers: int) -> list[str]:
    return [
        "experiment=demo",
        f"hydra.run.dir={run_dir}",
        "data.image_size=[32,32]",
        "data.num_train=16",
        "data.num_val=2",
        "data.batch_size=4",
        f"data.num_workers={workers}",
        "data.augment=true",
        "model.model_config.feats_channels=16",
        "model.model_config.transform_channels=8",
        f"schedule.epochs={EPOCHS}",
        "trainer.deterministic=true",
        "trainer.check_val_every_n_epoch=1",
        "callbacks=default",
        "logger=csv",
        "test=false",
        "optimized_metric=null",
        "seed=7",
    ]


def _train(args: list[str], flag: Path | None = None) -> subprocess.CompletedProcess | None:
    """Run ``scripts/train.py``; with ``flag``, SIGKILL it once the stall callback has written the flag."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "train.py"), *args]
    if flag is None:
        result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        return result
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 900
    try:
        while not flag.exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited before the kill point: {proc.stderr.read().decode()[-5000:]}")
            assert time.monotonic() < deadline, "training never reached the kill point"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return None


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert a["epoch"] == b["epoch"]
    assert list(a["state_dict"]) == list(b["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    (opt_a,), (opt_b,) = a["optimizer_states"], b["optimizer_states"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for index, state in opt_a["state"].items():
        assert torch.equal(state["momentum_buffer"], opt_b["state"][index]["momentum_buffer"]), index
    assert opt_a["param_groups"][0]["lr"] == opt_b["param_groups"][0]["lr"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final ``last.ckpt`` of an uninterrupted run with in-process loading."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    _train(_overrides(run_dir, workers=0))
    return safe_torch_load(run_dir / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(
    uninterrupted: dict, tmp_path: Path, workers: int
) -> None:
    # The reference run loads in-process; with 2 workers the interrupted run's persistent workers have loaded
    # the first epoch while the resumed run starts fresh ones: the augmentation must depend on neither.
    interrupted = tmp_path / "interrupted"
    flag = tmp_path / "stalled.txt"
    stall = [
        f"+callbacks.stall._target_={__name__}.StallAtStep",
        f"+callbacks.stall.step={KILL_AT_STEP}",
        f"+callbacks.stall.flag={flag}",
    ]
    _train(_overrides(interrupted, workers) + stall, flag=flag)
    assert flag.read_text() == f"1 {KILL_AT_STEP}"  # killed in epoch 1, two steps in
    at_kill = safe_torch_load(interrupted / "checkpoints" / "last.ckpt")  # intact, loadable
    assert at_kill["global_step"] == STEPS_PER_EPOCH and at_kill["epoch"] == 0

    _train(_overrides(interrupted, workers) + ["ckpt_path=last"])
    resumed = safe_torch_load(interrupted / "checkpoints" / "last.ckpt")
    _assert_same_training_state(resumed, uninterrupted)
    assert "resumed" in (interrupted / "run.json").read_text()


def test_resume_from_a_malicious_checkpoint_runs_nothing(tmp_path: Path) -> None:
    """``ckpt_path=<file>`` is read with ``weights_only=True`` too: a code-carrying file is refused."""
    marker = tmp_path / "marker"

    class Exploit:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.ckpt"
    torch.save({"epoch": 0, "global_step": 4, "state_dict": {}, "payload": Exploit()}, evil)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "train.py")]
    cmd += _overrides(tmp_path / "run", 0) + [f"ckpt_path={evil}"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 1
    assert str(evil) in result.stderr and "GLOBAL io.open" in result.stderr  # the file, the blocked callable
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists()
