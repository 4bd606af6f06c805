"""Prepare ADE20k: unzip ``ADEChallengeData2016.zip`` and write the ``{train,val}.txt`` id lists.

Result (what ``isnet.data.ADE20kDataModule`` and ``conf/data/ade20k.yaml`` read)::

    <root>/ADEChallengeData2016/images/{training,validation}/<id>.jpg
    <root>/ADEChallengeData2016/annotations/{training,validation}/<id>.png
    <root>/ADEChallengeData2016/{train,val}.txt

Idempotent; existing files that differ are kept unless ``--force``.

Usage: python scripts/prepare_ade20k.py --zip ADEChallengeData2016.zip --root data/ADE20k
"""

from __future__ import annotations

from isnet.cli import one_line_errors
from isnet.data.datasets.ade20k import find_ade20k_root
from isnet.data.datasets.prepare import console, prepare_parser, unzip_requested, write_id_list
from isnet.errors import DataError

SPLITS = {"train": "training", "val": "validation"}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Run the preparation; returns the process exit code."""
    args = prepare_parser(__doc__, "data/ADE20k", archive="ADEChallengeData2016.zip").parse_args(argv)
    report = unzip_requested(args)
    base = find_ade20k_root(args.root)
    if base is None:
        raise DataError(
            f"ADEChallengeData2016 (images/, annotations/) not found under {args.root}; "
            "pass --zip ADEChallengeData2016.zip"
        )
    for split, folder in SPLITS.items():
        ids = sorted(p.stem for p in (base / "images" / folder).glob("*.jpg"))
        missing = [i for i in ids if not (base / "annotations" / folder / f"{i}.png").is_file()]
        if missing:
            console.print(
                f"[yellow]{len(missing)} {split} image(s) have no annotation, e.g. {missing[0]}[/yellow]"
            )
        report.merge(write_id_list(base / f"{split}.txt", ids, force=args.force))
    console.print(report.summary(f"ADE20k at {base}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
