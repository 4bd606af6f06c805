"""Images as the network sees them at test time: reading, the test resize's output size and normalisation.

One home for what the datasets (:mod:`isnet.data`) and :class:`isnet.Segmenter` both need, so the inference API
reads and resizes exactly as evaluation does without importing the data stack (Lightning, albumentations).
Images are decoded with OpenCV (BGR, EXIF orientation applied, exactly as ``cv2.imread`` does, the reference's
reader) and returned as RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "check_not_truncated", "normalize", "read_image", "rescaled_size"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"


def check_not_truncated(path: Path, data: bytes) -> None:
    """Raise if a JPEG/PNG byte stream misses its end marker.

    OpenCV decodes a truncated JPEG into a partly grey image with only a warning on stderr, so a cut-off
    download would silently train on garbage. Checking the end marker costs nothing.
    """
    if data[:2] == _JPEG_SOI:
        # Some encoders append padding after EOI; look in the tail rather than at the last two bytes.
        if _JPEG_EOI not in data[-4096:]:
            raise OSError(f"Cannot read image {path}: the JPEG file is truncated (no end-of-image marker).")
    elif data[:8] == _PNG_SIGNATURE:
        if _PNG_IEND not in data[-64:]:
            raise OSError(f"Cannot read image {path}: the PNG file is truncated (no IEND chunk).")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 RGB array exactly as ``cv2.imread`` decodes it.

    ``cv2.imdecode`` with ``IMREAD_COLOR`` applies the EXIF orientation like ``cv2.imread`` (the
    reference's reader), so pixels match the reference; reading the bytes ourselves lets us detect
    truncated files and non-ASCII paths. Raises ``FileNotFoundError``, or ``OSError`` for an empty,
    truncated or undecodable file.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}")
    data = path.read_bytes()
    if not data:
        raise OSError(f"Cannot read image {path}: the file is empty.")
    check_not_truncated(path, data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"Cannot read image {path}: OpenCV could not decode it (corrupt or not an image).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def rescaled_size(height: int, width: int, target: Sequence[int], keep_ratio: bool) -> tuple[int, int]:
    """Output ``(h, w)`` of sssegmentation's ``Resize`` to ``target = (A, B)`` (``pipelines/transforms.py``).

    With ``keep_ratio`` the image is rescaled by ``s = min(max(target)/max(h, w), min(target)/min(h, w))`` to
    ``(int(h*s + 0.5), int(w*s + 0.5))``; without it the image becomes the target itself, long side along the
    image's long side (a square for LIP).
    """
    if keep_ratio:
        scale = min(max(target) / max(height, width), min(target) / min(height, width))
        # At least 1 pixel: for extreme aspect ratios (e.g. 1x4097) the reference rounds a side to 0 and crashes.
        return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))
    # The reference puts the long target side along the image's long side (portrait if h > w).
    return (max(target), min(target)) if height > width else (min(target), max(target))


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """An RGB uint8 (H, W, 3) image as the network's input: ``(pixel - mean) / std`` (0-255 units), (3, H, W)."""
    mean_, std_ = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return torch.from_numpy(((image.astype(np.float32) - mean_) / std_).transpose(2, 0, 1).copy())
