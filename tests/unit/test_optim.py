"""Optimiser config of ISNetModule: the default is the reference's SGD and poly schedule exactly; AdamW and
parameter rules (lr/wd multipliers) compose, train and survive a checkpoint."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from isnet.cli import compose
from isnet.cli.utils import build_module
from isnet.errors import ConfigError
from isnet.lit import ISNetModule, PolyLR
from isnet.lit.optim import param_groups
from isnet.models import ISNet
from isnet.models.losses import OHEMCrossEntropyLoss

TINY_NET = [
    "model/backbone=resnet18d",
    "model.model_config.feats_channels=32",
    "model.model_config.transform_channels=16",
]
TINY_DATA = ["data=synthetic", "data.num_classes=4", "data.image_size=[32,32]", "data.num_train=4", "data.num_val=2",
             "data.batch_size=2", "data.num_workers=0"]  # fmt: skip
ARCH = {"backbone": "resnet18d", "pretrained": False, "feats_channels": 32, "transform_channels": 16}
RULES = {
    "modules": {"backbone": {"lr_multiplier": 0.1}, "head": {"lr_multiplier": 10.0},
                "head.decoder_stage2": {"lr_multiplier": 5.0, "wd_multiplier": 2.0}},
    "norm_wd_multiplier": 0.0,
    "bias_wd_multiplier": 0.0,
}  # fmt: skip


def reference_poly(t: int, total: int, lr0: float, min_lr: float, power: float = 0.9) -> float:
    """sssegmentation PolyScheduler.updatelr."""
    return (1 - t / total) ** power * (lr0 - min_lr) + min_lr


def lrs_over(optimizer: torch.optim.Optimizer, scheduler: PolyLR, steps: int) -> list[list[float]]:
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in optimizer.param_groups])  # the lr the coming step uses
        optimizer.step()
        scheduler.step()
    return seen


def composed_module(overrides: list[str], tmp_path: Path, num_classes: int = 150) -> ISNetModule:
    cfg = compose("train", [*overrides, *TINY_NET], output_dir=str(tmp_path))
    datamodule = SimpleNamespace(num_classes=num_classes, class_names=[str(i) for i in range(num_classes)],
                                 flip_pairs=[])  # fmt: skip
    return build_module(cfg.model, datamodule)


@pytest.mark.parametrize("experiment", ["isnet_r50_d8_ade20k", "isnet_s101_d8_cocostuff10k"])
def test_default_config_is_the_hand_built_reference_sgd_and_poly(experiment: str, tmp_path: Path) -> None:
    cfg = compose("train", [f"experiment={experiment}"], output_dir=str(tmp_path))
    module = composed_module([f"experiment={experiment}"], tmp_path, num_classes=cfg.model.num_classes)
    lr, momentum, wd, min_lr = (cfg.schedule[k] for k in ("lr", "momentum", "weight_decay", "min_lr"))
    total = 17
    module._trainer = SimpleNamespace(estimated_stepping_batches=total)
    config = module.configure_optimizers()
    ours, ours_sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    # what the module did before the optimizer group existed, built by hand on an identical network
    twin = ISNet.from_config(module.hparams.model_config)
    twin.load_state_dict(module.model.state_dict())
    hand = torch.optim.SGD(twin.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    hand_sched = PolyLR(hand, total_steps=total, power=0.9, min_lr=min_lr)
    assert type(ours) is torch.optim.SGD and len(ours.param_groups) == 1
    assert ours.state_dict()["param_groups"] == hand.state_dict()["param_groups"]
    assert all(a is b for a, b in zip(ours.param_groups[0]["params"], module.model.parameters(), strict=True))
    seen = lrs_over(ours, ours_sched, total)
    assert seen == lrs_over(hand, hand_sched, total)
    assert [g[0] for g in seen] == [reference_poly(t, total, lr, min_lr) for t in range(total)]


def test_hydra_partial_is_recorded_as_a_plain_dict(tmp_path: Path) -> None:
    cfg = compose("train", ["experiment=demo", "optimizer=adamw", *TINY_NET], output_dir=str(tmp_path))
    built = instantiate(cfg.model.optimizer, _convert_="all")
    assert isinstance(built, functools.partial) and built.func is torch.optim.AdamW
    module = composed_module(["experiment=demo", "optimizer=adamw"], tmp_path, num_classes=5)
    expected = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.05, "weight_decay": 1e-4,
                "betas": [0.9, 0.999], "eps": 1e-8}  # fmt: skip
    assert module.hparams.optimizer == expected
    assert module.hparams.lr is None and module.hparams.momentum is None  # recorded once, in `optimizer`
    again = ISNetModule(**module.hparams)  # a dict given back builds the same
    assert again.hparams.optimizer == expected


def expected_multipliers(name: str, module: torch.nn.Module, is_bias: bool) -> tuple[float, float]:
    """RULES applied by hand: the longest prefix, then norm / bias multipliers on top."""
    lr_mult, wd_mult = 1.0, 1.0
    if name.startswith("backbone."):
        lr_mult = 0.1
    if name.startswith("head."):
        lr_mult = 10.0
    if name.startswith("head.decoder_stage2."):
        lr_mult, wd_mult = 5.0, 2.0
    if isinstance(module, torch.nn.BatchNorm2d):
        wd_mult = 0.0
    elif is_bias:
        wd_mult = 0.0
    return lr_mult, wd_mult


def test_param_rules_give_the_expected_groups() -> None:
    model = ISNet(**ARCH, num_classes=4)
    model.backbone.conv1[0].weight.requires_grad_(False)  # frozen parameters stay out of the optimiser
    groups = param_groups(model, {"lr": 0.01, "weight_decay": 5e-4}, RULES)
    group_of = {id(p): g for g in groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert (
        sum(len(g["params"]) for g in groups)
        == len(trainable)
        == len(group_of)
        == len(list(model.parameters())) - 1
    )
    checked = 0
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                assert id(param) not in group_of
                continue
            lr_mult, wd_mult = expected_multipliers(
                f"{module_name}.{param_name}", module, param_name == "bias"
            )
            group = group_of[id(param)]
            assert (group["lr"], group["weight_decay"], group["lr_multiplier"]) == (
                lr_mult * 0.01,
                wd_mult * 5e-4,
                lr_mult,
            ), f"{module_name}.{param_name}"
            checked += 1
    assert checked == len(trainable)
    seen = {(g["lr_multiplier"], g["weight_decay"]) for g in groups}
    assert seen == {
        (0.1, 5e-4),
        (0.1, 0.0),
        (10.0, 5e-4),
        (10.0, 0.0),
        (5.0, 1e-3),
        (5.0, 0.0),
        (1.0, 5e-4),
        (1.0, 0.0),
    }


def test_neutral_rules_are_the_single_reference_group() -> None:
    model = ISNet(**ARCH, num_classes=4)
    neutral = {"modules": {"backbone": {"lr_multiplier": 1.0}}, "norm_wd_multiplier": 1.0}
    groups = param_groups(model, {"lr": 0.01, "weight_decay": 5e-4}, neutral)
    assert groups == [{"params": list(model.parameters())}]


def test_poly_schedule_scales_every_group_by_its_multiplier() -> None:
    module = ISNetModule(model_config=dict(ARCH), num_classes=4, lr=0.02, min_lr=1e-3, param_rules=RULES)
    total = 9
    module._trainer = SimpleNamespace(estimated_stepping_batches=total)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    multipliers = [g["lr_multiplier"] for g in optimizer.param_groups]
    assert sorted(set(multipliers)) == [0.1, 1.0, 5.0, 10.0]
    seen = lrs_over(optimizer, scheduler, total)
    for t, lrs in enumerate(seen):  # the reference: param_group["lr"] = lr_multiplier * target_lr
        assert lrs == [m * reference_poly(t, total, 0.02, 1e-3) for m in multipliers]
    assert [g["lr"] for g in optimizer.param_groups] == [m * 1e-3 for m in multipliers]  # t = T: m * min_lr


def test_composed_adamw_ohem_rules_train_and_load_from_checkpoint(tmp_path: Path) -> None:
    rules = "{modules: {backbone: {lr_multiplier: 0.1}}, norm_wd_multiplier: 0.0, bias_wd_multiplier: 0.0}"
    overrides = ["experiment=demo", "optimizer=adamw", "loss=ohem", "model.loss.min_kept_per_image=50",
                 f"model.param_rules={rules}", "schedule.lr=1e-3", "schedule.min_lr=0", *TINY_DATA]  # fmt: skip
    cfg = compose("train", [*overrides, *TINY_NET], output_dir=str(tmp_path))
    datamodule = instantiate(cfg.data)
    module = build_module(cfg.model, datamodule)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=1, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is torch.optim.AdamW and tuple(optimizer.param_groups[0]["betas"]) == (0.9, 0.999)
    assert sorted({g["lr_multiplier"] for g in optimizer.param_groups}) == [0.1, 1.0]
    assert isinstance(module.criterion.pixel_loss, OHEMCrossEntropyLoss)
    assert module.criterion.pixel_loss.min_kept_per_image == 50
    changed = [
        k
        for k, v in module.model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("head.") for k in changed)

    path = tmp_path / "step.ckpt"
    trainer.save_checkpoint(path)
    loaded = ISNetModule.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams.optimizer == module.hparams.optimizer
    assert loaded.hparams.optimizer["_target_"] == "torch.optim.AdamW"
    assert (
        loaded.hparams.loss == module.hparams.loss
        and loaded.hparams.param_rules == module.hparams.param_rules
    )
    assert type(loaded.criterion.pixel_loss) is OHEMCrossEntropyLoss
    for key, value in module.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    loaded._trainer = SimpleNamespace(estimated_stepping_batches=5)
    rebuilt = loaded.configure_optimizers()["optimizer"]
    assert [(g["lr"], g["weight_decay"]) for g in rebuilt.param_groups] == [
        (g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"optimizer": {"_target_": "os.system", "lr": 0.1}},
            r"optimizer._target_='os.system' is not one of \[",
        ),
        (
            {"optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.1, "momentum": 0.9}},
            r"optimizer.momentum is not an argument of torch.optim.AdamW",
        ),
        ({"optimizer": {"_target_": "torch.optim.AdamW"}}, "optimizer.lr is required"),
        (
            {"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}, "lr": 0.1},
            r"\['lr'\] configure the default SGD",
        ),
        (
            {"optimizer": {"_target_": "torch.optim.SGD", "_partial_": False, "lr": 0.1}},
            "needs _partial_: true",
        ),
        (
            {"param_rules": {"modules": {"encoder": {"lr_multiplier": 0.1}}}},
            r"param_rules.modules.encoder matches no parameter; top-level modules: \['auxiliary_decoder', 'backbone'",
        ),
        ({"param_rules": {"norm_decay": 0.0}}, r"param_rules has unknown keys \['norm_decay'\]"),
        ({"param_rules": {"modules": {"head": {"lr": 0.1}}}}, "param_rules.modules.head must set only"),
    ],  # fmt: skip
)
def test_bad_optimizer_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ISNetModule(model_config=dict(ARCH), num_classes=4, **kwargs)
