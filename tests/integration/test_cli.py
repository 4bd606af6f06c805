"""Evaluation, prediction and conversion entry points on a tiny trained checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import isnet
from isnet.cli.convert import main as convert_main
from isnet.cli.eval import evaluate
from isnet.cli.predict import list_images, predict
from isnet.data import SyntheticDataModule
from isnet.viz import colorize, default_palette

from ..helpers import reference_state_dict
from .conftest import independent_confmat, tiny_config


@pytest.fixture(scope="module")
def our_checkpoint(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run's weights re-saved in the project's own format."""
    path = tmp_path_factory.mktemp("ours") / "tiny.pth"
    isnet.save_checkpoint(isnet.load_checkpoint(trained_run / "checkpoints" / "last.ckpt"), path)
    return path


def test_eval_lightning_and_own_checkpoints_agree(
    trained_run: Path, our_checkpoint: Path, tmp_path: Path
) -> None:
    results = []
    for ckpt in (trained_run / "checkpoints" / "last.ckpt", our_checkpoint):
        out = tmp_path / f"{ckpt.stem}.json"
        cfg = tiny_config("eval", tmp_path, [f"ckpt={ckpt}", f"output_json={out}"])
        result = evaluate(cfg)
        written = json.loads(out.read_text())
        assert written["mIoU"] == pytest.approx(result["mIoU"]) and written["split"] == "test"
        assert list(written["IoU"]) == ["background", "shape_1", "shape_2", "shape_3"]
        assert written["ms_flip"] is False and written["inference"]["scales"] == [1.0]
        results.append(result)
    assert results[0]["mIoU"] == results[1]["mIoU"]
    assert results[0]["IoU"] == results[1]["IoU"]


def test_eval_reports_the_checkpoints_metric(trained_run: Path, tmp_path: Path) -> None:
    """The evaluated mIoU equals an independent pass over the test split with the same weights."""
    cfg = tiny_config("eval", tmp_path, [f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}"])
    result = evaluate(cfg)
    confmat = independent_confmat(trained_run / "checkpoints" / "last.ckpt")
    inter = np.diag(confmat)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (confmat.sum(0) + confmat.sum(1) - inter)
    assert result["mIoU"] == pytest.approx(float(np.nanmean(iou)), rel=1e-6)
    saved = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert saved["memory"]["peak_rss_mib"] > 100  # this process has torch loaded: well above 100 MiB


def test_eval_ms_flip(our_checkpoint: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        "eval", tmp_path, [f"ckpt={our_checkpoint}", "+inference={scales: [0.75, 1.0], flip: true}"]
    )
    result = evaluate(cfg)
    assert result["ms_flip"] is True and result["inference"]["scales"] == [0.75, 1.0]
    assert (tmp_path / "eval_metrics.json").is_file()
    with pytest.raises(ValueError, match="ms_flip=true"):
        evaluate(tiny_config("eval", tmp_path, [f"ckpt={our_checkpoint}", "ms_flip=true"]))


def test_eval_refuses_mismatched_checkpoints(our_checkpoint: Path, tmp_path: Path) -> None:
    cfg = tiny_config("eval", tmp_path, [f"ckpt={our_checkpoint}", "data.num_classes=6"])
    with pytest.raises(ValueError, match=r"4 classes.*'synthetic'.* 6 classes"):
        evaluate(cfg)
    cfg = tiny_config("eval", tmp_path, [f"ckpt={our_checkpoint}", "experiment_name=isnet_r50_d8_ade20k",
                                         "model/backbone=r50_d8"])  # fmt: skip
    with pytest.raises(ValueError, match="resnet18d.*isnet_r50_d8_ade20k.*resnet50_d8"):
        evaluate(cfg)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.pth"))):
        evaluate(tiny_config("eval", tmp_path, [f"ckpt={tmp_path / 'missing.pth'}"]))


def test_eval_split_without_labels(our_checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "folder"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)).save(root / "images" / split / f"{i}.png")
            Image.fromarray(np.full((24, 24), 255, np.uint8)).save(root / "masks" / split / f"{i}.png")
    (root / "classes.yaml").write_text(yaml.safe_dump({"classes": ["a", "b", "c", "d"]}))
    cfg = tiny_config("eval", tmp_path, [f"ckpt={our_checkpoint}", "data=folder", f"data.root={root}",
                                         "data.test_scale=[24,24]", "data.num_workers=0", "data.pin_memory=false"],
                      tiny=False)  # fmt: skip
    with pytest.raises(ValueError, match=rf"'val' under {re.escape(str(root))}"):
        evaluate(cfg)


def _write_images(folder: Path, count: int) -> list[Path]:
    dataset = SyntheticDataModule(num_classes=4, image_size=(30, 40), num_val=count).make_dataset(
        "val", train=False
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image, _ = dataset.load(i)
        paths.append(folder / f"img{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def test_predict_folder_and_glob(our_checkpoint: Path, tmp_path: Path) -> None:
    inputs = _write_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    cfg = tiny_config("predict", tmp_path, [f"ckpt={our_checkpoint}", f"input={tmp_path / 'in'}",
                                            f"output_dir={out}"], tiny=False)  # fmt: skip
    records = predict(cfg)
    assert [r["input"] for r in records] == [str(p) for p in inputs]
    model = isnet.load_checkpoint(our_checkpoint)
    palette = default_palette(4)
    for path in inputs:
        labels = np.asarray(Image.open(out / f"{path.stem}_labels.png"))
        mask = np.asarray(Image.open(out / f"{path.stem}_mask.png"))
        overlay = np.asarray(Image.open(out / f"{path.stem}_overlay.png"))
        assert labels.shape == (30, 40) and mask.shape == overlay.shape == (30, 40, 3)
        np.testing.assert_array_equal(mask, colorize(labels, palette))
        rgb = np.asarray(Image.open(path)).astype(np.float32)
        mean = np.asarray([123.675, 116.28, 103.53], np.float32)
        std = np.asarray([58.395, 57.12, 57.375], np.float32)
        x = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1).copy())
        with torch.inference_mode():
            expected = model(x[None].float()).argmax(1)[0].numpy()
        np.testing.assert_array_equal(labels, expected)
    index = json.loads((out / "predictions.json").read_text())
    assert len(index["images"]) == 2
    # the synthetic data config brings its own palette
    cfg = tiny_config("predict", tmp_path, [f"ckpt={our_checkpoint}", f"input={tmp_path / 'in' / '*1.png'}",
                                            f"output_dir={tmp_path / 'out2'}", "data=synthetic",
                                            "data.num_classes=4"], tiny=False)  # fmt: skip
    records = predict(cfg)
    assert len(records) == 1 and (tmp_path / "out2" / "img1_overlay.png").is_file()


def test_predict_video_and_refusal_to_overwrite(our_checkpoint: Path, tmp_path: Path) -> None:
    import cv2

    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (40, 30))
    for frame in _write_images(tmp_path / "frames", 3):
        writer.write(cv2.imread(str(frame)))
    writer.release()
    out = tmp_path / "out"
    args = [f"ckpt={our_checkpoint}", f"input={tmp_path / 'clip.avi'}", f"output_dir={out}", "batch_size=2"]
    (record,) = predict(tiny_config("predict", tmp_path, args, tiny=False))
    assert record["frames"] == 3 and record["overlay"] == str(out / "clip_overlay.avi")
    capture = cv2.VideoCapture(record["overlay"])
    assert (
        int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 40
    )
    capture.release()
    # an output folder holding a previous prediction is refused unless force=true
    images = [f"ckpt={our_checkpoint}", f"input={tmp_path / 'frames'}", f"output_dir={tmp_path / 'again'}"]
    predict(tiny_config("predict", tmp_path, images, tiny=False))
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / "again"))):
        predict(tiny_config("predict", tmp_path, images, tiny=False))
    assert len(predict(tiny_config("predict", tmp_path, [*images, "force=true"], tiny=False))) == 3


def test_predict_input_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nothing*.jpg"))):
        list_images(str(tmp_path / "nothing*.jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "empty"))):
        list_images(str(tmp_path / "empty"))


def test_convert_script_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "isnet_resnet50os8_ade20k.pth"
    torch.save({"model": reference_state_dict("resnet50_d8"), "cur_epoch": 130}, src)
    dst = tmp_path / "converted.pth"
    assert convert_main([str(src), str(dst)]) == 0
    model = isnet.load_checkpoint(dst)
    assert model.backbone_name == "resnet50_d8" and model.num_classes == 150
    assert model.meta["experiment"] == "isnet_r50_d8_ade20k" and model.meta["reference_mIoU"] == 44.22
    before = dst.stat().st_mtime_ns
    for args, fact in (([src, dst], dst), ([tmp_path / "missing.pth", tmp_path / "x.pth"], "missing.pth")):
        with pytest.raises(SystemExit) as exit_info:
            convert_main([str(a) for a in args])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(fact) in err and err.count("\n") == 1
        assert dst.stat().st_mtime_ns == before
    assert convert_main([str(src), str(dst), "--force"]) == 0


@pytest.mark.slow
def test_eval_with_compile_matches_eager(our_checkpoint: Path, tmp_path: Path) -> None:
    """``compile=true`` evaluates through the compiled fused network and reports the eager numbers."""
    from torch._dynamo.utils import counters

    results, frames = {}, {}
    for setting in ("false", "true"):
        out = tmp_path / f"compile_{setting}.json"
        cfg = tiny_config(
            "eval", tmp_path, [f"ckpt={our_checkpoint}", f"output_json={out}", f"compile={setting}"]
        )
        before = counters["frames"]["ok"]
        results[setting] = evaluate(cfg)
        frames[setting] = counters["frames"]["ok"] - before
    assert frames["false"] == 0 and frames["true"] > 0  # frames that dynamo compiled
    assert results["true"]["mIoU"] == pytest.approx(results["false"]["mIoU"], abs=1e-6)
    assert results["true"]["IoU"] == pytest.approx(results["false"]["IoU"], abs=1e-6)
