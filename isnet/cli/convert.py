"""Convert a released sssegmentation ISNet checkpoint into this project's checkpoint format.

Example::

    python scripts/convert_sssegmentation.py isnet_resnet50os8_ade20k.pth isnet_r50_d8_ade20k.pth

The source is read with ``weights_only=True``, every reference key must map onto exactly one ISNet key with the
same shape, and the result is written atomically. An existing destination is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from isnet.checkpoint import save_checkpoint
from isnet.cli import one_line_errors
from isnet.convert import from_sssegmentation
from isnet.errors import ConfigError
from isnet.meta import recipe

__all__ = ["convert", "main"]


def convert(src: str | Path, dst: str | Path, force: bool = False) -> Path:
    """Convert ``src`` (released ``.pth``) to ``dst`` (our format) and return ``dst``; an existing ``dst`` is
    replaced only with ``force``."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and not force:
        raise FileExistsError(f"{dst} already exists; pass --force to replace it")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"source and destination are the same file: {src}")
    model = from_sssegmentation(src)
    meta = {"converted_from": str(src.name), "source_format": "sssegmentation"}
    if "recipe" in model.meta:
        entry = recipe(model.meta["recipe"])
        meta.update(
            experiment=entry.experiment,
            dataset=entry.dataset,
            release_url=entry.url,
            reference_mIoU=entry.miou,
            reference_mIoU_ms_flip=entry.miou_ms_flip,
        )
    return save_checkpoint(model, dst, meta=meta, overwrite=force)


@one_line_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``isnet-convert`` / ``scripts/convert_sssegmentation.py``; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="released sssegmentation checkpoint (.pth)")
    parser.add_argument("dst", type=Path, help="output checkpoint in the isnet format")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)
    out = convert(args.src, args.dst, force=args.force)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
