"""Prepare Cityscapes: write ``*_gtFine_labelTrainIds.png`` (and optional id lists) from the labelIds.

The labelId -> trainId table is the official one from ``cityscapesscripts.helpers.labels``; ids without
a train id become 255. ``isnet.data.CityscapesDataModule`` reads the train-id files when they exist
(faster, no table lookup) and the labelIds otherwise, so this step is optional. Download
``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` from cityscapes-dataset.com and unzip
both into ``--root`` first.

Idempotent; existing files that differ (e.g. made by another tool) are kept unless ``--force``.

Usage: python scripts/prepare_cityscapes.py --root data/CityScapes [--lists]
"""

from __future__ import annotations

from isnet.cli import one_line_errors
from isnet.data.datasets.base import read_label
from isnet.data.datasets.cityscapes import labelids_to_trainids
from isnet.data.datasets.prepare import (
    PrepareReport,
    console,
    prepare_parser,
    progress,
    write_id_list,
    write_label_png,
)
from isnet.errors import DataError


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Run the preparation; returns the process exit code."""
    parser = prepare_parser(__doc__, "data/CityScapes", "folder with leftImg8bit/, gtFine/")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to convert")
    parser.add_argument(
        "--lists", action="store_true", help="also write <split>.txt id lists (reference style)"
    )
    args = parser.parse_args(argv)

    report = PrepareReport()
    for split in args.splits:
        label_dir = args.root / "gtFine" / split
        if not label_dir.is_dir():
            raise DataError(
                f"{label_dir} not found; expected gtFine/{split}/<city>/*_gtFine_labelIds.png "
                f"under {args.root} (unzip gtFine_trainvaltest.zip there)"
            )
        sources = sorted(label_dir.glob("*/*_gtFine_labelIds.png"))
        for src in progress(sources, len(sources), f"trainIds {split}"):
            target = src.with_name(src.name.replace("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png"))
            report.merge(write_label_png(target, labelids_to_trainids(read_label(src)), force=args.force))
        if args.lists:
            image_dir = args.root / "leftImg8bit" / split
            ids = sorted(
                str(p.relative_to(image_dir).with_suffix("")) for p in image_dir.glob("*/*_leftImg8bit.png")
            )
            report.merge(write_id_list(args.root / f"{split}.txt", ids, force=args.force))
    console.print(report.summary(f"Cityscapes at {args.root}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
