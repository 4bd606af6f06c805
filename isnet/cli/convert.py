"""Convert a released sssegmentation ISNet checkpoint into this project's checkpoint format or a Hub folder.

Examples::

    python scripts/convert_sssegmentation.py isnet_resnet50os8_ade20k.pth isnet_r50_d8_ade20k.pth
    python scripts/convert_sssegmentation.py isnet_resnet50os8_ade20k.pth --hub-dir hf/isnet_r50_d8_ade20k
    python scripts/convert_sssegmentation.py runs/demo/<run>/checkpoints/last.ckpt --hub-dir hf/demo

The source is read with ``weights_only=True``, every reference key must map onto exactly one ISNet key with the
same shape, and the result is written atomically. ``--hub-dir`` writes the Hugging Face Hub format
(``model.safetensors``, ``config.json``, ``README.md``; :mod:`isnet.hf`) and also takes this project's own
checkpoints and Lightning ``.ckpt`` files. An existing destination is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from isnet.checkpoint import load_checkpoint, save_checkpoint
from isnet.cli import one_line_errors
from isnet.convert import from_sssegmentation
from isnet.errors import ConfigError
from isnet.hf import save_pretrained
from isnet.meta import recipe
from isnet.utils.io import safe_torch_load

__all__ = ["convert", "main", "to_hub_dir"]


def to_hub_dir(src: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write ``src`` (a released ``.pth``, our checkpoint or a Lightning ``.ckpt`` of this project) as a Hub-format
    folder ``out`` (:func:`isnet.hf.save_pretrained`); its files are replaced only with ``force``."""
    src = Path(src)
    data = safe_torch_load(src)
    if isinstance(data, dict) and (data.get("format") == "isnet" or "hyper_parameters" in data):
        model = load_checkpoint(src)
    else:  # a released file: its name gives the recipe (classes, palette, model card)
        model = from_sssegmentation(src)
        model.meta.update(converted_from=src.name, source_format="sssegmentation")
    return save_pretrained(model, out, overwrite=force)


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
    parser.add_argument("dst", type=Path, nargs="?", help="output checkpoint in the isnet format")
    parser.add_argument(
        "--hub-dir", type=Path, help="also (or only) write a Hugging Face Hub folder (model.safetensors ...)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace DST / the files in --hub-dir if they exist"
    )
    args = parser.parse_args(argv)
    if args.dst is None and args.hub_dir is None:
        parser.error("give DST, --hub-dir OUT or both")
    if args.dst is not None:
        print(f"Wrote {convert(args.src, args.dst, force=args.force)}")
    if args.hub_dir is not None:
        print(f"Wrote {to_hub_dir(args.src, args.hub_dir, force=args.force)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
