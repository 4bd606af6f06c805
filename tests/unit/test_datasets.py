"""Dataset reading, label mappings and metadata, checked against independent sources.

Label mappings are recomputed here from the raw files with plain numpy / cv2 / scipy and the official
``cityscapesscripts`` table, never through ``isnet.data``'s own lookup tables.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from cityscapesscripts.helpers.labels import id2label, labels
from PIL import Image

from isnet.data import (
    ADE20kDataModule,
    CityscapesDataModule,
    COCOStuff10kDataModule,
    LIPDataModule,
    SyntheticDataModule,
)
from isnet.data.datasets.base import read_image, read_label
from isnet.data.datasets.synthetic import SyntheticSegDataset
from tests import fixtures as fx


def _gray(path):
    """Raw label as the reference reads it (cv2 grayscale)."""
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.int64)


def _val_masks(dm):
    dm.setup("validate")
    return [(dm.val_dataset.samples[i], dm.val_dataset[i]["mask"]) for i in range(len(dm.val_dataset))]


# ------------------------------------------------------------------------------------------------
# ADE20k


@pytest.mark.parametrize("with_lists", [True, False])
@pytest.mark.parametrize("point_at_inner", [False, True])
def test_ade20k_reduce_zero_label(tmp_path, with_lists, point_at_inner):
    root = fx.write_ade20k(tmp_path, n_train=3, n_val=2, with_lists=with_lists)
    if point_at_inner:
        root = root / "ADEChallengeData2016"
    dm = fx.datamodule("ade20k", root)
    pairs = _val_masks(dm)
    assert [s.name for s, _ in pairs] == ["ADE_val_00000001", "ADE_val_00000002"]
    for sample, mask in pairs:
        raw = _gray(sample.label)
        expected = np.where(raw == 0, 255, raw - 1)
        assert mask.dtype == torch.int64
        assert np.array_equal(mask.numpy(), expected)
        assert {0, 255} <= set(np.unique(expected).tolist())


def test_ade20k_metadata():
    assert ADE20kDataModule.name == "ade20k"
    assert len(ADE20kDataModule.class_names) == 150 == len(ADE20kDataModule.palette)
    assert ADE20kDataModule.class_names[0] == "wall"
    assert ADE20kDataModule.palette[0] == (120, 120, 120)
    assert ADE20kDataModule.flip_pairs == []


# ------------------------------------------------------------------------------------------------
# Cityscapes


def _official_train_ids(raw):
    """labelIds -> trainIds with the cityscapesscripts label objects, pixel value by pixel value."""
    out = np.full(raw.shape, 255, dtype=np.int64)
    for value in np.unique(raw):
        train_id = id2label[int(value)].trainId
        out[raw == value] = train_id if 0 <= train_id < 255 else 255
    return out


def test_cityscapes_labelids_mapped_with_official_table(tmp_path):
    root = fx.write_cityscapes(tmp_path, label_ids=True, train_ids=False)
    dm = fx.datamodule("cityscapes", root)
    for sample, mask in _val_masks(dm):
        assert sample.label.name.endswith("_gtFine_labelIds.png")
        assert np.array_equal(mask.numpy(), _official_train_ids(_gray(sample.label)))
    # Every one of the 19 train ids and the ignore value occur in the fixture.
    dm.setup("fit")
    seen = set()
    for i in range(len(dm.val_dataset)):
        seen |= set(dm.val_dataset[i]["mask"].unique().tolist())
    assert seen == set(range(19)) | {255}


def test_cityscapes_reads_train_id_files(tmp_path):
    root = fx.write_cityscapes(tmp_path, label_ids=True, train_ids=True)
    for label_type in ("auto", "labelTrainIds"):
        dm = fx.datamodule("cityscapes", root, label_type=label_type)
        for sample, mask in _val_masks(dm):
            assert sample.label.name.endswith("_gtFine_labelTrainIds.png")
            ids_file = sample.label.with_name(sample.label.name.replace("labelTrainIds", "labelIds"))
            assert np.array_equal(mask.numpy(), _official_train_ids(_gray(ids_file)))
    dm = fx.datamodule("cityscapes", root, label_type="labelIds")
    assert all(s.label.name.endswith("_labelIds.png") for s, _ in _val_masks(dm))


def test_cityscapes_metadata_from_official_labels():
    train = sorted((lb for lb in labels if 0 <= lb.trainId < 255), key=lambda lb: lb.trainId)
    assert CityscapesDataModule.class_names == [lb.name for lb in train]
    assert CityscapesDataModule.palette == [tuple(lb.color) for lb in train]
    assert len(CityscapesDataModule.class_names) == 19


# ------------------------------------------------------------------------------------------------
# COCO-Stuff-10k


@pytest.mark.parametrize("png", [False, True])
def test_cocostuff_raw_minus_one(tmp_path, png):
    root = fx.write_cocostuff10k(tmp_path, png=png)
    dm = fx.datamodule("cocostuff10k", root)
    assert dm.val_split == dm.test_split == "test"
    pairs = _val_masks(dm)
    for sample, mask in pairs:
        assert sample.label.suffix == (".png" if png else ".mat")
        raw = scipy.io.loadmat(str(root / "annotations" / f"{sample.name}.mat"))["S"].astype(np.int64)
        expected = np.where((raw == 0) | (raw == 255), 255, raw - 1)
        assert np.array_equal(mask.numpy(), expected)
        assert 181 in expected and 255 in expected and 0 in expected


def test_cocostuff_class_names():
    names = COCOStuff10kDataModule.class_names
    assert len(names) == 182 == len(COCOStuff10kDataModule.palette)
    # COCO-Stuff labels.txt: id 1 person ... 91 hair brush (things), 92 banner ... 182 wood (stuff).
    assert (names[0], names[90], names[91], names[181]) == ("person", "hair brush", "banner", "wood")
    unused = {
        "street sign": 11, "hat": 25, "shoe": 28, "eye glasses": 29, "plate": 44, "mirror": 65,
        "window": 67, "desk": 68, "door": 70, "blender": 82, "hair brush": 90,
    }  # fmt: skip
    for name, index in unused.items():
        assert names[index] == name
    assert len(set(names)) == 182


# ------------------------------------------------------------------------------------------------
# LIP


@pytest.mark.parametrize("layout", ["official", "flat"])
def test_lip_raw_labels_both_layouts(tmp_path, layout):
    root = fx.write_lip(tmp_path, layout=layout)
    for kind in ("auto", layout):
        dm = fx.datamodule("lip", root, layout=kind)
        pairs = _val_masks(dm)
        assert [s.name for s, _ in pairs] == ["1077_1", "1078_2"]
        for sample, mask in pairs:
            assert np.array_equal(mask.numpy(), _gray(sample.label))


def test_lip_metadata():
    names = LIPDataModule.class_names
    assert len(names) == 20 == len(LIPDataModule.palette)
    assert LIPDataModule.flip_pairs == [(14, 15), (16, 17), (18, 19)]
    for left, right in LIPDataModule.flip_pairs:
        assert names[left].startswith("left") and names[right] == "right" + names[left][4:]


def test_lip_test_resize_ignores_aspect_ratio(tmp_path):
    root = fx.write_lip(tmp_path)
    dm = LIPDataModule(root=root, num_workers=0)
    dm.setup("validate")
    sample = dm.val_dataset[0]
    assert sample["image"].shape == (3, 473, 473)
    assert sample["mask"].shape == (40, 56)


# ------------------------------------------------------------------------------------------------
# Folder


def test_folder_split_folders_and_ignore(tmp_path):
    root = fx.write_folder(tmp_path, split_folders=True)
    dm = fx.datamodule("folder", root)
    assert dm.class_names == ["background", "road", "car"] and dm.num_classes == 3
    assert len(dm.palette) == 3
    for sample, mask in _val_masks(dm):
        assert np.array_equal(mask.numpy(), _gray(sample.label))
    assert len(dm.val_dataset) == 2


def test_folder_mapping_and_val_fraction(tmp_path):
    root = fx.write_folder(
        tmp_path, n_train=6, n_val=4, split_folders=False, raw_ignore=0, classes=("a", "b", "c")
    )
    # The fixture writes raw values 0..2; with this file raw 0 = ignore, 1 -> 0, 2 -> 1 (3 -> 2 never occurs).
    (root / "classes.yaml").write_text(
        "classes: [a, b, c]\nignore_index: 0\nmapping: {1: 0, 2: 1, 3: 2}\npalette: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]\n"
    )
    dm = fx.datamodule("folder", root, val_fraction=0.3)
    assert dm.palette == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    dm.setup("fit")
    train_names = {s.name for s in dm.train_dataset.samples}
    val_names = {s.name for s in dm.val_dataset.samples}
    assert len(val_names) == 3 and len(train_names) == 7 and not train_names & val_names
    for sample, mask in _val_masks(dm):
        raw = _gray(sample.label)
        expected = np.select([raw == 0, raw == 1, raw == 2], [255, 0, 1], default=-1)
        assert np.array_equal(mask.numpy(), expected)
    # The split is a fixed function of split_seed.
    again = fx.datamodule("folder", root, val_fraction=0.3)
    again.setup("validate")
    assert {s.name for s in again.val_dataset.samples} == val_names


# ------------------------------------------------------------------------------------------------
# Synthetic


def test_synthetic_deterministic_and_seed_dependent():
    a = SyntheticSegDataset(num_classes=4, image_size=(33, 47), length=5, split="train", seed=3)
    b = SyntheticSegDataset(num_classes=4, image_size=(33, 47), length=5, split="train", seed=3)
    c = SyntheticSegDataset(num_classes=4, image_size=(33, 47), length=5, split="train", seed=4)
    v = SyntheticSegDataset(num_classes=4, image_size=(33, 47), length=5, split="val", seed=3)
    ia, la = a.load(2)
    ib, lb = b.load(2)
    assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    assert not np.array_equal(ia, c.load(2)[0])
    assert not np.array_equal(ia, v.load(2)[0])
    assert ia.shape == (33, 47, 3) and ia.dtype == np.uint8 and la.shape == (33, 47)
    assert set(np.unique(la).tolist()) <= set(range(4))


def test_synthetic_classes_are_separable_by_colour():
    # The task must be learnable: the mean colour of each class region is closest to that class's
    # palette colour on most pixels.
    ds = SyntheticSegDataset(num_classes=5, image_size=(64, 64), length=20, seed=0)
    palette = np.array(SyntheticDataModule(num_classes=5).palette, dtype=np.float32)
    hits = total = 0
    for i in range(20):
        image, label = ds.load(i)
        for k in np.unique(label):
            mean = image[label == k].reshape(-1, 3).astype(np.float32).mean(0)
            hits += int(np.argmin(((palette - mean) ** 2).sum(1)) == k)
            total += 1
    assert hits / total > 0.9


def test_synthetic_boundary_ignore():
    ds = SyntheticSegDataset(num_classes=3, image_size=(40, 40), length=4, boundary_ignore=1, seed=1)
    values = set()
    for i in range(4):
        values |= set(np.unique(ds.load(i)[1]).tolist())
    assert 255 in values and values <= {0, 1, 2, 255}


# ------------------------------------------------------------------------------------------------
# Reading


def test_read_image_applies_exif_orientation_like_cv2_imread(tmp_path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)
    ours = read_image(path)
    reference = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert ours.shape == (40, 20, 3)
    assert np.array_equal(ours, reference)


def test_read_label_palette_png_gives_indices(tmp_path):
    label = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    img = Image.frombytes("P", (2, 2), label.tobytes())
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 7)])
    path = tmp_path / "p.png"
    img.save(path)
    assert np.array_equal(read_label(path), label)


# ------------------------------------------------------------------------------------------------
# Preparation scripts (called through their main(argv))

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_ade20k_unzips_lists_and_never_overwrites(tmp_path, capsys):
    source = fx.write_ade20k(tmp_path / "src", with_lists=False)
    archive = fx.zip_folder(source, tmp_path / "ADEChallengeData2016.zip")
    root = tmp_path / "ADE20k"
    main = _script("prepare_ade20k").main
    assert main(["--zip", str(archive), "--root", str(root)]) == 0
    base = root / "ADEChallengeData2016"
    assert (base / "train.txt").read_text() == "ADE_train_00000001\nADE_train_00000002\nADE_train_00000003\n"
    dm = fx.datamodule("ade20k", root)
    dm.setup("fit")
    assert len(dm.train_dataset) == 3 and len(dm.val_dataset) == 2
    capsys.readouterr()
    # Idempotent: nothing is written again.
    assert main(["--zip", str(archive), "--root", str(root)]) == 0
    assert "0 written" in capsys.readouterr().err
    # A user's edits survive without --force and are reported.
    (base / "val.txt").write_text("ADE_val_00000002\n")
    image = base / "images" / "training" / "ADE_train_00000001.jpg"
    image.write_bytes(b"user file")
    assert main(["--zip", str(archive), "--root", str(root)]) == 0
    err = capsys.readouterr().err
    assert "--force" in err and "2 existing file(s) differ" in err
    assert (base / "val.txt").read_text() == "ADE_val_00000002\n"
    assert image.read_bytes() == b"user file"
    assert main(["--zip", str(archive), "--root", str(root), "--force"]) == 0
    assert (base / "val.txt").read_text() == "ADE_val_00000001\nADE_val_00000002\n"
    assert (
        image.read_bytes()
        == (source / "ADEChallengeData2016" / "images" / "training" / image.name).read_bytes()
    )


def test_prepare_cityscapes_train_ids(tmp_path, capsys):
    root = fx.write_cityscapes(tmp_path)
    main = _script("prepare_cityscapes").main
    assert main(["--root", str(root), "--lists"]) == 0
    sources = sorted((root / "gtFine").rglob("*_gtFine_labelIds.png"))
    assert len(sources) == 5
    for src in sources:
        target = src.with_name(src.name.replace("labelIds", "labelTrainIds"))
        assert np.array_equal(_gray(target), _official_train_ids(_gray(src)))
    assert (root / "val.txt").read_text() == "frankfurt/frankfurt_000000_000019_leftImg8bit\n" + (
        "frankfurt/frankfurt_000001_000020_leftImg8bit\n"
    )
    target = next((root / "gtFine" / "val").rglob("*_labelTrainIds.png"))
    stamp = target.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["--root", str(root)]) == 0
    assert target.stat().st_mtime_ns == stamp and "0 written" in capsys.readouterr().err
    Image.fromarray(np.zeros_like(_gray(target), dtype=np.uint8)).save(target)
    assert main(["--root", str(root)]) == 0
    assert _gray(target).max() == 0
    assert main(["--root", str(root), "--force"]) == 0
    assert _gray(target).max() > 0
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(tmp_path / "missing")])
    assert exit_info.value.code == 1
    assert f"error: {tmp_path / 'missing'}" in capsys.readouterr().err


def test_prepare_cocostuff10k_png_labels(tmp_path):
    root = fx.write_cocostuff10k(tmp_path)
    assert _script("prepare_cocostuff10k").main(["--root", str(root)]) == 0
    for mat in (root / "annotations").glob("*.mat"):
        png = root / "annotations_png" / f"{mat.stem}.png"
        assert np.array_equal(_gray(png), scipy.io.loadmat(str(mat))["S"].astype(np.int64))
    dm = fx.datamodule("cocostuff10k", root)
    dm.setup("validate")
    assert all(s.label.suffix == ".png" for s in dm.val_dataset.samples)


@pytest.mark.parametrize("layout", ["official", "flat"])
def test_prepare_lip_from_official_zips(tmp_path, layout):
    source = fx.write_lip(tmp_path / "src")
    zips = tmp_path / "downloads"
    fx.zip_folder(source / "TrainVal_images", zips / "TrainVal_images.zip", "TrainVal_images")
    annotations = source / "TrainVal_parsing_annotations"
    fx.zip_folder(annotations, zips / "TrainVal_parsing_annotations.zip", "TrainVal_parsing_annotations")
    root = tmp_path / "LIP"
    main = _script("prepare_lip").main
    assert main(["--zips", str(zips), "--root", str(root), "--layout", layout]) == 0
    assert main(["--zips", str(zips), "--root", str(root), "--layout", layout]) == 0
    expected_list = root / ("train_id.txt" if layout == "flat" else "TrainVal_images/train_id.txt")
    assert expected_list.read_text() == "77_1\n78_2\n79_3\n"
    dm = fx.datamodule("lip", root, layout=layout)
    dm.setup("fit")
    assert len(dm.train_dataset) == 3 and len(dm.val_dataset) == 2
