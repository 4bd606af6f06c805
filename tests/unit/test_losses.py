"""Pixel losses of isnet.models.losses: each against an independent loop computation and, with
$ISNET_REFERENCE_SRC, against sssegmentation's own sampler and losses on the same tensors."""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from isnet.cli import compose
from isnet.cli.utils import build_module
from isnet.errors import ConfigError
from isnet.models import ISNetLoss
from isnet.models.losses import CrossEntropyLoss, DiceLoss, LovaszSoftmaxLoss, OHEMCrossEntropyLoss

K = 4


def sample(
    seed: int = 0, n: int = 2, h: int = 5, w: int = 6, scale: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and labels with a few ignored pixels and class 3 absent from image 1."""
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, K, h, w, generator=gen)
    target = torch.randint(0, K - 1, (n, h, w), generator=gen)
    target[0, 0, :3] = 3
    target[0, 1, :2] = 255
    return logits, target


def pixels(logits: torch.Tensor, target: torch.Tensor) -> list[tuple[list[float], int]]:
    """(class probabilities in float64, label) of every labelled pixel, image by image, row by row."""
    probs = torch.softmax(logits.double(), dim=1)
    n, _, h, w = logits.shape
    return [
        ([float(probs[b, c, y, x]) for c in range(K)], int(target[b, y, x]))
        for b in range(n)
        for y in range(h)
        for x in range(w)
        if int(target[b, y, x]) != 255
    ]


def loop_ce(points: list[tuple[list[float], int]], class_weight: list[float] | None = None) -> float:
    weights = [1.0 if class_weight is None else class_weight[t] for _, t in points]
    return sum(-wt * math.log(p[t]) for (p, t), wt in zip(points, weights, strict=True)) / sum(weights)


def test_class_weight_equals_weighted_cross_entropy() -> None:
    logits, target = sample()
    weight = [0.5, 2.0, 1.0, 3.0]
    loss = CrossEntropyLoss(class_weight=weight)(logits, target)
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weight), ignore_index=255)
    assert torch.equal(loss, expected)
    assert loss.item() == pytest.approx(loop_ce(pixels(logits, target), weight), rel=1e-5)
    assert not torch.allclose(loss, CrossEntropyLoss()(logits, target))  # the weights change the value


def test_module_passes_class_weight_to_every_term() -> None:
    logits, target = sample()
    outputs = {"stage2": logits, "stage1": logits.flip(1), "aux": 0.5 * logits}
    weight = [0.5, 2.0, 1.0, 3.0]
    module = _module(loss={"_target_": "isnet.models.losses.CrossEntropyLoss", "class_weight": weight})
    losses = module.criterion(outputs, target)
    for name, factor in (("stage2", 1.0), ("stage1", 0.4), ("aux", 0.4)):
        expected = F.cross_entropy(outputs[name], target, weight=torch.tensor(weight), ignore_index=255)
        assert losses[f"loss_{name}"].item() == pytest.approx(factor * expected.item(), rel=1e-6)
    assert not [k for k in module.state_dict() if k.startswith("criterion.")]  # the weights live in hparams
    with pytest.raises(ConfigError, match="class_weight must be a list of num_classes=4 numbers"):
        _module(loss={"_target_": "isnet.models.losses.CrossEntropyLoss", "class_weight": [1.0, 2.0]})


def _module(**kwargs):
    from isnet.lit import ISNetModule

    arch = {"backbone": "resnet18d", "pretrained": False, "feats_channels": 32, "transform_channels": 16}
    return ISNetModule(model_config=arch, num_classes=K, **kwargs)


def loop_ohem(
    logits: torch.Tensor, target: torch.Tensor, thresh: float, min_kept: int, class_weight=None
) -> float:
    """OHEM by hand: keep labelled pixels whose true-class probability is below max(thresh, sorted[min(n, P-1)])."""
    points = pixels(logits, target)
    ordered = sorted(p[t] for p, t in points)
    threshold = max(ordered[min(min_kept * logits.shape[0], len(ordered) - 1)], thresh)
    return loop_ce([(p, t) for p, t in points if p[t] < threshold], class_weight)


@pytest.mark.parametrize(
    ("thresh", "min_kept", "class_weight"),
    [(0.7, 2, None), (0.05, 20, None), (0.3, 2, [0.5, 2.0, 1.0, 3.0]), (1.0, 2, None)],
    ids=["thresh-decides", "min-kept-decides", "class-weight", "all-kept"],
)
def test_ohem_equals_a_loop_computation(thresh: float, min_kept: int, class_weight) -> None:
    logits, target = sample(seed=1)
    logits.requires_grad_(True)
    loss_fn = OHEMCrossEntropyLoss(thresh=thresh, min_kept_per_image=min_kept, class_weight=class_weight)
    loss = loss_fn(logits, target)
    assert loss.item() == pytest.approx(
        loop_ohem(logits.detach(), target, thresh, min_kept, class_weight), rel=1e-5
    )
    keep = loss_fn.select(logits, target)
    loss.backward()
    assert torch.all(logits.grad.abs().sum(1)[~keep] == 0) and torch.all(logits.grad.abs().sum(1)[keep] > 0)
    assert 0 < int(keep.sum()) <= int((target != 255).sum())
    if thresh == 1.0:  # every labelled pixel is hard: plain cross-entropy
        assert loss.item() == pytest.approx(
            F.cross_entropy(logits, target, ignore_index=255).item(), rel=1e-6
        )


def test_ohem_keeps_at_least_min_kept_pixels() -> None:
    logits, target = sample(seed=2, scale=8.0)  # confident logits: few pixels are below any threshold
    keep = OHEMCrossEntropyLoss(thresh=1e-6, min_kept_per_image=6).select(logits, target)
    assert int(keep.sum()) == 12  # min_kept * N lowest probabilities, no ties


def lovasz_class(errors: list[float], fg: list[int]) -> float:
    """Lovász extension of the Jaccard loss, straight from its definition: sort errors descending, J_i = Jaccard
    loss when the first i pixels are wrong, loss = sum_i e_i (J_i - J_{i-1})."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    gts, total, previous = sum(fg), 0.0, 0.0
    for i in range(1, len(order) + 1):
        wrong = order[:i]
        inter = gts - sum(fg[j] for j in wrong)
        union = gts + sum(1 - fg[j] for j in wrong)
        jac = 1.0 - inter / union
        total += errors[order[i - 1]] * (jac - previous)
        previous = jac
    return total


def loop_lovasz(logits, target, classes="present", per_image=False, class_weight=None) -> float:
    if per_image:
        parts = [
            loop_lovasz(logits[i : i + 1], target[i : i + 1], classes, False, class_weight)
            for i in range(len(logits))
        ]
        return sum(parts) / len(parts)
    points = pixels(logits, target)
    losses, weights = [], []
    for c in range(K):
        fg = [int(t == c) for _, t in points]
        if classes == "present" and not any(fg):
            continue
        losses.append(lovasz_class([abs(f - p[c]) for f, (p, _) in zip(fg, points, strict=True)], fg))
        weights.append(1.0 if class_weight is None else class_weight[c])
    return sum(lo * wt for lo, wt in zip(losses, weights, strict=True)) / sum(weights)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"classes": "all"}, {"per_image": True}, {"class_weight": [0.5, 2.0, 1.0, 3.0]}],
    ids=["present", "all", "per-image", "class-weight"],
)
def test_lovasz_softmax_equals_a_loop_computation(kwargs: dict) -> None:
    logits, target = sample(seed=3)
    loss = LovaszSoftmaxLoss(**kwargs)(logits, target)
    assert loss.item() == pytest.approx(loop_lovasz(logits, target, **kwargs), rel=1e-5)


def loop_dice(logits, target, use_sigmoid=True, naive_dice=False, eps=1e-3) -> float:
    """Per image: one Dice coefficient over all classes and labelled pixels; mean of 1 - d over images."""
    scores = torch.sigmoid(logits.double()) if use_sigmoid else torch.softmax(logits.double(), dim=1)
    n, _, h, w = logits.shape
    total = 0.0
    for b in range(n):
        xy = xx = yy = x1 = y1 = 0.0
        for y in range(h):
            for x in range(w):
                t = int(target[b, y, x])
                if t == 255:
                    continue
                for c in range(K):
                    s, one = float(scores[b, c, y, x]), float(t == c)
                    xy, xx, yy, x1, y1 = xy + s * one, xx + s * s, yy + one, x1 + s, y1 + one
        d = (2 * xy + eps) / (x1 + y1 + eps) if naive_dice else 2 * xy / (xx + eps + yy + eps)
        total += 1 - d
    return total / n


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"use_sigmoid": False}, {"naive_dice": True, "eps": 1.0}],
    ids=["sigmoid", "softmax", "naive"],
)
def test_dice_equals_a_loop_computation(kwargs: dict) -> None:
    logits, target = sample(seed=4)
    loss = DiceLoss(**kwargs)(logits, target)
    assert loss.item() == pytest.approx(loop_dice(logits, target, **kwargs), rel=1e-5)


@pytest.mark.parametrize("name", ["cross_entropy", "ohem", "lovasz", "dice"])
def test_loss_group_builds_the_pixel_loss(name: str, tmp_path: Path) -> None:
    cfg = compose(
        "train", ["experiment=demo", f"loss={name}", "data.num_classes=4"], output_dir=str(tmp_path)
    )
    datamodule = types.SimpleNamespace(num_classes=K, class_names=list("abcd"), flip_pairs=[])
    module = build_module(cfg.model, datamodule, model_config={"backbone": "resnet18d", "feats_channels": 32,
                                                              "transform_channels": 16})  # fmt: skip
    expected = {"cross_entropy": CrossEntropyLoss, "ohem": OHEMCrossEntropyLoss, "lovasz": LovaszSoftmaxLoss,
                "dice": DiceLoss}[name]  # fmt: skip
    assert type(module.criterion.pixel_loss) is expected and module.criterion.pixel_loss.ignore_index == 255
    assert module.hparams.loss["_target_"] == f"isnet.models.losses.{expected.__name__}"
    logits, target = sample(seed=5)
    assert module.criterion({"stage2": logits}, target)["loss"] == module.criterion.pixel_loss(logits, target)


def test_bad_loss_settings_are_named() -> None:
    with pytest.raises(ConfigError, match=r"loss._target_='os.system' is not one of \[.*CrossEntropyLoss"):
        _module(loss={"_target_": "os.system"})
    with pytest.raises(ConfigError, match=r"loss.threshold is not an argument of .*OHEMCrossEntropyLoss"):
        _module(loss={"_target_": "isnet.models.losses.OHEMCrossEntropyLoss", "threshold": 0.7})
    with pytest.raises(ConfigError, match=r"thresh must be a probability in \(0, 1\]"):
        _module(loss={"_target_": "isnet.models.losses.OHEMCrossEntropyLoss", "thresh": 7})
    with pytest.raises(ValueError, match="pixel_loss ignores label 0 but the loss ignores 255"):
        ISNetLoss(pixel_loss=CrossEntropyLoss(ignore_index=0))


# --- the reference's own code on the same tensors (needs only torch: loaded file by file) -------------------


def _reference_package(subdir: str) -> str:
    """Register a stub package for ``ssseg/modules/models/<subdir>`` so that its files' relative imports
    (``.base``, ``.misc``) resolve without running the package's ``__init__`` (which needs all of ssseg)."""
    root = Path(os.environ["ISNET_REFERENCE_SRC"]) / "ssseg" / "modules" / "models" / subdir
    name = f"_isnet_reference_{subdir}"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(root)]
        sys.modules[name] = package
    return name


needs_reference = pytest.mark.skipif(
    not os.environ.get("ISNET_REFERENCE_SRC"), reason="set ISNET_REFERENCE_SRC to a sssegmentation checkout"
)


@needs_reference
@pytest.mark.parametrize(
    ("thresh", "min_kept", "class_weight"),
    [(0.7, 2, None), (0.05, 20, None), (0.3, 2, [0.5, 2.0, 1.0, 3.0])],
    ids=["thresh-decides", "min-kept-decides", "class-weight"],
)
def test_ohem_equals_the_reference_sampler_and_cross_entropy(thresh, min_kept, class_weight) -> None:
    samplers = importlib.import_module(_reference_package("samplers") + ".ohempixelsampler")
    ce = importlib.import_module(_reference_package("losses") + ".crossentropyloss")
    logits, target = sample(seed=6, n=3, h=9, w=7)
    sampler = samplers.OHEMPixelSampler(thresh=thresh, min_kept_per_image=min_kept, ignore_index=255)
    points, labels = sampler.sample(logits.clone(), target.clone())
    reference = ce.CrossEntropyLoss(class_weight=class_weight, ignore_index=255)(points, labels)
    ours = OHEMCrossEntropyLoss(thresh=thresh, min_kept_per_image=min_kept, class_weight=class_weight)
    assert int(ours.select(logits, target).sum()) == len(labels)
    torch.testing.assert_close(ours(logits, target), reference, rtol=1e-6, atol=0)


@needs_reference
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"classes": "all"}, {"per_image": True}, {"class_weight": [0.5, 2.0, 1.0, 3.0]}],
    ids=["present", "all", "per-image", "class-weight"],
)
def test_lovasz_softmax_equals_the_reference(kwargs: dict) -> None:
    lovasz = importlib.import_module(_reference_package("losses") + ".lovaszloss")
    logits, target = sample(seed=7, n=3, h=9, w=7)
    reference = lovasz.LovaszLoss(use_sigmoid=False, ignore_index=255, **kwargs)(logits, target)
    torch.testing.assert_close(LovaszSoftmaxLoss(**kwargs)(logits, target), reference, rtol=1e-6, atol=0)


@needs_reference
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"use_sigmoid": False}, {"naive_dice": True, "eps": 1.0}],
    ids=["sigmoid", "softmax", "naive"],
)
def test_dice_equals_the_reference(kwargs: dict) -> None:
    dice = importlib.import_module(_reference_package("losses") + ".diceloss")
    logits, target = sample(seed=8, n=3, h=9, w=7)
    reference = dice.DiceLoss(ignore_index=255, **kwargs)(logits, target)
    torch.testing.assert_close(DiceLoss(**kwargs)(logits, target), reference, rtol=1e-6, atol=0)
