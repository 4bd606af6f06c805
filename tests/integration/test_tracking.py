"""Tracking and comparing runs: W&B offline and MLflow loggers without network, early stopping, and a real
``-m seed=0,1`` multirun summarised by ``scripts/summarize_runs.py``."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pytorch_lightning.callbacks import EarlyStopping

from isnet.cli.train import train

from .conftest import TINY, tiny_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def _local(host: str) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse (and record) every connection and name lookup beyond this machine, in this process and, through
    the proxy variables, in the child processes the trackers start."""
    attempts: list[str] = []
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(str(address[0])):
            attempts.append(f"connect {address}")
            raise OSError(f"network blocked by the test: {address}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _local(host.decode() if isinstance(host, bytes) else str(host)):
            attempts.append(f"lookup {host}")
            raise socket.gaierror(f"network blocked by the test: {host}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", lambda s, a: (check(s, a), connect(s, a))[1])
    monkeypatch.setattr(socket.socket, "connect_ex", lambda s, a: (check(s, a), connect_ex(s, a))[1])
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: any request fails at once
    monkeypatch.setenv("NO_PROXY", "")
    for name in (
        "WANDB_MODE",
        "WANDB_ERROR_REPORTING",
        "MLFLOW_DISABLE_TELEMETRY",
        "MLFLOW_ALLOW_FILE_STORE",
    ):
        monkeypatch.delenv(name, raising=False)  # restored after the test: the builders set them
    return attempts


def test_wandb_offline_and_mlflow_runs_are_written_without_network(tmp_path: Path, no_network) -> None:
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    import wandb

    with pytest.raises(OSError, match="blocked"):  # the guard itself works
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert no_network == ["lookup 192.0.2.1"]
    no_network.clear()

    run = tmp_path / "run"
    metrics, objects = train(tiny_config("train", run, ["logger=[wandb,mlflow]"]))
    wandb.finish()
    assert no_network == []

    # W&B: one offline run folder in the run folder, with the logged metrics in its transaction log
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, sorted(p.name for p in (run / "wandb").iterdir())
    log = next(offline[0].glob("run-*.wandb")).read_bytes()
    for key in (b"val/mIoU", b"train/loss", b"train/lr"):
        assert key in log, key
    assert json.dumps(metrics["val/mIoU"]).encode() in log  # the final value, as W&B stores it (JSON)
    assert objects["trainer"].loggers[0].experiment.settings.mode == "offline"

    # MLflow: a run in <run>/mlruns whose last val/mIoU is the run's final value
    logged = list((run / "mlruns").glob("*/*/metrics/val/mIoU"))
    assert len(logged) == 1
    last = logged[0].read_text().split("\n")[-2].split()  # "<timestamp> <value> <step>"
    assert float(last[1]) == pytest.approx(metrics["val/mIoU"], abs=1e-6)
    params = logged[0].parents[2] / "params"
    assert (params / "optimizer" / "lr").read_text() == "0.01"  # nested hyper-parameters: a folder each
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_early_stopping_ends_a_run_whose_miou_does_not_improve(tmp_path: Path) -> None:
    """5 epochs planned; no gain of 1.0 mIoU is possible, so it stops after 1 + patience validations."""
    cfg = tiny_config("train", tmp_path / "run", ["schedule.epochs=5", "callbacks=early_stopping",
                      "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0"])  # fmt: skip
    metrics, objects = train(cfg)
    trainer = objects["trainer"]
    stopper = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
    assert (stopper.monitor, stopper.mode, stopper.patience) == ("val/mIoU", "max", 1)
    assert trainer.current_epoch == 2 and trainer.global_step == 4  # 2 of 5 epochs, 2 steps each
    assert stopper.stopped_epoch == 1 and trainer.max_epochs == 5
    history = json.loads((tmp_path / "run" / "metrics_history.json").read_text())
    assert history["val_epoch"] == [0, 1]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_seed_multirun_is_summarised(tmp_path: Path) -> None:
    """``scripts/train.py -m seed=0,1`` then ``scripts/summarize_runs.py`` on the multirun folder, as a user runs
    them."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HYDRA_FULL_ERROR": "0"}
    args = [*TINY, "seed=0,1", "trainer.check_val_every_n_epoch=1", "trainer.num_sanity_val_steps=0",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    done = subprocess.run([sys.executable, "scripts/train.py", "-m", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    per_run = [json.loads((sweep / str(job) / "metrics.json").read_text()) for job in (0, 1)]

    done = subprocess.run([sys.executable, "scripts/summarize_runs.py", str(sweep), "--json"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [run["label"] for run in summary["runs"]] == ["0 (seed=0)", "1 (seed=1)"]
    assert summary["differing_settings"] == ["seed"]
    values = [m["val/mIoU"] for m in per_run]
    row = summary["metrics"]["val/mIoU"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(sum(values) / 2)
    assert row["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert per_run[0]["train/loss"] != per_run[1]["train/loss"]  # the seeds did change the runs
    assert summary["plot"] == str(sweep / "summary.png") and (sweep / "summary.png").stat().st_size > 0


def test_each_wandb_logger_of_a_process_is_a_new_run(tmp_path: Path, no_network) -> None:
    """Hydra runs the jobs of a multirun in one process: job 2 must not log into job 1's W&B run."""
    pytest.importorskip("wandb")
    import wandb

    from isnet.lit.loggers import build_wandb_logger

    first = build_wandb_logger(save_dir=str(tmp_path / "0"), project="p").experiment
    second = build_wandb_logger(save_dir=str(tmp_path / "1"), project="p").experiment
    try:
        assert first.id != second.id and wandb.run is second
        assert [len(list((tmp_path / job / "wandb").glob("offline-run-*"))) for job in "01"] == [1, 1]
    finally:
        wandb.finish()
    assert no_network == []
