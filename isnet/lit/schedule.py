"""Per-iteration poly learning-rate schedule of sssegmentation.

Reproduces ``ssseg/modules/models/schedulers/polyscheduler.py``: before every optimizer step the learning rate
is set to ``(1 - t / T) ** power * (lr0 - min_lr) + min_lr`` where ``t`` is the number of optimizer steps
already done (0 at the first step) and ``T = max_epochs * iters_per_epoch``. There is no warm-up, and
``min_lr`` defaults to ``0.01 * lr0`` (``basescheduler.py``).
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from isnet.errors import ConfigError

__all__ = ["PolyLR", "poly_lr", "steps_per_epoch"]


def poly_lr(step: int, total_steps: int, base_lr: float, min_lr: float, power: float = 0.9) -> float:
    """Learning rate of optimizer step ``t = step`` (0-based) of ``T = total_steps``; ``min_lr`` at ``T``.

    Evaluated in the reference's order (``coeff * (base_lr - min_lr) + min_lr``) so that the values are
    bit-identical. Steps past ``total_steps`` stay at ``min_lr`` (the reference never gets there).
    """
    step = min(max(int(step), 0), int(total_steps))
    coeff = (1 - step / total_steps) ** power
    return coeff * (base_lr - min_lr) + min_lr


def steps_per_epoch(
    num_samples: int, global_batch_size: int, world_size: int = 1, accumulate_grad_batches: int = 1
) -> int:
    """Optimizer steps per epoch and rank for ``N = num_samples``, global batch ``B`` and ``W`` processes, as
    counted by the reference: ``floor(ceil(N / W) / (B / W))``.

    ``DistributedSampler`` pads the index list to ``ceil(N / W)`` samples per rank and the train loader drops
    the last incomplete per-rank batch of ``B / W`` samples (``ssseg/train.py``). With gradient accumulation
    over ``A = accumulate_grad_batches`` batches (Lightning's ``trainer.accumulate_grad_batches``; the reference
    has none) one optimizer step sees ``A * B`` images and an epoch makes ``ceil(batches / A)`` steps (Lightning
    also steps on the last, incomplete group of an epoch).
    """
    if global_batch_size % world_size != 0:
        raise ConfigError(
            f"global batch size {global_batch_size} is not divisible by the world size {world_size}"
        )
    if (
        isinstance(accumulate_grad_batches, bool)
        or not isinstance(accumulate_grad_batches, int)
        or accumulate_grad_batches < 1
    ):
        raise ConfigError(f"accumulate_grad_batches must be an int >= 1, got {accumulate_grad_batches!r}")
    batches = math.ceil(num_samples / world_size) // (global_batch_size // world_size)
    return math.ceil(batches / accumulate_grad_batches)


class PolyLR(LRScheduler):
    """Poly decay to ``min_lr``, one scheduler step per optimizer step (Lightning ``interval="step"``).

    Without ``base_lr`` every parameter group decays from its own initial learning rate to the same ``min_lr``.
    With ``base_lr`` (``lr0``) the schedule is computed once from ``lr0`` and a group that carries an
    ``lr_multiplier`` gets ``lr_multiplier * lr_t``, the others ``lr_t``: the reference's ``updatelr`` with
    ``params_rules`` (its floor is ``lr_multiplier * min_lr`` too).

    Args:
        optimizer: The wrapped optimizer.
        total_steps: ``T`` (``trainer.estimated_stepping_batches`` in Lightning).
        power: Poly exponent.
        min_lr: Final learning rate; ``None`` means 1% of the initial learning rate (``base_lr``, or each group's).
        last_epoch: Index of the last step when resuming by hand (Lightning restores the state instead).
        base_lr: ``lr0`` of the shared schedule; ``None``: each group's initial learning rate.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        power: float = 0.9,
        min_lr: float | None = None,
        last_epoch: int = -1,
        base_lr: float | None = None,
    ) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
            raise ConfigError(f"PolyLR total_steps must be a positive int, got {total_steps!r}")
        if power <= 0 or (min_lr is not None and min_lr < 0):
            raise ConfigError(f"PolyLR needs power > 0 and min_lr >= 0 or None, got {power!r}, {min_lr!r}")
        self.total_steps = total_steps
        self.power = power
        self.min_lr = min_lr
        self.base_lr = base_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """Closed form at ``t = last_epoch`` (the number of scheduler steps taken)."""
        if self.base_lr is not None:
            floor = 0.01 * self.base_lr if self.min_lr is None else self.min_lr
            lr = poly_lr(self.last_epoch, self.total_steps, self.base_lr, floor, self.power)
            groups = self.optimizer.param_groups
            return [lr if g.get("lr_multiplier") is None else g["lr_multiplier"] * lr for g in groups]
        floors = [0.01 * base if self.min_lr is None else self.min_lr for base in self.base_lrs]
        return [
            poly_lr(self.last_epoch, self.total_steps, b, m, self.power)
            for b, m in zip(self.base_lrs, floors)
        ]

    _get_closed_form_lr = get_lr
