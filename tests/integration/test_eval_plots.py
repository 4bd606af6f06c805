"""Evaluation plots (per-class IoU, confusion matrix) and prediction panels on a tiny trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger

import isnet.cli.eval as eval_cli
from isnet.data import SyntheticDataModule
from isnet.lit import ISNetModule, PredictionOverlays
from isnet.viz import default_palette, denormalize, prediction_panel

from .conftest import independent_confmat, tiny_config

NAMES = ["background", "shape_1", "shape_2", "shape_3"]


def test_eval_writes_iou_and_confusion_plots(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    drawn: list[np.ndarray] = []
    original = eval_cli.confusion_matrix_figure

    def spy(confmat, class_names):  # noqa: ANN001, ANN202 - records the array the PNG is drawn from
        fig, normalised = original(confmat, class_names)
        drawn.append(normalised)
        return fig, normalised

    monkeypatch.setattr(eval_cli, "confusion_matrix_figure", spy)
    out_json = tmp_path / "out" / "metrics.json"
    result = eval_cli.evaluate(tiny_config("eval", tmp_path, [f"ckpt={ckpt}", f"output_json={out_json}"]))

    expected_paths = {
        "per_class_iou": str(out_json.parent / "per_class_iou.png"),
        "confusion_matrix": str(out_json.parent / "confusion_matrix.png"),
    }
    assert result["plots"] == expected_paths
    assert json.loads(out_json.read_text())["plots"] == expected_paths
    printed = capsys.readouterr().out
    for path in expected_paths.values():
        assert f"Wrote {path}" in printed
        with Image.open(path) as img:
            assert img.format == "PNG" and min(img.size) > 100
    assert not list(out_json.parent.glob(".*.tmp"))  # written atomically

    counts = independent_confmat(ckpt)
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(rows > 0, counts / rows, np.nan)
        inter = np.diag(counts)
        iou = inter / (counts.sum(0) + counts.sum(1) - inter)
    assert len(drawn) == 1
    np.testing.assert_allclose(drawn[0], expected, rtol=1e-12)
    # the same counts give the reported per-class IoU, so the plots show the metric's own state
    np.testing.assert_allclose([result["IoU"][n] for n in NAMES], iou, rtol=1e-9)


def test_eval_plots_can_be_disabled(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    result = eval_cli.evaluate(tiny_config("eval", tmp_path, [f"ckpt={ckpt}", "plots=false"]))
    assert "plots" not in result
    assert not list(tmp_path.rglob("*.png"))


class _RecordingExperiment:
    def __init__(self) -> None:
        self.calls: list[tuple[str, np.ndarray, int, str]] = []

    def add_image(self, tag: str, array: np.ndarray, step: int, dataformats: str) -> None:
        self.calls.append((tag, array, step, dataformats))


class _RecordingTensorBoardLogger(TensorBoardLogger):
    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.recorder = _RecordingExperiment()

    @property
    def experiment(self) -> _RecordingExperiment:
        return self.recorder


def test_prediction_overlays_write_legend_panels_and_log_to_tensorboard(tmp_path: Path) -> None:
    datamodule = SyntheticDataModule(num_classes=3, image_size=(24, 40), num_val=3)
    datamodule.setup("fit")
    datamodule.setup("test")
    module = ISNetModule(model_config={"backbone": "resnet18d", "feats_channels": 16, "transform_channels": 8},
                         num_classes=3, class_names=["bg", "a", "b"])  # fmt: skip
    logger = _RecordingTensorBoardLogger(str(tmp_path / "tb"))
    trainer = SimpleNamespace(datamodule=datamodule, default_root_dir=str(tmp_path), loggers=[logger],
                              sanity_checking=False, global_step=7)  # fmt: skip
    callback = PredictionOverlays(num_images=1, min_height=48, palette="generated", log_images=2)

    callback.draw(trainer, module, "test_dataset")
    sample = datamodule.test_dataset[0]
    module.eval()
    with torch.no_grad():
        pred = module.model(sample["image"][None]).argmax(1)[0]  # eval mode: resized to the input size
    module.train()
    expected = prediction_panel(denormalize(sample["image"]), sample["mask"], pred, ["bg", "a", "b"],
                                default_palette(3), title=sample["name"], panel_height=48)  # fmt: skip
    assert [p.name for p in callback.written] == ["00_synthetic_test_000000.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(callback.written[0]).convert("RGB")), expected)

    callback.on_validation_epoch_end(trainer, module)
    calls = logger.recorder.calls
    assert [(tag, step, fmt) for tag, _, step, fmt in calls] == [
        ("val/prediction_0", 7, "HWC"),
        ("val/prediction_1", 7, "HWC"),
    ]
    assert all(a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 for _, a, _, _ in calls)
    assert module.training  # the module's mode is restored

    trainer.sanity_checking = True
    callback.on_validation_epoch_end(trainer, module)
    assert len(calls) == 2  # nothing logged during the sanity check
    with pytest.raises(ValueError, match="log_images must be an int >= 0"):
        PredictionOverlays(log_images=-1)
