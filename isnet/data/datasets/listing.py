"""Finding image/label pairs on disk: id lists, folder listings and missing-file errors.

sssegmentation reads a split from an id list (`<split>.txt`, one id per line, via pandas) and joins
``<image_dir>/<id><ext>`` and ``<label_dir>/<id><ext>``; we do the same, fall back to listing the image
folder when no list exists, and report a missing file by name instead of failing later in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from isnet.data.datasets.base import SegSample
from isnet.utils.image import IMAGE_SUFFIXES  # home: isnet.utils.image

__all__ = ["read_id_list", "list_pairs", "IMAGE_SUFFIXES"]


def read_id_list(path: Path) -> list[str] | None:
    """Read a split list (one id per line, blank lines skipped); ``None`` if the file does not exist."""
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def list_pairs(
    image_dir: Path,
    label_dir: Path | None,
    ids: Sequence[str] | None = None,
    image_suffix: str = ".jpg",
    label_suffix: str = ".png",
    label_name: Callable[[str], str] | None = None,
    list_file: Path | None = None,
) -> list[SegSample]:
    """Pair every image ``<image_dir>/<id><image_suffix>`` with its label ``<label_dir>/<stem><label_suffix>``.

    Args:
        label_dir: The labels' folder; ``None`` for an unlabelled split (every sample's ``label`` is ``None``).
        ids: Ids (file stems, may contain sub-folders), in the order of the result; ``None`` lists ``image_dir``.
        label_name: Maps an image id to the label file stem (default: the same stem).
        list_file: The id list the ids came from, named in errors.

    Raises:
        FileNotFoundError: An image from the list or a label is missing; the message names both paths.
    """
    if ids is None:
        ids = sorted(p.name[: -len(image_suffix)] for p in image_dir.glob(f"*{image_suffix}"))
    samples = []
    for sample_id in ids:
        image = image_dir / f"{sample_id}{image_suffix}"
        stem = label_name(sample_id) if label_name is not None else sample_id
        label = None if label_dir is None else label_dir / f"{stem}{label_suffix}"
        if not image.is_file():
            source = f" (listed in {list_file})" if list_file is not None else ""
            raise FileNotFoundError(f"Image {image}{source} not found; its label would be {label}.")
        if label is not None and not label.is_file():
            raise FileNotFoundError(f"Image {image} has no label: expected {label}.")
        samples.append(SegSample(image=image, label=label, name=Path(sample_id).name))
    return samples
