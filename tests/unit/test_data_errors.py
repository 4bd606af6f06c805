"""Bad data and bad settings raise clear errors that name the file or setting and what is wrong."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from isnet.data import (
    ADE20kDataModule,
    CityscapesDataModule,
    COCOStuff10kDataModule,
    FolderDataModule,
    LIPDataModule,
    SyntheticDataModule,
    build_datamodule,
)
from isnet.data.datasets.base import read_image
from tests import fixtures as fx


@pytest.mark.parametrize(
    ("cls", "layout_hint", "script"),
    [
        (ADE20kDataModule, "ADEChallengeData2016/images", "scripts/prepare_ade20k.py"),
        (CityscapesDataModule, "leftImg8bit/", "scripts/prepare_cityscapes.py"),
        (COCOStuff10kDataModule, "imageLists/", "scripts/prepare_cocostuff10k.py"),
        (LIPDataModule, "TrainVal_images/", "scripts/prepare_lip.py"),
    ],
)
def test_missing_root_names_layout_and_script(tmp_path, cls, layout_hint, script):
    dm = cls(root=tmp_path / "nowhere", **fx.SMALL)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert layout_hint in message and script in message


def test_folder_missing_root_and_classes(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderDataModule(root=tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"classes\.yaml"):
        FolderDataModule(root=tmp_path)


def test_missing_split_folder(tmp_path):
    root = fx.write_ade20k(tmp_path)
    shutil.rmtree(root / "ADEChallengeData2016" / "images" / "validation")
    dm = fx.datamodule("ade20k", root)
    with pytest.raises(FileNotFoundError, match=r"'val'.*images/validation.*prepare_ade20k\.py"):
        dm.setup("fit")


def test_unknown_split(tmp_path):
    dm = fx.datamodule("ade20k", fx.write_ade20k(tmp_path), val_split="trainval")
    with pytest.raises(ValueError, match=r"split.*'trainval'"):
        dm.setup("validate")


def test_image_without_label_names_both_paths(tmp_path):
    root = fx.write_lip(tmp_path)
    label = root / "TrainVal_parsing_annotations" / "val_segmentations" / "1078_2.png"
    label.unlink()
    dm = fx.datamodule("lip", root)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("validate")
    assert str(label) in str(err.value)
    assert str(root / "TrainVal_images" / "val_images" / "1078_2.jpg") in str(err.value)


@pytest.mark.parametrize(
    ("name", "list_file", "text", "stage", "error", "facts"),
    [  # a listed image that does not exist; a list without ids
        ("cocostuff10k", "imageLists/test.txt", "COCO_val2014_999\n", "validate", FileNotFoundError,
         ["COCO_val2014_999.jpg", "listed in", "test.txt"]),
        ("ade20k", "ADEChallengeData2016/train.txt", "\n", "fit", ValueError,
         ["ade20k", "'train'", "empty", "prepare_ade20k.py"]),
    ],
)  # fmt: skip
def test_bad_id_list_is_named(tmp_path, name, list_file, text, stage, error, facts):
    root = fx.WRITERS[name](tmp_path)
    (root / list_file).write_text(text)
    with pytest.raises(error) as err:
        fx.datamodule(name, root).setup(stage)
    assert all(fact in str(err.value) for fact in facts), str(err.value)


def _ade20k_val_with_label(tmp_path, index, label):
    """The ADE20k fixture's val dataset after replacing label ``index``; returns it and the label's path."""
    root = fx.write_ade20k(tmp_path)
    path = root / "ADEChallengeData2016" / "annotations" / "validation" / f"ADE_val_{index + 1:08d}.png"
    Image.fromarray(label).save(path)
    dm = fx.datamodule("ade20k", root)
    dm.setup("validate")
    return dm.val_dataset, path


def test_size_mismatch_names_file_and_sizes(tmp_path):
    dataset, label = _ade20k_val_with_label(tmp_path, 0, np.ones((30, 20), dtype=np.uint8))
    with pytest.raises(ValueError) as err:
        dataset[0]
    message = str(err.value)
    assert str(label) in message and "40x56" in message and "30x20" in message


def test_label_values_out_of_range(tmp_path):
    values = np.full((37, 53), 5, dtype=np.uint8)
    values[0, :3] = (151, 200, 255)  # 255 is tolerated (ignore); 151 and 200 have no class
    dataset, label = _ade20k_val_with_label(tmp_path, 1, values)
    with pytest.raises(ValueError) as err:
        dataset[1]
    message = str(err.value)
    assert str(label) in message and "151->invalid" in message and "200->invalid" in message
    assert "255->" not in message  # the ignore value is not reported
    # The check can be switched off: invalid ids then become ignore.
    unchecked = fx.datamodule("ade20k", label.parents[3], check_labels=False)
    unchecked.setup("validate")
    mask = unchecked.val_dataset[1]["mask"].numpy()
    assert mask[0, 0] == mask[0, 1] == mask[0, 2] == 255 and mask[1, 0] == 4


def test_cityscapes_train_ids_read_as_label_ids(tmp_path):
    root = fx.write_cityscapes(tmp_path, label_ids=False, train_ids=True)
    # Forcing labelIds when only train-id files exist: the label is missing and named.
    dm = fx.datamodule("cityscapes", root, label_type="labelIds")
    with pytest.raises(FileNotFoundError, match=r"_gtFine_labelIds\.png"):
        dm.setup("validate")


def test_lip_label_out_of_range(tmp_path):
    root = fx.write_lip(tmp_path, layout="flat")
    label = root / "val_segmentations" / "1077_1.png"
    values = np.zeros((40, 56), dtype=np.uint8)
    values[5, 5] = 20
    Image.fromarray(values).save(label)
    dm = fx.datamodule("lip", root)
    dm.setup("validate")
    with pytest.raises(ValueError, match=re.escape(str(label)) + r".*\b20\b"):
        dm.val_dataset[0]


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(OSError, match=re.escape(str(bad))):
        read_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(OSError, match="empty"):
        read_image(empty)


def test_truncated_image_in_dataset(tmp_path):
    root = fx.write_ade20k(tmp_path)
    image = root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000001.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    dm = fx.datamodule("ade20k", root)
    dm.setup("validate")
    with pytest.raises(OSError, match=re.escape(str(image)) + ".*truncated"):
        dm.val_dataset[0]


def test_truncated_png(tmp_path):
    root = fx.write_cityscapes(tmp_path)
    image = next((root / "leftImg8bit" / "val").rglob("*.png"))
    image.write_bytes(image.read_bytes()[:-20])
    with pytest.raises(OSError, match=re.escape(str(image)) + ".*truncated"):
        read_image(image)


def test_unknown_dataset_name_lists_choices():
    with pytest.raises(ValueError) as err:
        build_datamodule("pascal", root="x")
    message = str(err.value)
    assert "'pascal'" in message
    for name in ("ade20k", "cityscapes", "cocostuff10k", "folder", "lip", "synthetic"):
        assert name in message


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"crop_size": [0, 4]}, "crop_size"),
        ({"crop_size": [1, 2, 3]}, "crop_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"val_batch_size": 0}, "val_batch_size"),
        ({"ratio_range": [2.0, 1.0]}, "ratio_range"),
        ({"cat_max_ratio": 0.0}, "cat_max_ratio"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"num_classes": 1}, "num_classes"),
        ({"image_size": 4}, "image_size"),
        ({"num_train": 0}, "num_train"),
    ],
)
def test_bad_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SyntheticDataModule(**kwargs)


def test_bad_dataset_options(tmp_path):
    with pytest.raises(ValueError, match=r"label_type.*'color'"):
        CityscapesDataModule(root=tmp_path, label_type="color")
    with pytest.raises(ValueError, match=r"layout.*'zip'"):
        LIPDataModule(root=tmp_path, layout="zip")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("classes: []\n", "'classes'"),
        ("classes: [a, b]\npalette: [[0, 0, 0]]\n", "'palette'"),
        ("classes: [a, b]\nignore_index: 1\n", "ignore_index 1"),
        ("classes: [a, b]\nmapping: {3: 7}\n", "3 -> 7"),
        ("classes: [a\n", "YAML"),
    ],
)
def test_folder_bad_classes_yaml(tmp_path, text, pattern):
    root = fx.write_folder(tmp_path)
    (root / "classes.yaml").write_text(text)
    with pytest.raises(ValueError, match=pattern) as err:
        FolderDataModule(root=root)
    assert "classes.yaml" in str(err.value)


def test_folder_image_without_mask(tmp_path):
    root = fx.write_folder(tmp_path)
    (root / "masks" / "train" / "train_001.png").unlink()
    dm = fx.datamodule("folder", root)
    with pytest.raises(FileNotFoundError, match=r"train_001\.png.*masks/train/train_001\.png"):
        dm.setup("fit")
