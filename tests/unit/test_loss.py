"""ISNetLoss equals the reference's weighted sum of mean cross-entropies over valid pixels."""

from __future__ import annotations

import math

import pytest
import torch

from isnet import ISNetLoss


def _manual_ce(logits: torch.Tensor, target: torch.Tensor, ignore: int) -> float:
    """Per-pixel -log softmax at the target class, averaged over non-ignored pixels (double precision)."""
    logp = torch.log_softmax(logits.double(), dim=1)
    total, count = 0.0, 0
    n, _, h, w = logits.shape
    for b in range(n):
        for y in range(h):
            for x in range(w):
                t = int(target[b, y, x])
                if t == ignore:
                    continue
                total -= float(logp[b, t, y, x])
                count += 1
    return total / count


def test_weighted_sum_matches_manual_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    outputs = {k: torch.randn(2, 5, 6, 7, generator=gen) for k in ("stage1", "stage2", "aux")}
    target = torch.randint(0, 5, (2, 6, 7), generator=gen)
    target[0, :2] = 255
    losses = ISNetLoss()(outputs, target)
    expected = {k: _manual_ce(outputs[k], target, 255) for k in outputs}
    assert math.isclose(losses["loss_stage2"].item(), 1.0 * expected["stage2"], rel_tol=1e-6)
    assert math.isclose(losses["loss_stage1"].item(), 0.4 * expected["stage1"], rel_tol=1e-6)
    assert math.isclose(losses["loss_aux"].item(), 0.4 * expected["aux"], rel_tol=1e-6)
    assert math.isclose(losses["loss"].item(), expected["stage2"] + 0.4 * (expected["stage1"] + expected["aux"]),
                        rel_tol=1e-6)  # fmt: skip


def test_all_ignored_batch_gives_zero_not_nan() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    losses = ISNetLoss()({"stage2": logits, "stage1": logits, "aux": logits}, torch.full((1, 4, 4), 255))
    assert losses["loss"].item() == 0.0
    losses["loss"].backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_out_of_range_labels_are_named() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"labels \[7\] are outside \[0, 3\)"):
        ISNetLoss()({"stage2": torch.randn(1, 3, 4, 4)}, target)
    with pytest.raises(ValueError, match="does not match logits"):
        ISNetLoss()({"stage2": torch.randn(1, 3, 4, 4)}, torch.zeros(1, 5, 4, dtype=torch.long))
