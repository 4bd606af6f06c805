"""Prepare COCO-Stuff-10k: unzip the official release and convert the ``.mat`` labels to PNG.

The PNGs hold the raw ids of ``S`` (0 = unlabeled, 1..182, 255) unchanged, in ``annotations_png/<id>.png``;
``isnet.data.COCOStuff10kDataModule`` prefers them because they load far faster than ``.mat`` files and
applies the same raw id - 1 mapping to either. Layout::

    <root>/images/<id>.jpg  <root>/annotations/<id>.mat  <root>/imageLists/{train,test}.txt
    <root>/annotations_png/<id>.png   (written here)

Idempotent; existing files that differ are kept unless ``--force``.

Usage: python scripts/prepare_cocostuff10k.py --zip cocostuff-10k-v1.1.zip --root data/COCOStuff10k
"""

from __future__ import annotations

from isnet.cli import one_line_errors
from isnet.data.datasets.base import read_label
from isnet.data.datasets.prepare import console, prepare_parser, progress, unzip_requested, write_label_png
from isnet.errors import DataError


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Run the preparation; returns the process exit code."""
    args = prepare_parser(__doc__, "data/COCOStuff10k", archive="cocostuff-10k-v1.1.zip").parse_args(argv)
    report = unzip_requested(args)
    mat_dir = args.root / "annotations"
    if not mat_dir.is_dir():
        raise DataError(f"{mat_dir} not found; expected annotations/<id>.mat under {args.root} (pass --zip)")
    sources = sorted(mat_dir.glob("*.mat"))
    for src in progress(sources, len(sources), "mat -> png"):
        label = read_label(src, mat_key="S")
        if label.min() < 0 or label.max() > 255:
            raise DataError(f"{src}: raw ids outside 0..255 ({label.min()}..{label.max()}), not converted")
        report.merge(
            write_label_png(args.root / "annotations_png" / f"{src.stem}.png", label, force=args.force)
        )
    console.print(report.summary(f"COCO-Stuff-10k at {args.root}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
