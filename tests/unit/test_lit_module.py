"""ISNetModule: optimiser, per-step poly LR, logged keys, evaluation at the original label size, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from isnet.accel import optimize_for_inference
from isnet.data import SyntheticDataModule, seg_collate
from isnet.lit import ISNetModule, steps_per_epoch

TINY = {"backbone": "resnet18d", "pretrained": False, "feats_channels": 32, "transform_channels": 16}
NUM_CLASSES = 4


def make_module(**kwargs) -> ISNetModule:
    kwargs.setdefault("num_classes", NUM_CLASSES)
    return ISNetModule(model_config=dict(TINY), **kwargs)


def quiet_trainer(**kwargs) -> pl.Trainer:
    kwargs.setdefault("max_epochs", 1)
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)  # fmt: skip


def confmat_numpy(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    valid = (target != 255) & (target >= 0) & (target < k)
    return np.bincount(target[valid] * k + pred[valid], minlength=k * k).reshape(k, k)


def test_hparams_hold_the_full_recipe() -> None:
    module = make_module(lr=0.004, min_lr=1e-4, class_names=["a", "b", "c", "d"], flip_pairs=[(1, 2)])
    hp = module.hparams
    assert hp.model_config == {**TINY, "num_classes": NUM_CLASSES}
    assert hp.inference == {"mode": "whole", "scales": [1.0], "flip": False, "crop_size": None, "stride": None,
                            "use_probs": False, "window_batch": 1}  # fmt: skip
    assert hp.flip_pairs == [[1, 2]] and hp.class_names == ["a", "b", "c", "d"]
    assert module.model.num_classes == NUM_CLASSES
    assert "val_miou_best.max_value" in module.state_dict()  # the best mIoU survives a resume


def test_sgd_single_group_weight_decay_everywhere() -> None:
    module = make_module(lr=0.01, weight_decay=5e-4, momentum=0.9)
    module._trainer = SimpleNamespace(estimated_stepping_batches=123)
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    params = list(module.model.parameters())
    assert len(group["params"]) == len(params) and all(
        a is b for a, b in zip(group["params"], params, strict=True)
    )
    bn_weights = [m.weight for m in module.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn_weights and all(any(w is p for p in group["params"]) for w in bn_weights)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)
    assert group["nesterov"] is False and group["dampening"] == 0
    assert config["lr_scheduler"]["interval"] == "step" and config["lr_scheduler"]["frequency"] == 1
    assert config["lr_scheduler"]["scheduler"].total_steps == 123 == module.total_steps


class RecordLR(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.logged: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.logged.append({k: float(v) for k, v in trainer.logged_metrics.items()})


def test_training_uses_poly_lr_per_step_and_logs_losses() -> None:
    datamodule = SyntheticDataModule(
        num_classes=NUM_CLASSES, image_size=32, num_train=9, num_val=2, batch_size=4
    )
    module = make_module(lr=0.02, min_lr=1e-3)
    recorder = RecordLR()
    trainer = quiet_trainer(max_epochs=3, callbacks=[recorder], limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(module, datamodule=datamodule)
    total = 3 * steps_per_epoch(9, 4)  # drop_last: 2 steps per epoch
    assert module.total_steps == total == trainer.global_step == 6
    expected = [(1 - t / total) ** 0.9 * (0.02 - 1e-3) + 1e-3 for t in range(total)]
    assert recorder.lrs == expected
    for step, logged in enumerate(recorder.logged):
        assert logged["train/lr"] == pytest.approx(expected[step], rel=1e-6)
        parts = logged["train/loss_stage2"] + logged["train/loss_stage1"] + logged["train/loss_aux"]
        assert logged["train/loss"] == pytest.approx(parts, rel=1e-5)
        assert all(np.isfinite(v) for v in logged.values())


def test_validation_scores_at_original_label_size() -> None:
    torch.manual_seed(0)
    module = make_module().eval()
    image = torch.randn(1, 3, 40, 56)
    mask = torch.randint(0, NUM_CLASSES, (1, 75, 101))
    mask[:, :5] = 255
    with torch.inference_mode():
        module.validation_step({"image": image, "mask": mask, "name": ["x"]}, 0)
        logits = F.interpolate(optimize_for_inference(module.model).predict_logits(image), size=(75, 101), mode="bilinear",
                               align_corners=False)  # fmt: skip
    expected = confmat_numpy(logits.argmax(1).numpy(), mask.numpy(), NUM_CLASSES)
    np.testing.assert_array_equal(module.val_iou.confmat.numpy(), expected)
    assert module.val_iou.confmat.sum() == 70 * 101


def test_validation_handles_unstackable_batches() -> None:
    """Lists of differently sized images give the same counts as one image at a time."""
    module = make_module().eval()
    images = [torch.randn(3, 33, 41), torch.randn(3, 24, 24)]
    masks = [torch.randint(0, NUM_CLASSES, (50, 61)), torch.randint(0, NUM_CLASSES, (24, 30))]
    with torch.inference_mode():
        module.validation_step({"image": images, "mask": masks, "name": ["a", "b"]}, 0)
        together = module.val_iou.confmat.clone()
        module.val_iou.reset()
        for img, msk in zip(images, masks, strict=True):
            module.validation_step({"image": img[None], "mask": msk[None], "name": ["x"]}, 0)
    np.testing.assert_array_equal(together.numpy(), module.val_iou.confmat.numpy())
    assert int(together.sum()) == 50 * 61 + 24 * 30


def test_batch_without_labels_is_refused() -> None:
    module = make_module().eval()
    with pytest.raises(ValueError, match="this split has no labels and cannot be evaluated"):
        module.test_step({"image": torch.randn(1, 3, 32, 32), "name": ["x"]}, 0)


class FixedDataset(Dataset):
    def __init__(self, masks: list[torch.Tensor]) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        return {
            "image": torch.randn(3, 32, 32, generator=generator),
            "mask": self.masks[index],
            "name": f"s{index}",
        }


def test_test_results_per_class_and_unlabelled_split() -> None:
    masks = [
        torch.randint(0, NUM_CLASSES, (45, 45), generator=torch.Generator().manual_seed(i)) for i in range(3)
    ]
    module = make_module(class_names=["bg", "a", "b", "c"])
    loader = DataLoader(FixedDataset(masks), batch_size=1, collate_fn=seg_collate)
    trainer = quiet_trainer()
    trainer.test(module, dataloaders=loader, verbose=False)
    # independent computation over the same three images
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    module.eval()
    with torch.inference_mode():
        for sample in FixedDataset(masks):
            logits = F.interpolate(optimize_for_inference(module.model).predict_logits(sample["image"][None]), size=(45, 45),
                                   mode="bilinear", align_corners=False)  # fmt: skip
            total += confmat_numpy(logits.argmax(1)[0].numpy(), sample["mask"].numpy(), NUM_CLASSES)
    inter = np.diag(total)
    union = total.sum(0) + total.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    assert module.test_results["mIoU"] == pytest.approx(np.nanmean(iou), rel=1e-12)
    assert list(module.test_results["IoU"]) == ["bg", "a", "b", "c"]
    for name, value in zip(["bg", "a", "b", "c"], iou, strict=True):
        assert module.test_results["IoU"][name] == pytest.approx(value, rel=1e-12, nan_ok=True)
        assert float(trainer.callback_metrics[f"test/IoU/{name}"]) == pytest.approx(
            value, rel=1e-6, nan_ok=True
        )
    assert float(trainer.callback_metrics["test/mIoU"]) == pytest.approx(np.nanmean(iou), rel=1e-6)

    unlabelled = DataLoader(
        FixedDataset([torch.full((45, 45), 255)] * 2), batch_size=1, collate_fn=seg_collate
    )
    with pytest.raises(ValueError, match="the test split has no labelled pixel"):
        quiet_trainer().test(make_module(), dataloaders=unlabelled, verbose=False)


def test_ms_flip_test_settings_change_the_keys() -> None:
    module = make_module(test_inference={"scales": [0.5, 1.0], "flip": True})
    assert module.test_suffix == "_ms_flip"
    assert module.inference_config.scales == (1.0,) and module.test_inference_config.flip is True
    assert make_module().test_suffix == ""


def test_nonfinite_loss_names_the_step() -> None:
    module = make_module()
    module.criterion.forward = lambda outputs, target: {"loss": torch.tensor(float("nan")),
                                                        "loss_stage2": torch.tensor(float("nan"))}  # fmt: skip
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": torch.zeros(2, 32, 32, dtype=torch.long)}
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss at global step 0 \(epoch 0, batch 3\)"
    ):
        module.training_step(batch, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": 0.01, "min_lr": 0.1}, "min_lr must be <= lr"),
        ({"momentum": 1.0}, "momentum must be in"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
        ({"loss_weights": {"stage3": 1.0}}, r"loss_weights has unknown terms \['stage3'\]"),
        ({"class_names": ["a"]}, "class_names has 1 names but num_classes is 4"),
        ({"num_classes": 1}, "num_classes must be an int >= 2"),
        ({"inference": {"mode": "tiles"}}, "InferenceConfig.mode must be one of"),
        ({"inference": {"scale": [1.0]}}, r"inference has unknown keys \['scale'\]"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_module(**kwargs)


def test_num_classes_must_agree_with_model_config() -> None:
    with pytest.raises(ValueError, match="model_config.num_classes=150 disagrees with num_classes=4"):
        ISNetModule(model_config={**TINY, "num_classes": 150}, num_classes=4)


def test_compile_setting_reaches_the_network_but_not_its_checkpoint_config() -> None:
    from hydra import compose, initialize_config_dir

    from isnet.cli import CONFIG_DIR

    module = make_module(num_classes=4, compile={"dynamic": False})
    assert module.compile_options == {"dynamic": False}
    assert "compile" not in module.model.config  # a checkpoint rebuilds an eager network
    assert make_module(num_classes=4).compile_options is None
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo", "model.compile=true"])
    assert cfg.model.compile is True


def test_bf16_mixed_precision_trains_close_to_fp32() -> None:
    """Lightning's ``bf16-mixed`` (CPU autocast): same first-step losses as fp32 within bf16 rounding, fp32
    weights and logits out of the classifiers, and a validation mIoU from the same code path."""
    losses, modules = {}, {}
    for precision in ("32-true", "bf16-mixed"):
        torch.manual_seed(0)
        datamodule = SyntheticDataModule(
            num_classes=NUM_CLASSES, image_size=32, num_train=8, num_val=2, batch_size=4
        )
        module = make_module()
        recorder = RecordLR()
        trainer = quiet_trainer(max_epochs=1, callbacks=[recorder], log_every_n_steps=1, precision=precision,
                                num_sanity_val_steps=0)  # fmt: skip
        trainer.fit(module, datamodule=datamodule)
        losses[precision] = recorder.logged[0]
        modules[precision] = module
        assert 0.0 <= trainer.callback_metrics["val/mIoU"].item() <= 1.0
    for term in ("train/loss", "train/loss_stage2", "train/loss_stage1", "train/loss_aux"):
        assert losses["bf16-mixed"][term] == pytest.approx(losses["32-true"][term], rel=0.02), term
    module = modules["bf16-mixed"]
    assert all(p.dtype == torch.float32 for p in module.parameters())  # mixed: the weights stay fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = module.model.train()(torch.randn(2, 3, 32, 32))
    assert {k: v.dtype for k, v in outputs.items()} == dict.fromkeys(outputs, torch.float32)


def test_backbone_imagenet_weights_load_when_a_fit_starts_and_only_then(tmp_path) -> None:
    # model_config.pretrained (the recipes' `openmmlab`) is read by setup("fit"), not by __init__: a new run starts
    # from the file; a module loaded from a checkpoint, or fitted a second time, keeps its own weights
    import timm

    torch.manual_seed(123)
    imagenet = timm.create_model("resnet18d").state_dict()  # stands in for an ImageNet file
    weights = tmp_path / "resnet18d_imagenet.pth"
    torch.save(imagenet, weights)
    module = ISNetModule(model_config={**TINY, "pretrained": str(weights)}, num_classes=NUM_CLASSES)
    stem = module.model.backbone.conv1[0].weight
    assert not torch.equal(stem, imagenet["conv1.0.weight"])  # __init__ reads nothing
    datamodule = SyntheticDataModule(num_classes=NUM_CLASSES, image_size=32, num_train=4, num_val=2, batch_size=4)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path)
    module.hparams.optimizer["lr"] = 1e-9  # the one step leaves the loaded weights (almost) as they are
    trainer.fit(module, datamodule=datamodule)
    torch.testing.assert_close(stem.detach(), imagenet["conv1.0.weight"], rtol=0, atol=1e-6)
    with torch.no_grad():
        stem.add_(1.0)  # "trained" weights: a second fit must not reset them
    module.setup("fit")
    assert not torch.allclose(stem.detach(), imagenet["conv1.0.weight"])
    ckpt = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(ckpt)
    weights.unlink()  # load_from_checkpoint and a fit of the loaded module never read the ImageNet file
    loaded = ISNetModule.load_from_checkpoint(ckpt, weights_only=True)
    loaded.setup("fit")
    assert torch.equal(loaded.model.backbone.conv1[0].weight, stem.detach())
