"""SegmentationIoU against an independent numpy computation, hand-computed cases and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isnet.metrics import SegmentationIoU

IGNORE = 255


def numpy_reference(preds: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per-class intersection / union with boolean masks over all valid pixels of the split."""
    valid = (target != IGNORE) & (target >= 0) & (target < num_classes)
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    label = np.zeros(num_classes)
    for k in range(num_classes):
        p, t = (preds == k) & valid, (target == k) & valid
        inter[k] = np.logical_and(p, t).sum()
        union[k] = np.logical_or(p, t).sum()
        label[k] = t.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
        acc = inter / label
    return {
        "IoU": iou,
        "Acc": acc,
        "mIoU": np.nanmean(iou),
        "mAcc": np.nanmean(acc),
        "aAcc": inter.sum() / label.sum(),
    }


def random_split(seed: int, num_images: int = 4, num_classes: int = 7, shape=(13, 19)):
    """Label maps where class K-1 never appears, class K-2 is only predicted, plus ignore/out-of-range pixels."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, num_classes - 2, size=(num_images, *shape))
    preds = rng.integers(0, num_classes - 1, size=(num_images, *shape))
    # Make predictions agree with the label often enough for non-trivial IoUs.
    agree = rng.random(size=target.shape) < 0.5
    preds[agree] = target[agree]
    target[rng.random(size=target.shape) < 0.1] = IGNORE
    target[rng.random(size=target.shape) < 0.05] = num_classes + 3  # outside [0, K): ignored too
    return preds, target


def assert_matches(result: dict[str, torch.Tensor], expected: dict[str, np.ndarray]) -> None:
    for key in ("IoU", "Acc"):
        np.testing.assert_allclose(result[key].numpy(), expected[key], rtol=1e-12, atol=0, equal_nan=True)
    for key in ("mIoU", "mAcc", "aAcc"):
        assert float(result[key]) == pytest.approx(float(expected[key]), rel=1e-12, abs=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference(seed: int) -> None:
    num_classes = 7
    preds, target = random_split(seed, num_classes=num_classes)
    metric = SegmentationIoU(num_classes=num_classes)
    metric.update(torch.from_numpy(preds), torch.from_numpy(target))
    result = metric.compute()
    expected = numpy_reference(preds, target, num_classes)
    assert_matches(result, expected)
    # Class K-1: absent from labels and predictions -> NaN, skipped by the mean.
    assert math.isnan(result["IoU"][num_classes - 1]) and math.isnan(result["Acc"][num_classes - 1])
    # Class K-2: predicted but never labelled -> IoU 0 that does count in the mean.
    assert result["IoU"][num_classes - 2] == 0 and math.isnan(result["Acc"][num_classes - 2])
    assert float(result["mIoU"]) == pytest.approx(float(result["IoU"][: num_classes - 1].mean()), rel=1e-12)


def test_several_updates_equal_one_big_update() -> None:
    preds, target = random_split(3, num_images=6)
    whole = SegmentationIoU(num_classes=7)
    whole.update(torch.from_numpy(preds), torch.from_numpy(target))
    split = SegmentationIoU(num_classes=7)
    for i in range(0, 6, 2):
        split.update(torch.from_numpy(preds[i : i + 2]), torch.from_numpy(target[i : i + 2]))
    assert torch.equal(whole.confmat, split.confmat)
    for key, value in whole.compute().items():
        torch.testing.assert_close(split.compute()[key], value, rtol=0, atol=0, equal_nan=True)


def test_global_accumulation_is_not_a_mean_of_per_image_ious() -> None:
    # Image 1: class 0 perfect on 1 pixel. Image 2: class 0 wrong on 3 pixels (predicted as class 1).
    preds = torch.tensor([[[0, 1, 1, 1]], [[1, 1, 1, 1]]])
    target = torch.tensor([[[0, 1, 1, 1]], [[0, 0, 0, 1]]])
    metric = SegmentationIoU(num_classes=2)
    metric.update(preds, target)
    result = metric.compute()
    # Class 0: I=1, P=1, L=4 -> U=4. Class 1: I=4, P=7, L=4 -> U=7.
    torch.testing.assert_close(result["IoU"], torch.tensor([1 / 4, 4 / 7], dtype=torch.float64))
    assert float(result["mIoU"]) == pytest.approx((1 / 4 + 4 / 7) / 2)
    assert float(result["aAcc"]) == pytest.approx(5 / 8)
    torch.testing.assert_close(result["Acc"], torch.tensor([1 / 4, 1.0], dtype=torch.float64))
    assert float(result["mAcc"]) == pytest.approx(5 / 8)


def test_hand_computed_with_ignore_and_absent_classes() -> None:
    # K=4. Class 3 never appears; class 2 only predicted; 255 pixels are dropped with their predictions.
    preds = torch.tensor([[[0, 0, 1, 2], [1, 1, 3, 0]]])
    target = torch.tensor([[[0, 1, 1, 0], [1, 1, 255, 255]]])
    metric = SegmentationIoU(num_classes=4, ignore_index=255)
    metric.update(preds, target)
    result = metric.compute()
    # Valid pixels: (p,t) = (0,0) (0,1) (1,1) (2,0) (1,1) (1,1).
    # Class 0: I=1, P=2, L=2 -> U=3. Class 1: I=3, P=3, L=4 -> U=4. Class 2: I=0, U=1. Class 3: U=0 -> NaN.
    expected_iou = torch.tensor([1 / 3, 3 / 4, 0.0, float("nan")], dtype=torch.float64)
    torch.testing.assert_close(result["IoU"], expected_iou, equal_nan=True)
    assert float(result["mIoU"]) == pytest.approx((1 / 3 + 3 / 4 + 0.0) / 3)
    assert float(result["aAcc"]) == pytest.approx(4 / 6)
    expected_acc = torch.tensor([1 / 2, 3 / 4, float("nan"), float("nan")], dtype=torch.float64)
    torch.testing.assert_close(result["Acc"], expected_acc, equal_nan=True)


def test_confusion_matrix_counts_pairs_exactly() -> None:
    preds = torch.tensor([[0, 1, 2, 2, 1]])
    target = torch.tensor([[0, 2, 2, 255, 7]])
    metric = SegmentationIoU(num_classes=3)
    metric.update(preds, target)
    expected = torch.zeros(3, 3, dtype=torch.long)
    expected[0, 0] = 1
    expected[2, 1] = 1
    expected[2, 2] = 1
    assert metric.confmat.dtype == torch.int64
    assert torch.equal(metric.confmat, expected)


def test_score_preds_are_argmaxed() -> None:
    torch.manual_seed(0)
    scores = torch.randn(2, 5, 6, 7)
    target = torch.randint(0, 5, (2, 6, 7))
    from_scores = SegmentationIoU(num_classes=5)
    from_scores.update(scores, target)
    from_ids = SegmentationIoU(num_classes=5)
    from_ids.update(scores.argmax(1), target)
    assert torch.equal(from_scores.confmat, from_ids.confmat)
    assert from_ids.confmat.sum() == 2 * 6 * 7


def test_reset_clears_state() -> None:
    metric = SegmentationIoU(num_classes=3)
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    metric.reset()
    metric.update(torch.tensor([[2, 2]]), torch.tensor([[2, 2]]))
    result = metric.compute()
    assert float(result["mIoU"]) == 1.0
    assert torch.isnan(result["IoU"][:2]).all()


def test_shape_mismatch_names_both_shapes() -> None:
    metric = SegmentationIoU(num_classes=3)
    with pytest.raises(ValueError, match=r"\(2, 4, 5\).*\(2, 4, 6\)"):
        metric.update(torch.zeros(2, 4, 5, dtype=torch.long), torch.zeros(2, 4, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 5\).*\(2, 4, 5\).*\(2, 3, 4, 5\)"):
        metric.update(torch.zeros(2, 4, 4, 5), torch.zeros(2, 4, 5, dtype=torch.long))


def test_invalid_preds_are_rejected() -> None:
    metric = SegmentationIoU(num_classes=3)
    with pytest.raises(ValueError, match="integer class ids"):
        metric.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[0, 3\]"):
        metric.update(torch.tensor([[0, 3]]), torch.tensor([[0, 1]]))


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_num_classes_validation(bad) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationIoU(num_classes=bad)
