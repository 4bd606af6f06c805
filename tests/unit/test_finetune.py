"""Fine-tuning: weights of a trained ISNet into a network with another number of classes, frozen backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from isnet.cli import compose
from isnet.convert import from_sssegmentation
from isnet.errors import CheckpointError, ConfigError
from isnet.hub import create_model, from_pretrained
from isnet.lit import ISNetModule
from isnet.meta import default_palette
from isnet.models import ISNet, classifier_keys, load_transfer
from tests.helpers import reference_state_dict
from tests.unit.conftest import FileServer

TINY = {"backbone": "resnet18d", "pretrained": False, "feats_channels": 32, "transform_channels": 16}
CLASSIFIERS = [
    "head.decoder_stage1.4.weight",
    "head.decoder_stage1.4.bias",
    "head.decoder_stage2.1.weight",
    "head.decoder_stage2.1.bias",
    "auxiliary_decoder.4.weight",
    "auxiliary_decoder.4.bias",
]


def tiny(num_classes: int, seed: int, **kwargs) -> ISNet:
    torch.manual_seed(seed)
    return ISNet(num_classes=num_classes, **{**TINY, **kwargs})


def test_classifier_keys_are_the_three_classifiers() -> None:
    assert classifier_keys(tiny(4, 0)) == CLASSIFIERS
    lip = ["head.decoder_stage1.4.weight", "head.decoder_stage1.4.bias", "head.decoder_stage2.4.weight",
           "head.decoder_stage2.4.bias", "auxiliary_decoder.4.weight", "auxiliary_decoder.4.bias"]  # fmt: skip
    assert classifier_keys(tiny(4, 0, shortcut=True)) == lip
    assert classifier_keys(tiny(4, 0, aux=False)) == CLASSIFIERS[:4]


def test_other_class_count_keeps_the_classifiers_and_loads_the_rest() -> None:
    source, target = tiny(7, seed=1), tiny(3, seed=2)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_transfer(target, source.state_dict(), source="src")
    assert report.reinitialized == tuple(CLASSIFIERS)
    assert (report.source_classes, report.num_classes) == (7, 3)
    assert set(report.loaded) == set(fresh) - set(CLASSIFIERS) and len(report.loaded) == len(fresh) - 6
    state = target.state_dict()
    for key in report.loaded:
        assert torch.equal(state[key], source.state_dict()[key]), key
    for key in CLASSIFIERS:
        assert torch.equal(state[key], fresh[key]), key
    assert "re-initialised for 3 classes (the source has 7)" in str(report)
    assert report.summary()["reinitialized"] == CLASSIFIERS


def test_same_class_count_loads_everything() -> None:
    source, target = tiny(4, seed=1), tiny(4, seed=2)
    report = load_transfer(target, {f"module.{k}": v for k, v in source.state_dict().items()})
    assert report.reinitialized == () and len(report.loaded) == len(source.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update({"head.bottleneck.0.weight": s["head.bottleneck.0.weight"][:, :-1]}),
         r"shape mismatch \(1\):\n    head.bottleneck.0.weight: src \(32, 511, 3, 3\) vs model \(32, 512, 3, 3\)"),
        (lambda s: s.pop("backbone.layer1.0.bn1.running_var"), r"missing \(1\):\n    backbone.layer1.0.bn1.running_var"),
        (lambda s: s.update({"head.extra.weight": torch.zeros(1)}), r"unexpected \(1\):\n    head.extra.weight"),
        (lambda s: s.pop("auxiliary_decoder.4.bias"), r"missing \(1\):\n    auxiliary_decoder.4.bias"),
        # a classifier that differs in more than its classes is not a class-count change
        (lambda s: s.update({"head.decoder_stage2.1.weight": torch.zeros(7, 16, 1, 1)}),
         r"head.decoder_stage2.1.weight: src \(7, 16, 1, 1\) vs model \(3, 32, 1, 1\)"),
    ],
)  # fmt: skip
def test_any_other_difference_is_an_error(edit, message: str) -> None:
    state = tiny(7, seed=1).state_dict()
    edit(state)
    target = tiny(3, seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        load_transfer(target, state, source="src")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing half-loaded


def test_classifiers_disagreeing_on_the_class_count_is_an_error() -> None:
    state = tiny(7, seed=1).state_dict()
    state["auxiliary_decoder.4.weight"] = torch.zeros(5, 32, 1, 1)
    with pytest.raises(CheckpointError, match="classifiers disagree on the number of classes"):
        load_transfer(tiny(3, seed=2), state)


def serve_release(server: FileServer, monkeypatch: pytest.MonkeyPatch, state: dict) -> Path:
    path = server.root / "isnet_resnet50os8_ade20k.pth"  # type: ignore[attr-defined]
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}, "cur_epoch": 130}, path)
    monkeypatch.setenv("ISNET_ZOO_URL", server.url + "/{file}")
    return path


def test_from_pretrained_with_another_number_of_classes(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = serve_release(server, monkeypatch, reference_state_dict("resnet50_d8", seed=3))
    released = from_sssegmentation(served).state_dict()  # the file's tensors in ISNet keys

    torch.manual_seed(0)
    model = from_pretrained("isnet_r50_d8_ade20k", progress=False, num_classes=5)
    torch.manual_seed(0)
    fresh = create_model("isnet_r50_d8_ade20k", num_classes=5).state_dict()  # the same initialisation

    assert not model.training and model.num_classes == 5 and model.backbone_name == "resnet50_d8"
    assert model.class_names == [f"class_{k}" for k in range(5)] and model.palette == default_palette(5)
    assert model.meta["recipe"] == "isnet_r50_d8_ade20k"
    assert model.meta["init_from"] == {"source": "isnet_r50_d8_ade20k", "source_classes": 150, "num_classes": 5,
                                       "loaded": len(released) - 6, "reinitialized": CLASSIFIERS}  # fmt: skip
    state = model.state_dict()
    for key, value in state.items():
        expected = fresh[key] if key in CLASSIFIERS else released[key]
        assert torch.equal(value, expected), key
    assert tuple(state["head.decoder_stage2.1.weight"].shape) == (5, 512, 1, 1)

    named = from_pretrained("isnet_r50_d8_ade20k", progress=False, class_names=["sky", "road"])  # K = 2
    assert named.num_classes == 2 and named.class_names == ["sky", "road"]
    assert server.requests == ["/isnet_resnet50os8_ade20k.pth"]  # downloaded once, then from the cache


def test_from_pretrained_refuses_a_wrong_shaped_tensor(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = reference_state_dict("resnet50_d8", seed=3)
    state["bottleneck.0.weight"] = state["bottleneck.0.weight"][:, :100]
    serve_release(server, monkeypatch, state)
    with pytest.raises(CheckpointError, match=r"shape mismatch \(1\):\n    head.bottleneck.0.weight"):
        from_pretrained("isnet_r50_d8_ade20k", progress=False, num_classes=5)


def tiny_datamodule():
    from isnet.data import SyntheticDataModule

    return SyntheticDataModule(num_classes=3, image_size=32, num_train=4, num_val=2, batch_size=2)


def fit(module: ISNetModule, steps: int) -> None:
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=tiny_datamodule())


def test_freeze_backbone_trains_the_head_only() -> None:
    torch.manual_seed(0)
    module = ISNetModule(model_config=dict(TINY), num_classes=3, lr=0.05, freeze_backbone=True)
    backbone = {k: v.clone() for k, v in module.model.backbone.state_dict().items()}
    head = {k: v.clone() for k, v in module.model.head.state_dict().items()}
    module.train()  # as a training loop does: the backbone stays in eval mode
    fit(module, steps=2)

    assert not any(p.requires_grad for p in module.model.backbone.parameters())
    after = module.model.backbone.state_dict()
    assert any(k.endswith("running_mean") for k in after)
    assert all(torch.equal(backbone[k], v) for k, v in after.items())  # weights and BN statistics
    changed = [k for k, v in module.model.head.state_dict().items() if not torch.equal(head[k], v)]
    assert "bottleneck.0.weight" in changed and "bottleneck.1.running_mean" in changed
    assert "decoder_stage2.1.weight" in changed
    module.train()
    assert not module.model.backbone.training and module.model.head.training
    params = module.configure_optimizers()["optimizer"].param_groups[0]["params"]
    assert len(params) == sum(p.requires_grad for p in module.model.parameters())


def test_without_freeze_the_backbone_trains() -> None:
    torch.manual_seed(0)
    module = ISNetModule(model_config=dict(TINY), num_classes=3, lr=0.05)
    before = module.model.backbone.bn1.running_mean.clone()
    fit(module, steps=1)
    assert not torch.equal(before, module.model.backbone.bn1.running_mean)


def test_init_from_is_loaded_by_the_caller_or_refused(tmp_path: Path) -> None:
    source = tiny(5, seed=1)
    module = ISNetModule(model_config=dict(TINY), num_classes=3, init_from="some.pth")
    assert module.hparams.init_from == "some.pth"  # a plain string: nothing read when the module is built
    with pytest.raises(ConfigError, match=r"init_from='some.pth' was not loaded"):
        fit(module, steps=1)
    report = module.load_initial_weights(source.state_dict())
    assert report.reinitialized == tuple(CLASSIFIERS) and report.source == "some.pth"
    assert torch.equal(module.model.head.bottleneck[0].weight, source.head.bottleneck[0].weight)
    fit(module, steps=1)


def test_write_folder_dataset(tmp_path: Path) -> None:
    from isnet.data import FolderDataModule, write_folder_dataset

    root = write_folder_dataset(tmp_path / "data", num_classes=4, num_train=3, num_val=2, image_size=[24, 40])
    assert sorted(p.name for p in (root / "masks" / "val").iterdir()) == [
        "synthetic_val_000000.png",
        "synthetic_val_000001.png",
    ]
    datamodule = FolderDataModule(root, crop_size=[24, 40], batch_size=1, num_workers=0)
    assert datamodule.class_names == ["background", "shape_1", "shape_2", "shape_3"]
    datamodule.setup("fit")
    assert (len(datamodule.train_dataset), len(datamodule.val_dataset)) == (3, 2)
    assert tuple(datamodule.val_dataset[0]["mask"].shape) == (24, 40)
    with pytest.raises(FileExistsError, match="not an empty folder"):  # nothing is overwritten
        write_folder_dataset(root)


def test_finetune_experiment_composes(tmp_path: Path) -> None:
    root = tmp_path / "data"  # composing does not read the folder
    overrides = ["experiment=finetune_folder", f"data.root={root}", "model.init_from=isnet_r50_d8_ade20k"]
    cfg = compose("train", overrides, output_dir=str(tmp_path / "run"))
    assert cfg.data._target_ == "isnet.data.FolderDataModule" and cfg.data.root == str(root)
    assert cfg.model.init_from == "isnet_r50_d8_ade20k" and cfg.model.freeze_backbone is False
    assert cfg.trainer.max_epochs == cfg.schedule.epochs == 20 and cfg.model.optimizer.lr == 0.001
    with pytest.raises(InterpolationToMissingValueError, match="Missing mandatory value: init_from"):
        OmegaConf.select(
            compose("train", ["experiment=finetune_folder"]).model, "init_from", throw_on_missing=True
        )
    for name in ("eval", "predict"):
        assert compose(name, ["experiment=finetune_folder"]).experiment_name == "finetune_folder"
