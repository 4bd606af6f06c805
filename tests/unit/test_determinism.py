"""Same seed, same CPU: bit-identical weights and metrics after training a tiny ISNet.

The loop is the training recipe in miniature: synthetic data with the full reference augmentation pipeline
loaded by two seeded worker processes, ISNet (ResNet-18-D, 16/8 head channels) with the three-term
:class:`isnet.ISNetLoss`, SGD with momentum and weight decay and a poly learning rate, then whole-image
evaluation with :class:`isnet.metrics.SegmentationIoU`. Two runs in this process and one in a fresh process
(another hash seed) must agree bit for bit; another seed must not (so the check can fail).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 4


def train_tiny(seed: int, steps: int = STEPS, num_workers: int = 2, threads: int = 1) -> dict[str, Any]:
    """Train a tiny ISNet for ``steps`` iterations and evaluate it; return digests and metrics.

    Args:
        seed: Seed of the model initialisation, the data and the augmentations.
        steps: Optimiser steps.
        num_workers: DataLoader worker processes.
        threads: Intra-op CPU threads during the run (restored afterwards).

    Returns:
        ``{"weights": sha256 of every state-dict tensor in order, "metrics": {...}, "losses": [...]}``.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_tiny(seed, steps, num_workers)
    finally:
        torch.set_num_threads(previous_threads)


def _train_tiny(seed: int, steps: int, num_workers: int) -> dict[str, Any]:
    from isnet import ISNet, ISNetLoss
    from isnet.data import SyntheticDataModule
    from isnet.inference import whole_inference
    from isnet.metrics import SegmentationIoU

    # What pytorch_lightning.seed_everything(seed) does for the main process.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dm = SyntheticDataModule(
        num_classes=4,
        image_size=40,
        crop_size=32,
        num_train=16,
        num_val=4,
        augment=True,
        batch_size=4,
        num_workers=num_workers,
        seed=seed,
    )
    dm.setup("fit")
    model = ISNet(backbone="resnet18d", num_classes=4, feats_channels=16, transform_channels=8)
    criterion = ISNetLoss(ignore_index=255)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    losses = []
    model.train()
    loader = dm.train_dataloader()
    iterator = iter(loader)
    try:
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = 0.01 * (1 - step / steps) ** 0.9  # the reference's poly schedule
            batch = next(iterator)
            out = criterion(model(batch["image"]), batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            losses.append(out["loss"].item())
    finally:
        if hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
    model.eval()
    metric = SegmentationIoU(num_classes=4)
    for batch in dm.val_dataloader():
        scores = whole_inference(model.predict_logits, batch["image"], out_size=batch["mask"].shape[-2:])
        metric.update(scores.argmax(1), batch["mask"])
    metrics = {k: v.tolist() for k, v in metric.compute().items()}
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().contiguous().cpu().numpy().tobytes())
    return {"weights": digest.hexdigest(), "metrics": metrics, "losses": losses}


def test_same_seed_same_weights_and_metrics_in_process() -> None:
    first = train_tiny(seed=3)
    second = train_tiny(seed=3)
    assert first["losses"] == second["losses"]
    assert first["weights"] == second["weights"]
    assert json.dumps(first["metrics"]) == json.dumps(second["metrics"])
    other = train_tiny(seed=4)
    assert other["weights"] != first["weights"] and other["losses"] != first["losses"]


def test_same_seed_same_weights_in_a_fresh_process() -> None:
    """A new interpreter (other hash seed, fresh worker processes) reproduces the run bit for bit."""
    here = train_tiny(seed=3)
    code = "import json; from tests.unit.test_determinism import train_tiny; print(json.dumps(train_tiny(seed=3)))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert there["losses"] == here["losses"]
    assert there["weights"] == here["weights"]
    assert json.dumps(there["metrics"]) == json.dumps(here["metrics"])
