"""Poly learning rate per optimizer step and the reference's iteration count per epoch."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from isnet.data import SyntheticDataModule
from isnet.lit import PolyLR, poly_lr, steps_per_epoch


def reference_lr(t: int, total: int, lr0: float, min_lr: float, power: float = 0.9) -> float:
    """sssegmentation PolyScheduler.updatelr, written out."""
    coeff = (1 - t / total) ** power
    return coeff * (lr0 - min_lr) + min_lr


def test_poly_lr_values() -> None:
    assert poly_lr(0, 100, 0.01, 1e-4) == 0.01
    assert poly_lr(50, 100, 0.01, 1e-4) == 0.5**0.9 * (0.01 - 1e-4) + 1e-4
    assert poly_lr(99, 100, 0.01, 1e-4) == pytest.approx(1e-4 + 0.01**0.9 * 0.0099, rel=1e-12)
    assert poly_lr(100, 100, 0.01, 1e-4) == 1e-4
    assert poly_lr(130, 100, 0.01, 1e-4) == 1e-4  # past the end: stays at min_lr


@pytest.mark.parametrize(("lr0", "min_lr", "total"), [(0.01, 1e-4, 37), (0.007, 7e-5, 10), (0.001, None, 25)])
def test_scheduler_sets_the_formula_before_every_step(lr0: float, min_lr: float | None, total: int) -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=lr0, momentum=0.9)
    scheduler = PolyLR(optimizer, total_steps=total, power=0.9, min_lr=min_lr)
    floor = 0.01 * lr0 if min_lr is None else min_lr
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])  # the lr the coming step uses
        optimizer.step()
        scheduler.step()
    assert seen == [reference_lr(t, total, lr0, floor) for t in range(total)]
    assert seen[0] == lr0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(floor, rel=1e-12)  # t = T reaches min_lr


def test_scheduler_state_round_trip() -> None:
    def make() -> tuple[torch.optim.Optimizer, PolyLR]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        return opt, PolyLR(opt, total_steps=20, min_lr=1e-4)

    opt, sched = make()
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2, sched2 = make()
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert opt2.param_groups[0]["lr"] == reference_lr(7, 20, 0.01, 1e-4)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == reference_lr(8, 20, 0.01, 1e-4)


def test_scheduler_rejects_bad_settings() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(ValueError, match="total_steps"):
        PolyLR(opt, total_steps=0)
    with pytest.raises(ValueError, match="min_lr"):
        PolyLR(opt, total_steps=5, min_lr=-1.0)


# (N train, global batch, iters/epoch with W=8, epochs, total iters): spec section 4 optimisation table
SPEC_ROWS = [
    (9000, 16, 562, 110, 61820),
    (9000, 32, 281, 150, 42150),
    (20210, 16, 1263, 130, 164190),
    (20210, 16, 1263, 180, 227340),
    (2975, 16, 186, 440, 81840),
    (30462, 32, 952, 150, 142800),
    (30462, 40, 761, 150, 114150),
]


@pytest.mark.parametrize(("n", "batch", "per_epoch", "epochs", "total"), SPEC_ROWS)
def test_steps_per_epoch_matches_reference_table(
    n: int, batch: int, per_epoch: int, epochs: int, total: int
) -> None:
    assert steps_per_epoch(n, batch, world_size=8) == per_epoch
    assert epochs * steps_per_epoch(n, batch, world_size=8) == total
    assert steps_per_epoch(n, batch, world_size=8) == math.ceil(n / 8) // (batch // 8)


def test_steps_per_epoch_rejects_indivisible_batch() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        steps_per_epoch(100, 10, world_size=4)


def _tiny_datamodule(num_train: int, batch: int) -> SyntheticDataModule:
    return SyntheticDataModule(num_classes=3, image_size=16, num_train=num_train, num_val=2, batch_size=batch)


def test_estimated_stepping_batches_single_process() -> None:
    """Lightning's count (the module's T) equals the reference's count, and the fit runs exactly T steps."""

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch, batch_idx):
            return (self.layer.weight * 0).sum()

        def configure_optimizers(self):
            self.total = self.trainer.estimated_stepping_batches
            return torch.optim.SGD(self.parameters(), lr=0.1)

    probe = Probe()
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, limit_val_batches=0,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(probe, datamodule=_tiny_datamodule(num_train=45, batch=4))
    assert probe.total == 3 * steps_per_epoch(45, 4, world_size=1) == 3 * 11
    assert trainer.global_step == probe.total


@pytest.mark.parametrize(("n", "batch"), [(45, 16), (37, 8), (20210 // 100, 16)])
def test_distributed_train_loader_length_is_reference_count(n: int, batch: int) -> None:
    """With 8 ranks, the DataModule's DistributedSampler + drop_last give floor(ceil(N/W)/(B/W)) per rank."""
    world = 8
    for rank in range(world):
        datamodule = _tiny_datamodule(num_train=n, batch=batch)
        datamodule.trainer = SimpleNamespace(world_size=world, global_rank=rank)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        # the DataModule's own sampler is a DistributedSampler, which Lightning keeps as it is
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler.num_replicas == world
        assert loader.batch_size == batch // world
        assert len(loader) == steps_per_epoch(n, batch, world_size=world)
    # the reference's count differs from the naive floor(N / B) here
    assert steps_per_epoch(45, 16, world_size=8) == 3 != 45 // 16


def test_steps_per_epoch_with_gradient_accumulation() -> None:
    """One optimizer step per A batches, the last incomplete group of an epoch included: ceil(batches / A)."""
    assert steps_per_epoch(45, 4, world_size=1, accumulate_grad_batches=1) == 11
    assert steps_per_epoch(45, 4, world_size=1, accumulate_grad_batches=2) == 6  # 11 batches -> 6 steps
    assert steps_per_epoch(45, 16, world_size=8, accumulate_grad_batches=3) == 1  # 3 batches per rank
    with pytest.raises(Exception, match="accumulate_grad_batches must be an int >= 1"):
        steps_per_epoch(45, 4, accumulate_grad_batches=0)


def test_poly_lr_counts_optimizer_steps_under_gradient_accumulation() -> None:
    """accumulate_grad_batches=2 on ISNetModule: T is in optimizer steps and the learning rate of the t-th step
    is poly_lr(t, T); the two batches of a step see the same rate."""
    from isnet.lit import ISNetModule

    class Record(pl.Callback):
        def __init__(self) -> None:
            self.step_lrs: list[float] = []
            self.batch_lrs: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.batch_lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
            self.step_lrs.append(optimizer.param_groups[0]["lr"])

    tiny = {"backbone": "resnet18d", "feats_channels": 16, "transform_channels": 8}
    module = ISNetModule(tiny, num_classes=3, lr=0.01, min_lr=1e-4)
    record = Record()
    trainer = pl.Trainer(max_epochs=2, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                         limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[record])  # fmt: skip
    trainer.fit(module, datamodule=_tiny_datamodule(num_train=10, batch=2))  # 5 batches -> 3 steps per epoch
    total = 2 * steps_per_epoch(10, 2, accumulate_grad_batches=2)
    assert module.total_steps == total == trainer.global_step == 6
    assert record.step_lrs == [poly_lr(t, total, 0.01, 1e-4) for t in range(total)]
    # batches (0, 1), (2, 3) and the lone 4 of each epoch share a step's rate
    steps_of_batches = [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]
    assert record.batch_lrs == [record.step_lrs[t] for t in steps_of_batches]
