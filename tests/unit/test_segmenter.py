"""``isnet.Segmenter``: every input form gives the model-level prediction; batching, files, video and errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import isnet
from isnet import ISNet, Segmenter
from isnet.inference import InferenceConfig, run_inference
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.meta.datasets import LIP_FLIP_PAIRS
from isnet.meta.recipes import RECIPES
from isnet.utils.image import normalize
from isnet.viz import colorize, overlay

SIZES = ((30, 40), (17, 23), (30, 40))


@pytest.fixture(scope="module")
def model() -> ISNet:
    torch.manual_seed(0)
    return ISNet("resnet18d", num_classes=3, feats_channels=32, transform_channels=16).eval()


@pytest.fixture(scope="module")
def segmenter(model: ISNet) -> Segmenter:
    return Segmenter(model, device="cpu")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in SIZES]


def expected(segmenter: Segmenter, rgb: np.ndarray, config: InferenceConfig | None = None) -> torch.Tensor:
    """Scores of ``run_inference`` on the normalised image, on the segmenter's network."""
    x = normalize(rgb, IMAGENET_MEAN_255, IMAGENET_STD_255)[None]
    return run_inference(segmenter.model.predict_logits, x, rgb.shape[:2], config or segmenter.config)


def test_every_input_form_gives_the_model_prediction(
    segmenter: Segmenter, model: ISNet, images: list[np.ndarray], tmp_path: Path
) -> None:
    rgb = images[0]
    target = expected(segmenter, rgb).argmax(1)[0].numpy()
    (tmp_path / "a").mkdir()
    Image.fromarray(rgb).save(tmp_path / "a" / "x.png")
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=2)
    for form in (rgb, rgba, Image.fromarray(rgb), Image.fromarray(rgba), tmp_path / "a" / "x.png",
                 str(tmp_path / "a" / "x.png"), str(tmp_path / "a" / "*.png"), tmp_path / "a"):  # fmt: skip
        (prediction,) = segmenter(form)
        assert prediction.mask.shape == rgb.shape[:2] and prediction.mask.dtype == np.int64
        np.testing.assert_array_equal(prediction.mask, target)
    grey = rgb[:, :, 0]
    for form in (grey, grey[:, :, None], Image.fromarray(grey)):
        (prediction,) = segmenter(form)
        np.testing.assert_array_equal(
            prediction.mask, expected(segmenter, np.dstack([grey] * 3)).argmax(1)[0]
        )
    # probabilities: the soft-max of the scores, and those of the plain network within rounding
    (prediction,) = segmenter(rgb, return_probs=True)
    x = normalize(rgb, IMAGENET_MEAN_255, IMAGENET_STD_255)[None]
    with torch.inference_mode():
        plain = run_inference(model.predict_logits, x, rgb.shape[:2], segmenter.config).softmax(1)[0]
    assert prediction.probs.shape == (3, *rgb.shape[:2])
    np.testing.assert_allclose(prediction.probs, plain.numpy(), atol=1e-4)
    np.testing.assert_allclose(prediction.probs.sum(0), 1.0, atol=1e-5)


def test_lists_and_batches_equal_one_by_one(
    segmenter: Segmenter, images: list[np.ndarray], tmp_path: Path
) -> None:
    paths = []
    for i, rgb in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rgb).save(paths[-1])
    alone = [segmenter(rgb, return_probs=True)[0] for rgb in images]
    for index, rgb in enumerate(images):
        np.testing.assert_array_equal(alone[index].mask, expected(segmenter, rgb).argmax(1)[0])
    for batch_size in (2, 3, 8):
        together = segmenter([paths[0], images[1], str(paths[2])], batch_size=batch_size, return_probs=True)
        assert [p.path for p in together] == [paths[0], None, paths[2]]
        assert [p.name for p in together] == ["0", "image_1", "2"]
        for one, many in zip(alone, together):
            np.testing.assert_array_equal(one.mask, many.mask)
            np.testing.assert_allclose(one.probs, many.probs, atol=1e-5)


def test_slide_mode_and_explicit_settings(model: ISNet, images: list[np.ndarray]) -> None:
    slide = Segmenter(model, "cpu", mode="slide", crop_size=16)
    assert slide.config == InferenceConfig("slide", crop_size=(16, 16), stride=(10, 10))
    tta = InferenceConfig(scales=(0.75, 1.0), flip=True, use_probs=True)
    custom = Segmenter(model, "cpu", inference=tta)
    for segmenter in (slide, custom):
        for rgb in images[:2]:
            (prediction,) = segmenter(rgb, return_probs=True)
            scores = expected(segmenter, rgb)
            np.testing.assert_array_equal(prediction.mask, scores.argmax(1)[0])
    np.testing.assert_allclose(prediction.probs, scores[0].numpy(), atol=1e-6)  # use_probs: the mean probs


def test_recipe_settings_come_from_the_model(images: list[np.ndarray]) -> None:
    """A model naming a recipe gets its dataset's test resize, flip pairs and ms+flip settings."""
    from isnet.data.transforms import build_test_transforms

    lip = RECIPES["isnet_r50_d8_lip"]
    model = ISNet("resnet18d", num_classes=20, feats_channels=32, transform_channels=16,
                  meta={"recipe": lip.experiment}).eval()  # fmt: skip
    segmenter = Segmenter(model, "cpu", mode="ms_flip")
    assert segmenter.config == lip.ms_flip and segmenter.flip_pairs == list(LIP_FLIP_PAIRS)
    rgb = images[1]
    x = segmenter.preprocess(rgb)
    reference = build_test_transforms(scale=(473, 473), keep_ratio=False)(image=rgb)["image"]
    assert x.shape == reference.shape == (3, 473, 473)
    torch.testing.assert_close(x, reference.float(), atol=1e-5, rtol=0)
    (prediction,) = segmenter(rgb)
    scores = run_inference(
        segmenter.model.predict_logits, x[None], rgb.shape[:2], lip.ms_flip, LIP_FLIP_PAIRS
    )
    np.testing.assert_array_equal(prediction.mask, scores.argmax(1)[0])


def test_checkpoint_files_and_names(model: ISNet, images: list[np.ndarray], tmp_path: Path) -> None:
    path = isnet.save_checkpoint(model, tmp_path / "tiny.pth")
    from_file = Segmenter(path, "cpu")(images[0])[0]
    np.testing.assert_array_equal(from_file.mask, Segmenter(model, "cpu")(images[0])[0].mask)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.pth"))):
        Segmenter(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="not_a_zoo_name"):
        Segmenter("not_a_zoo_name")


def test_files_are_written_and_never_overwritten(
    segmenter: Segmenter, images: list[np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    predictions = segmenter(images[:2], output_dir=out, alpha=0.3)
    for prediction in predictions:
        files = prediction.files
        assert (
            set(files) == {"mask", "overlay", "labels"}
            and files["mask"] == out / f"{prediction.name}_mask.png"
        )
        np.testing.assert_array_equal(np.asarray(Image.open(files["labels"])), prediction.mask)
        np.testing.assert_array_equal(
            np.asarray(Image.open(files["mask"])), colorize(prediction.mask, segmenter.palette)
        )
        blended = overlay(prediction.image, prediction.mask, segmenter.palette, 0.3)
        np.testing.assert_array_equal(np.asarray(Image.open(files["overlay"])), blended)
        np.testing.assert_array_equal(prediction.overlay(0.3), blended)
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    (tmp_path / "mine").mkdir()
    mine = tmp_path / "mine" / "image_1_overlay.png"
    mine.write_bytes(b"a file of the user")
    for folder in (out, tmp_path / "mine"):
        with pytest.raises(FileExistsError, match="already exists"):
            segmenter(images[:2], output_dir=folder)
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert (
        mine.read_bytes() == b"a file of the user" and not (tmp_path / "mine" / "image_0_mask.png").exists()
    )
    segmenter(images[:2], output_dir=out, overwrite=True, labels=False)


def _write_video(path: Path, frames: list[np.ndarray], fourcc: str) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _read_video(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize("suffix,fourcc", [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_video_gives_an_overlay_video(segmenter: Segmenter, tmp_path: Path, suffix: str, fourcc: str) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(5)]
    source = tmp_path / f"in{suffix}"
    _write_video(source, frames, fourcc)
    out = tmp_path / f"out{suffix}"
    result = segmenter.predict_video(source, out, batch_size=2, progress=False)
    written = _read_video(out)
    assert result.frames == len(written) == 5 and result.size == (32, 48) and result.fps > 0
    assert all(frame.shape == (32, 48, 3) for frame in written)
    # the first overlay frame is the prediction on the decoded first frame (up to the codec's loss)
    decoded = cv2.cvtColor(_read_video(source)[0], cv2.COLOR_BGR2RGB)
    expected_frame = segmenter(decoded)[0].overlay()
    assert np.abs(cv2.cvtColor(written[0], cv2.COLOR_BGR2RGB).astype(int) - expected_frame).mean() < 12
    with pytest.raises(FileExistsError, match=re.escape(str(out))):
        segmenter.predict_video(source, out, progress=False)


def test_bad_inputs_name_the_input(segmenter: Segmenter, model: ISNet, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for missing in (tmp_path / "nothing.png", tmp_path / "nothing*.jpg", tmp_path / "empty"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
            segmenter(missing)
    cases = {
        "dtype float32": np.zeros((8, 8, 3), np.float32),
        r"\(8, 8, 2\)": np.zeros((8, 8, 2), np.uint8),
        "input 1": [np.zeros((8, 8, 3), np.uint8), torch.zeros(3, 8, 8)],
        "no input": [],
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            segmenter(bad)
    with pytest.raises(ValueError, match="batch_size"):
        segmenter(np.zeros((8, 8, 3), np.uint8), batch_size=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        Segmenter(model, "cpu", mode="fast")
    with pytest.raises(ValueError, match="ms_flip.*inference=InferenceConfig"):
        Segmenter(model, "cpu", mode="ms_flip")
    with pytest.raises(ValueError, match="crop_size"):
        Segmenter(model, "cpu", mode="slide")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "clip.mp4"))):
        segmenter.predict_video(tmp_path / "clip.mp4", tmp_path / "out.mp4")
    (tmp_path / "clip.avi").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="suffix"):
        segmenter.predict_video(tmp_path / "clip.avi", tmp_path / "out.gif")
    with pytest.raises(OSError, match=re.escape(str(tmp_path / "clip.avi"))):
        segmenter.predict_video(tmp_path / "clip.avi", tmp_path / "out.avi", progress=False)
    assert not (tmp_path / "out.avi").exists()


def test_segmenter_imports_neither_lightning_nor_hydra() -> None:
    code = (
        "import sys, isnet.segmenter\n"
        "print([m for m in ('pytorch_lightning', 'lightning', 'hydra', 'albumentations', 'isnet.data')"
        " if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_hugging_face_folder_is_a_model_source(
    model: ISNet, segmenter: Segmenter, images: list[np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    isnet.save_pretrained(model, tmp_path / "shared")
    from_folder = Segmenter(tmp_path / "shared", device="cpu")
    for rgb in images:
        np.testing.assert_array_equal(from_folder(rgb)[0].mask, segmenter(rgb)[0].mask)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        Segmenter(tmp_path / "missing.ckpt")
