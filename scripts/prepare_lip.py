"""Prepare LIP: unpack the official ``TrainVal_images.zip`` and ``TrainVal_parsing_annotations.zip``.

``--layout official`` (default) keeps the archives' folders::

    <root>/TrainVal_images/{train,val}_images/<id>.jpg   <root>/TrainVal_images/{train,val}_id.txt
    <root>/TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png

``--layout flat`` writes the reference's flattened layout instead::

    <root>/{train,val}_images/  <root>/{train,val}_segmentations/  <root>/{train,val}_id.txt

Missing id lists are written from the image folders. ``isnet.data.LIPDataModule`` reads both layouts.
Idempotent; existing files that differ are kept unless ``--force``.

Usage: python scripts/prepare_lip.py --zips ~/Downloads/LIP --root data/LIP
"""

from __future__ import annotations

from pathlib import Path

from isnet.cli import one_line_errors
from isnet.data.datasets.lip import find_lip_dirs
from isnet.data.datasets.prepare import PrepareReport, console, extract_zip, prepare_parser, write_id_list
from isnet.errors import DataError

ZIPS = ("TrainVal_images.zip", "TrainVal_parsing_annotations.zip")
_TOP = ("TrainVal_images", "TrainVal_parsing_annotations")


def flat_name(member: str) -> str | None:
    """Map an archive member to the flat layout (drop the ``TrainVal_*`` folders); ``None`` skips it."""
    parts = [p for p in member.split("/") if p]
    while parts and parts[0] in _TOP:
        parts = parts[1:]
    if not parts or parts[0].startswith("__MACOSX"):
        return None
    return "/".join(parts)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Run the preparation; returns the process exit code."""
    parser = prepare_parser(__doc__, "data/LIP")
    parser.add_argument("--zips", type=Path, default=None, help=f"folder holding {' and '.join(ZIPS)}")
    parser.add_argument("--layout", choices=("official", "flat"), default="official")
    args = parser.parse_args(argv)

    report = PrepareReport()
    if args.zips is not None:
        for name in ZIPS:
            rename = flat_name if args.layout == "flat" else None
            report.merge(extract_zip(args.zips / name, args.root, force=args.force, rename=rename))
    for split in ("train", "val"):
        found = find_lip_dirs(args.root, split, args.layout)
        if found is None:
            raise DataError(
                f"LIP {split} images/segmentations not found under {args.root} ({args.layout} layout); pass --zips"
            )
        image_dir, _, list_file = found
        if list_file is None:
            list_file = image_dir.parent / f"{split}_id.txt"
            ids = sorted(p.stem for p in image_dir.glob("*.jpg"))
            report.merge(write_id_list(list_file, ids, force=args.force))
    console.print(report.summary(f"LIP at {args.root}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
