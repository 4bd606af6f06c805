"""Fuzzed files through the data path: every input is either read correctly or rejected with a clear error.

Hypothesis writes image and label files of many kinds (grey, RGB, RGBA, grey+alpha, 16-bit, palette, 1-bit
PNGs; JPEGs with every EXIF orientation; BMP, TIFF, lossless WebP; 1x1 up to a few dozen pixels, plus a 12 MP
photo), label maps with stray values, images and labels of different sizes, and corrupted bytes. They go
through :func:`isnet.data.datasets.base.read_image` / ``read_label`` and the ``folder`` dataset
(:class:`isnet.data.FolderDataModule`, train and eval transforms). Expected pixels come from an independent
computation (numpy on the written arrays, or PIL for JPEG decoding); errors must name the file. DataLoader
workers that hit a bad file or die must surface the problem in the main process.
"""

from __future__ import annotations

import io
import os
import re
import signal
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from isnet.data import FolderDataModule
from isnet.data.datasets.base import SegFileDataset, SegSample, read_image, read_label
from isnet.meta import IMAGENET_MEAN_255 as IMAGENET_MEAN
from isnet.meta import IMAGENET_STD_255 as IMAGENET_STD

FUZZ = settings(
    deadline=None,
    max_examples=100,
    derandomize=True,  # the same cases on every run and machine; raise max_examples locally to search wider
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

LOSSLESS_KINDS = [
    "png_gray8",
    "png_gray16",
    "png_rgb8",
    "png_rgb16",
    "png_rgba8",
    "png_rgba16",
    "png_gray_alpha",
    "png_palette",
    "png_palette_transparent",
    "png_1bit",
    "bmp",
    "tiff",
    "webp_lossless",
]
JPEG_KINDS = ["jpeg_rgb", "jpeg_gray", "jpeg_exif"]
IMAGE_KINDS = LOSSLESS_KINDS + JPEG_KINDS
SIDE = st.integers(1, 40)
SEED = st.integers(0, 2**16)
SIZE_AND_SEED = {"h": SIDE, "w": SIDE, "seed": SEED}  # a file's random size and content


def _banded_rgb(rng: np.random.Generator, h: int, w: int, depth: int = 8) -> np.ndarray:
    """Random RGB whose channels live in separate value bands, so a channel swap can never go unnoticed."""
    top = 256 if depth == 8 else 65536
    third = top // 3
    bands = [rng.integers(k * third, (k + 1) * third, size=(h, w)) for k in range(3)]
    return np.stack(bands, axis=-1).astype(np.uint8 if depth == 8 else np.uint16)


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    """Ramps (red along x, green along y): JPEG keeps them nearly exact and any rotation or flip shows."""
    yy, xx = np.mgrid[0:h, 0:w]
    red = (40 + 170 * xx / max(w - 1, 1)).astype(np.uint8)
    green = (40 + 170 * yy / max(h - 1, 1)).astype(np.uint8)
    return np.stack([red, green, np.full((h, w), 128, np.uint8)], axis=-1)


def write_image(
    path_stem: Path, kind: str, h: int, w: int, seed: int, orientation: int = 1
) -> tuple[Path, np.ndarray]:
    """Write an image file of ``kind``; return its path and the RGB uint8 array it must be read as.

    For JPEGs the expectation is PIL's decode with the EXIF orientation applied (a different decoder than
    OpenCV's, so the comparison has a small tolerance); for the lossless kinds it is computed from the array.
    """
    rng = np.random.default_rng(seed)
    if kind == "png_gray8":
        gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
        path = path_stem.with_suffix(".png")
        Image.fromarray(gray, "L").save(path)
        return path, np.repeat(gray[..., None], 3, axis=2)
    if kind == "png_gray16":
        gray = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        path = path_stem.with_suffix(".png")
        cv2.imwrite(str(path), gray)
        # OpenCV (hence the reference) keeps the high byte of 16-bit samples.
        return path, np.repeat((gray >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if kind in ("png_rgb8", "png_rgba8"):
        rgb = _banded_rgb(rng, h, w)
        path = path_stem.with_suffix(".png")
        if kind == "png_rgb8":
            Image.fromarray(rgb, "RGB").save(path)
        else:
            alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
            Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(path)
        return path, rgb  # alpha is dropped, never blended
    if kind in ("png_rgb16", "png_rgba16"):
        rgb = _banded_rgb(rng, h, w, depth=16)
        path = path_stem.with_suffix(".png")
        bgr = rgb[..., ::-1]
        if kind == "png_rgba16":
            bgr = np.concatenate([bgr, rng.integers(0, 65536, (h, w, 1), dtype=np.uint16)], axis=-1)
        cv2.imwrite(str(path), np.ascontiguousarray(bgr))
        return path, (rgb >> 8).astype(np.uint8)
    if kind == "png_gray_alpha":
        la = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
        path = path_stem.with_suffix(".png")
        Image.fromarray(la, "LA").save(path)
        return path, np.repeat(la[..., :1], 3, axis=2)
    if kind in ("png_palette", "png_palette_transparent"):
        n = int(rng.integers(1, 17))
        palette = rng.integers(0, 256, (n, 3), dtype=np.uint8)
        index = rng.integers(0, n, (h, w), dtype=np.uint8)
        image = Image.fromarray(index, "P")
        image.putpalette(palette.ravel().tolist())
        path = path_stem.with_suffix(".png")
        image.save(path, **({"transparency": 0} if kind == "png_palette_transparent" else {}))
        return path, palette[index]
    if kind == "png_1bit":
        bits = rng.integers(0, 2, (h, w), dtype=np.uint8)
        path = path_stem.with_suffix(".png")
        Image.fromarray(bits * 255, "L").convert("1").save(path)
        return path, np.repeat((bits * 255)[..., None], 3, axis=2)
    if kind in ("bmp", "tiff", "webp_lossless"):
        rgb = _banded_rgb(rng, h, w)
        suffix = {"bmp": ".bmp", "tiff": ".tif", "webp_lossless": ".webp"}[kind]
        path = path_stem.with_suffix(suffix)
        Image.fromarray(rgb, "RGB").save(path, **({"lossless": True} if kind == "webp_lossless" else {}))
        return path, rgb
    # JPEGs: smooth content, then PIL's decode with the EXIF orientation applied is the expectation.
    rgb = _smooth_rgb(h, w)
    path = path_stem.with_suffix(".jpg")
    image = Image.fromarray(rgb, "RGB")
    if kind == "jpeg_gray":
        image = image.convert("L")
    exif = Image.Exif()
    if kind == "jpeg_exif":
        exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif)
    with Image.open(path) as decoded:
        expected = np.asarray(ImageOps.exif_transpose(decoded).convert("RGB"))
    return path, expected


def _assert_image_matches(path: Path, kind: str, got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, (path, got.shape)
    assert got.shape == expected.shape, (path, kind, got.shape, expected.shape)
    if kind in JPEG_KINDS:
        # Two JPEG decoders differ by a few levels at most; a wrong orientation differs by ~100.
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.mean() < 4 and diff.max() <= 48, (path, kind, diff.mean(), diff.max())
    else:
        assert np.array_equal(got, expected), (path, kind)


@FUZZ
@given(kind=st.sampled_from(IMAGE_KINDS), orientation=st.integers(1, 8), **SIZE_AND_SEED)
def test_read_image_kinds(kind: str, h: int, w: int, seed: int, orientation: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, expected = write_image(Path(tmp) / "img", kind, h, w, seed, orientation)
        got = read_image(path)
        _assert_image_matches(path, kind, got, expected)
        # Exactly what cv2.imread (the reference's reader) returns, in RGB order.
        assert np.array_equal(got, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.mark.parametrize("orientation", [1, 6])  # all 8 orientations run in the fuzzed test above
def test_large_exif_rotated_photo(tmp_path: Path, orientation: int) -> None:
    """A 12 MP camera JPEG is read at its displayed orientation."""
    path, expected = write_image(tmp_path / "photo", "jpeg_exif", 3000, 4000, 0, orientation)
    got = read_image(path)
    _assert_image_matches(path, "jpeg_exif", got, expected)
    assert got.shape == ((3000, 4000, 3) if orientation == 1 else (4000, 3000, 3))


LABEL_MODES = ["L", "P", "I;16", "1", "RGB", "RGBA", "LA"]


@FUZZ
@given(mode=st.sampled_from(LABEL_MODES), high=st.sampled_from([3, 256, 65536]), **SIZE_AND_SEED)
def test_read_label_modes(mode: str, h: int, w: int, seed: int, high: int) -> None:
    """Single-channel labels come back as their stored indices; colour labels are refused by name."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "label.png"
        if mode == "I;16":
            values = rng.integers(0, high, (h, w)).astype(np.uint16)
            cv2.imwrite(str(path), values)
        elif mode == "1":
            values = rng.integers(0, 2, (h, w)).astype(np.uint8)
            Image.fromarray(values * 255, "L").convert("1").save(path)
        elif mode in ("L", "P"):
            values = rng.integers(0, min(high, 256), (h, w)).astype(np.uint8)
            image = Image.fromarray(values, mode)
            if mode == "P":
                image.putpalette(rng.integers(0, 256, 768).tolist())
            image.save(path)
        else:
            channels = {"RGB": 3, "RGBA": 4, "LA": 2}[mode]
            Image.fromarray(rng.integers(0, 256, (h, w, channels), dtype=np.uint8), mode).save(path)
            with pytest.raises(ValueError, match=re.escape(str(path)) + f".*{mode!r}"):
                read_label(path)
            return
        label = read_label(path)
        assert label.shape == (h, w) and np.issubdtype(label.dtype, np.integer)
        assert np.array_equal(label.astype(np.int64), values.astype(np.int64))


CORRUPTIONS = ["flip_bits", "truncate", "truncate_keep_tail", "garbage", "empty", "zero_fill"]


def _corrupt(data: bytes, how: str, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    if how == "flip_bits":
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 8))):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(buf)
    if how == "truncate":
        return bytes(buf[: int(rng.integers(0, len(buf)))])
    if how == "truncate_keep_tail":  # a cut in the middle that keeps the end marker: passes the cheap check
        cut = int(rng.integers(0, max(len(buf) - 16, 1)))
        return bytes(buf[:cut] + buf[-16:])
    if how == "garbage":
        return rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
    if how == "empty":
        return b""
    return bytes(len(buf))  # zero_fill: a pre-allocated file that was never written


@FUZZ
@given(
    kind=st.sampled_from(["png_rgb8", "png_gray8", "png_palette", "jpeg_rgb", "jpeg_exif"]),
    how=st.sampled_from(CORRUPTIONS),
    seed=SEED,
    as_label=st.booleans(),
)
def test_corrupt_files_are_read_or_refused_by_name(kind: str, how: str, seed: int, as_label: bool) -> None:
    """Corrupted bytes either still decode to a valid array or raise OSError/ValueError naming the file."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, _ = write_image(Path(tmp) / "src", kind, 24, 20, seed, orientation=6)
        path = Path(tmp) / f"bad{src.suffix}"
        path.write_bytes(_corrupt(src.read_bytes(), how, rng))
        reader = read_label if as_label else read_image
        try:
            out = reader(path)
        except (OSError, ValueError) as err:
            event(f"refused: {type(err).__name__}")
            assert str(path) in str(err)
            return
        event("still decodable")
        assert how not in ("empty", "zero_fill", "garbage") or path.stat().st_size > 0
        assert out.dtype.kind in "uib" and out.size > 0
        assert out.ndim == (2 if as_label else 3)


# ----------------------------------------------------------------------------------------------------------
# The folder dataset, end to end

K = 3
MAPPED = {10: 0, 20: 1, 30: 2}  # raw -> class, with raw 0 meaning ignore, in the "mapping" variant
CLASSES_PLAIN = "classes: [a, b, c]\n"
CLASSES_MAPPED = "classes: [a, b, c]\nignore_index: 0\nmapping: {10: 0, 20: 1, 30: 2}\n"
SCALE, CROP = (64, 32), (24, 32)


def _expected_test_size(h: int, w: int) -> tuple[int, int]:
    """The reference keep-ratio test resize, computed here independently (at least one pixel per side)."""
    s = min(max(SCALE) / max(h, w), min(SCALE) / min(h, w))
    return max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))


@st.composite
def folder_cases(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(IMAGE_KINDS))
    h, w = draw(SIDE), draw(SIDE)
    orientation = draw(st.integers(1, 8))
    mapped = draw(st.booleans())
    valid = sorted(MAPPED) + [0] if mapped else [0, 1, 2, 255]
    values = draw(st.lists(st.sampled_from(valid), min_size=1, max_size=4, unique=True))
    stray = draw(st.one_of(st.none(), st.integers(0, 255).filter(lambda v: v not in valid)))
    size_delta = draw(st.sampled_from([(0, 0), (0, 0), (0, 0), (1, 0), (0, -1), (3, 5)]))
    label_mode = draw(st.sampled_from(["L", "P", "I;16"]))
    return dict(
        kind=kind, h=h, w=w, orientation=orientation, mapped=mapped, values=values, stray=stray,
        size_delta=size_delta, label_mode=label_mode, seed=draw(SEED),
    )  # fmt: skip


def _write_label(path: Path, label: np.ndarray, mode: str) -> None:
    if mode == "I;16":
        cv2.imwrite(str(path), label.astype(np.uint16))
        return
    image = Image.fromarray(label.astype(np.uint8), mode)
    if mode == "P":
        image.putpalette(list(range(256)) * 3)
    image.save(path)


@FUZZ
@given(case=folder_cases())
def test_folder_dataset_reads_or_rejects(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "classes.yaml").write_text(CLASSES_MAPPED if case["mapped"] else CLASSES_PLAIN)
        for split in ("train", "val"):
            (root / "images" / split).mkdir(parents=True)
            (root / "masks" / split).mkdir(parents=True)
        image_path, rgb = write_image(
            root / "images" / "train" / "x",
            case["kind"],
            case["h"],
            case["w"],
            case["seed"],
            case["orientation"],
        )
        (root / "images" / "val" / image_path.name).write_bytes(image_path.read_bytes())
        h, w = rgb.shape[:2]  # the displayed size (EXIF orientation applied)
        lh, lw = h + case["size_delta"][0], w + case["size_delta"][1]
        if lh < 1 or lw < 1:
            lh, lw = h + 1, w
        label = rng.choice(np.array(case["values"]), size=(lh, lw))
        if case["stray"] is not None:
            label[rng.integers(0, lh), rng.integers(0, lw)] = case["stray"]
        for split in ("train", "val"):
            _write_label(root / "masks" / split / "x.png", label, case["label_mode"])

        dm = FolderDataModule(
            root=root,
            crop_size=CROP,
            scale=SCALE,
            test_scale=SCALE,
            batch_size=1,
            num_workers=0,
            seed=case["seed"],
        )
        dm.setup("fit")
        label_path = root / "masks" / "val" / "x.png"
        if (lh, lw) != (h, w):
            event("rejected: image and label sizes differ")
            with pytest.raises(ValueError) as info:
                dm.val_dataset[0]
            assert str(root / "images" / "val" / image_path.name) in str(info.value)
            assert str(label_path) in str(info.value) and f"{lh}x{lw}" in str(info.value)
            return
        if case["stray"] is not None:
            event("rejected: stray label value")
            with pytest.raises(ValueError) as info:
                dm.val_dataset[0]
            assert str(label_path) in str(info.value) and str(case["stray"]) in str(info.value)
            return

        event("read: train and eval samples checked")
        if case["mapped"]:
            expected_mask = np.vectorize(lambda v: MAPPED.get(int(v), 255))(label)
        else:
            expected_mask = label.astype(np.int64)
        val = dm.val_dataset[0]
        assert val["mask"].dtype == torch.int64 and np.array_equal(val["mask"].numpy(), expected_mask)
        th, tw = _expected_test_size(h, w)
        assert val["image"].dtype == torch.float32 and tuple(val["image"].shape) == (3, th, tw)
        # De-normalised, the test image is the resized RGB image (channel order and values).
        resized = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        restored = val["image"].numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
        assert np.abs(restored - resized).max() < 0.01

        train = dm.train_dataset[0]
        assert tuple(train["image"].shape) == (3, *CROP) and torch.isfinite(train["image"]).all()
        assert tuple(train["mask"].shape) == CROP and train["mask"].dtype == torch.int64
        allowed = set(np.unique(expected_mask).tolist()) | {255}  # 255 also pads the crop
        assert set(train["mask"].unique().tolist()) <= allowed


def test_extreme_aspect_ratio_survives_the_resize(tmp_path: Path) -> None:
    """A 1x4097 strip: the reference's keep-ratio resize rounds its height to 0; here it keeps one pixel."""
    from isnet.data.transforms import build_test_transforms, build_train_transforms

    strip = np.full((1, 4097, 3), 50, np.uint8)
    out = build_test_transforms(scale=(2048, 512), keep_ratio=True)(image=strip)["image"]
    assert tuple(out.shape) == (3, 1, 2048)
    train = build_train_transforms(scale=(2048, 512), crop_size=(32, 32), ratio_range=(0.5, 0.5))
    sample = train(image=strip, mask=np.zeros((1, 4097), np.uint8))
    assert tuple(sample["image"].shape) == (3, 32, 32) and set(sample["mask"].unique().tolist()) <= {0, 255}


# ----------------------------------------------------------------------------------------------------------
# DataLoader workers never die silently


def _folder_with(tmp_path: Path, n: int = 6) -> Path:
    root = tmp_path / "data"
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    (root / "images" / "val").mkdir(parents=True)
    (root / "masks" / "val").mkdir(parents=True)
    (root / "classes.yaml").write_text(CLASSES_PLAIN)
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                root / "images" / split / f"s{i}.png"
            )
            Image.fromarray(rng.integers(0, 3, (20, 24), dtype=np.uint8)).save(
                root / "masks" / split / f"s{i}.png"
            )
    return root


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


WORKER_FAULTS = {
    # name: (file to damage relative to root, new bytes or None to delete, error type, message pattern)
    "truncated_image": ("images/train/s3.png", lambda b: b[: len(b) // 2], OSError, "truncated"),
    "garbage_image": ("images/train/s3.png", lambda b: b"\x89PNG\r\n\x1a\n" + b"\0" * 64 + b"IEND", OSError, "could not decode"),
    "empty_label": ("masks/train/s3.png", lambda b: b"", OSError, "empty"),
    "colour_label": ("masks/train/s3.png", lambda b: _png_bytes(np.zeros((20, 24, 3), np.uint8)), ValueError, "single-channel"),
    "stray_label": ("masks/train/s3.png", lambda b: _png_bytes(np.full((20, 24), 7, np.uint8)), ValueError, "outside"),
    "resized_label": ("masks/train/s3.png", lambda b: _png_bytes(np.zeros((21, 24), np.uint8)), ValueError, "sizes differ"),
    "deleted_image": ("images/train/s3.png", None, FileNotFoundError, "not found"),
}  # fmt: skip


@pytest.mark.parametrize("fault", sorted(WORKER_FAULTS))
def test_worker_error_reaches_main_process_with_the_file(tmp_path: Path, fault: str) -> None:
    root = _folder_with(tmp_path)
    dm = FolderDataModule(
        root=root, crop_size=(16, 16), scale=(32, 24), batch_size=2, num_workers=2, seed=0, pin_memory=False
    )
    dm.setup("fit")  # list the files first, then damage one (as a disk or a sync job would)
    rel, damage, error, pattern = WORKER_FAULTS[fault]
    target = root / rel
    if damage is None:
        target.unlink()
    else:
        target.write_bytes(damage(target.read_bytes()))
    loader = dm.train_dataloader()
    assert loader.num_workers == 2
    with pytest.raises(error, match=pattern) as info:
        _drain(loader)
    assert str(target) in str(info.value)
    assert "DataLoader worker process" in str(info.value)  # raised in the main process, from a worker


def _drain(loader: torch.utils.data.DataLoader) -> None:
    """Iterate a loader to the end; always stop its workers (persistent workers otherwise linger ~10 s)."""
    iterator = iter(loader)
    try:
        for _ in iterator:
            pass
    finally:
        iterator._shutdown_workers()


def _die_on_s3(path: Path) -> np.ndarray:
    """Label reader that is killed (as by the OOM killer) when it reaches sample s3."""
    if path.stem == "s3":
        os.kill(os.getpid(), signal.SIGKILL)
    return read_label(path)


def test_killed_worker_is_reported_not_hung(tmp_path: Path) -> None:
    root = _folder_with(tmp_path)
    samples = [
        SegSample(root / "images" / "train" / f"s{i}.png", root / "masks" / "train" / f"s{i}.png", f"s{i}")
        for i in range(6)
    ]
    dataset = SegFileDataset(samples, num_classes=K, label_reader=_die_on_s3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, timeout=120)
    with pytest.raises(
        RuntimeError,
        match=r"DataLoader worker \(pid\(?s?\)? ?\d+\)? (is killed by signal|exited unexpectedly)",
    ):
        _drain(loader)
