"""Benchmark-server submissions: ``scripts/eval.py format_only=true`` on the official layouts of Cityscapes and
ADE20k (unlabelled test splits), checked against cityscapesscripts' label table and ``scripts/predict.py``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import isnet
from isnet.cli.eval import evaluate
from isnet.cli.predict import predict
from isnet.cli.submission import prepare_submission_dir, submission_lut
from isnet.data import CityscapesDataModule
from isnet.errors import ConfigError, DataError

from ..fixtures import write_ade20k, write_cityscapes
from .conftest import tiny_config

DATA = ["data.num_workers=0", "data.pin_memory=false", "data.test_scale=[64,64]", "trainer=cpu"]


def _checkpoint(folder: Path, num_classes: int) -> Path:
    """A tiny random ISNet (in eval mode its predictions vary over the image)."""
    model = isnet.ISNet("resnet18d", num_classes, feats_channels=32, transform_channels=16)
    return isnet.save_checkpoint(model.eval(), folder / f"tiny_{num_classes}.pth")


def _submit(tmp_path: Path, data: str, root: Path, ckpt: Path, *extra: str) -> dict:
    overrides = [f"data={data}", f"data.root={root}", f"ckpt={ckpt}", "format_only=true", *DATA, *extra]
    return evaluate(tiny_config("eval", tmp_path / "run", overrides, tiny=False))


def _predicted_ids(
    tmp_path: Path, data: str, root: Path, ckpt: Path, images: list[Path]
) -> dict[str, np.ndarray]:
    """Class ids of ``scripts/predict.py`` (a separate code path) for each image stem."""
    for image in images:
        out = tmp_path / "predict" / image.stem  # one folder per call: predict never replaces its own files
        cfg = tiny_config("predict", out, [f"data={data}", f"data.root={root}", f"ckpt={ckpt}",
                                           f"input={image}", f"output_dir={out}", *DATA], tiny=False)  # fmt: skip
        predict(cfg)
    return {
        im.stem: np.array(Image.open(tmp_path / "predict" / im.stem / f"{im.stem}_labels.png"))
        for im in images
    }


def test_cityscapes_test_split_writes_label_ids(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cityscapesscripts.helpers.labels import trainId2label

    root = write_cityscapes(tmp_path / "cs", n_train=1, n_val=1, n_test=3)
    ckpt = _checkpoint(tmp_path, 19)
    result = _submit(
        tmp_path, "cityscapes", root, ckpt, "+data.test_split=test", f"format_dir={tmp_path / 'sub'}"
    )
    images = sorted((root / "leftImg8bit" / "test").glob("*/*_leftImg8bit.png"))
    written = sorted((tmp_path / "sub").iterdir())
    # one PNG per image, named as the image (<city>_<seq>_<frame>_leftImg8bit.png), nothing else
    assert [p.name for p in written] == sorted(p.name for p in images)
    assert all(re.fullmatch(r"[a-z]+_\d{6}_\d{6}_leftImg8bit\.png", p.name) for p in written)
    assert result["files"] == 3 and result["split"] == "test" and "mIoU" not in result
    expected = _predicted_ids(tmp_path, "cityscapes", root, ckpt, images)
    seen = set()
    for path in written:
        with Image.open(path) as png:
            assert png.mode == "L"  # 8-bit single channel
            values = np.array(png)
        train_ids = expected[path.stem]
        assert values.shape == train_ids.shape  # the original image size
        # every pixel: the labelId that cityscapesscripts gives the predicted trainId
        want = np.vectorize(lambda t: trainId2label[int(t)].id)(train_ids)
        np.testing.assert_array_equal(values, want)
        seen |= set(np.unique(train_ids).tolist())
    assert len(seen) > 1  # the check covered more than one class
    out = capsys.readouterr().out
    assert (
        f"Wrote 3 PNGs (Cityscapes labelIds) of cityscapes split 'test' to {(tmp_path / 'sub').resolve()}"
        in out
    )
    assert "zip -q ../sub.zip *.png" in out


def test_ade20k_test_split_writes_class_id_plus_one(tmp_path: Path) -> None:
    root = write_ade20k(tmp_path / "ade", n_train=1, n_val=1, n_test=2)
    ckpt = _checkpoint(tmp_path, 150)
    sub = tmp_path / "sub"  # a batch of 2 images of different sizes: each predicted at its own size
    batch = "data.val_batch_size=2"
    result = _submit(tmp_path, "ade20k", root, ckpt, "+data.test_split=test", f"format_dir={sub}", batch)
    images = sorted((root / "ADEChallengeData2016" / "images" / "testing").glob("*.jpg"))
    written = sorted(sub.iterdir())
    assert [p.name for p in written] == ["ADE_test_00000001.png", "ADE_test_00000002.png"]
    assert result["files"] == 2 and result["format"].startswith("ADE20k class id + 1")
    expected = _predicted_ids(tmp_path, "ade20k", root, ckpt, images)
    for path in written:
        values = np.array(Image.open(path))
        np.testing.assert_array_equal(values, expected[path.stem].astype(np.uint8) + 1)
        assert values.min() >= 1  # 0 ("other", ignored by the benchmark) is never predicted


def test_folder_split_without_masks_writes_class_ids(tmp_path: Path) -> None:
    root = tmp_path / "own"
    (root / "classes.yaml").parent.mkdir()
    (root / "classes.yaml").write_text("classes: [a, b, c, d]\n")
    rng = np.random.default_rng(0)
    for split, count in (("train", 1), ("val", 1), ("test", 3)):
        (root / "images" / split).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(
                root / "images" / split / f"{split}{i}.png"
            )
    for split in ("train", "val"):  # no masks/test: the test split is unlabelled
        (root / "masks" / split).mkdir(parents=True)
        for image in (root / "images" / split).iterdir():
            Image.fromarray(np.zeros((24, 32), np.uint8)).save(root / "masks" / split / image.name)
    ckpt = _checkpoint(tmp_path, 4)
    sub = tmp_path / "sub"  # a batch of 2 images of one size: predicted in one call
    result = _submit(
        tmp_path, "folder", root, ckpt, "+data.test_split=test", f"format_dir={sub}", "data.val_batch_size=2"
    )
    images = sorted((root / "images" / "test").iterdir())
    assert sorted(p.name for p in sub.iterdir()) == ["test0.png", "test1.png", "test2.png"]
    assert result["format"] == "class index 0..K-1"
    expected = _predicted_ids(tmp_path, "folder", root, ckpt, images)
    for path in sub.iterdir():
        np.testing.assert_array_equal(np.array(Image.open(path)), expected[path.stem])


def test_labelled_split_and_existing_folder(tmp_path: Path) -> None:
    root = write_ade20k(tmp_path / "ade", n_train=1, n_val=2)
    ckpt = _checkpoint(tmp_path, 150)
    folder = tmp_path / "sub"
    result = _submit(tmp_path, "ade20k", root, ckpt, f"format_dir={folder}")
    assert result["split"] == "val" and sorted(p.name for p in folder.iterdir()) == [
        "ADE_val_00000001.png",
        "ADE_val_00000002.png",
    ]
    assert not (tmp_path / "run" / "eval_metrics.json").exists()  # nothing scored
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match="format_overwrite=true"):
        _submit(tmp_path, "ade20k", root, ckpt, f"format_dir={folder}")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # untouched
    (folder / "notes.txt").write_text("mine")
    _submit(tmp_path, "ade20k", root, ckpt, f"format_dir={folder}", "format_overwrite=true")
    assert (folder / "notes.txt").read_text() == "mine" and len(list(folder.glob("*.png"))) == 2


def test_unlabelled_split_cannot_be_scored_or_trained(tmp_path: Path) -> None:
    root = write_cityscapes(tmp_path / "cs", n_train=1, n_val=1, n_test=1)
    ckpt = _checkpoint(tmp_path, 19)
    overrides = ["data=cityscapes", f"data.root={root}", f"ckpt={ckpt}", "+data.test_split=test", *DATA]
    with pytest.raises(DataError, match="format_only=true"):
        evaluate(tiny_config("eval", tmp_path / "run", overrides, tiny=False))
    module = CityscapesDataModule(root, train_split="test", num_workers=0)
    with pytest.raises(DataError, match="'test' has no labels and cannot be trained on"):
        module.setup("fit")


def test_lut_and_folder_rules(tmp_path: Path) -> None:
    from cityscapesscripts.helpers.labels import trainId2label

    lut = submission_lut("cityscapes", 19)
    assert lut.dtype == np.uint8 and [int(v) for v in lut] == [trainId2label[t].id for t in range(19)]
    assert list(submission_lut("ade20k", 150)) == list(range(1, 151))
    assert list(submission_lut("lip", 20)) == list(range(20))
    with pytest.raises(ConfigError, match="8-bit"):
        submission_lut("ade20k", 256)
    assert prepare_submission_dir(tmp_path / "new").is_dir()
    assert prepare_submission_dir(tmp_path / "new").is_dir()  # empty: fine
    (tmp_path / "new" / "a.png").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        prepare_submission_dir(tmp_path / "new")
    assert prepare_submission_dir(tmp_path / "new", overwrite=True).is_dir()
