"""Export a trained or released ISNet to ONNX, TorchScript or a ``torch.export`` program (``--help``).

Examples::

    python scripts/export.py --zoo isnet_r50_d8_ade20k --out isnet_r50_d8_ade20k.onnx
    python scripts/export.py --ckpt runs/demo/<run>/checkpoints/last.ckpt --out demo.onnx --size 512 512
    python scripts/export.py --ckpt isnet_resnet101os8_cityscapes.pth --out cityscapes.pt2 --size 512 1024
    python scripts/export.py --backbone resnet18d --num-classes 5 --feats-channels 32 --out tiny.onnx

The file gets a dynamic batch, height and width, and is checked against PyTorch on two input sizes before it is
written (``max |exported - torch| <= rtol * max |torch| + atol``, default rtol 1e-4, atol 1e-5). An existing file
is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from isnet.cli import doc_parser, one_line_errors
from isnet.export import FORMATS, export_model, format_from_suffix

__all__ = ["build_parser", "load_model", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = doc_parser("scripts/export.py", __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--ckpt", help="our checkpoint, a Lightning .ckpt of this project or a sssegmentation .pth"
    )
    source.add_argument(
        "--zoo", help="a model-zoo name (e.g. isnet_r50_d8_ade20k), downloaded into the hub cache"
    )
    source.add_argument("--backbone", help="random weights with this backbone (to try the export)")
    parser.add_argument("--num-classes", type=int, default=150, help="with --backbone")
    parser.add_argument("--feats-channels", type=int, default=512, help="with --backbone")
    parser.add_argument("--transform-channels", type=int, default=256, help="with --backbone")
    parser.add_argument("--out", required=True, help="output file (.onnx, .pt, .pt2)")
    parser.add_argument(
        "--format", choices=sorted(FORMATS), default=None, help="default: from --out's suffix"
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"), help="tracing size"
    )
    parser.add_argument(
        "--resolution",
        choices=["input", "feature"],
        default="input",
        help="logits at the input size (default) or at feature resolution (1/8)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument(
        "--dynamo", action="store_true", help="ONNX: torch.export-based exporter (needs onnxscript)"
    )
    parser.add_argument(
        "--verify-size",
        type=int,
        nargs=3,
        action="append",
        metavar=("N", "H", "W"),
        help="a (batch, H, W) input to check; repeat for more (default: N=1 at --size and N=2 at an odd size)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def load_model(args: argparse.Namespace) -> Any:
    """The model named by ``--ckpt``, ``--zoo`` or ``--backbone``."""
    if args.zoo:
        from isnet.hub import from_pretrained

        return from_pretrained(args.zoo)
    if args.ckpt:
        from isnet.checkpoint import load_checkpoint

        return load_checkpoint(args.ckpt)
    from isnet.models import ISNet

    return ISNet(
        args.backbone,
        num_classes=args.num_classes,
        feats_channels=args.feats_channels,
        transform_channels=args.transform_channels,
    ).eval()


@one_line_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the export; returns :meth:`isnet.export.ExportResult.to_dict` (a failure exits 1 with one message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fmt = args.format or format_from_suffix(args.out)
        model = load_model(args)
        result = export_model(
            model,
            args.out,
            format=fmt,
            sample_size=args.size,
            resolution=args.resolution,
            opset=args.opset,
            overwrite=args.force,
            verify=not args.no_verify,
            verify_sizes=args.verify_size,
            rtol=args.rtol,
            atol=args.atol,
            dynamo=args.dynamo,
        )
    except (OSError, ValueError, RuntimeError, ImportError) as err:  # ExportVerificationError included
        parser.exit(1, f"error: {err}\n")
    report = result.to_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return report


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    console.print(f"Wrote {report['path']} ({report['format']}, logits at {report['resolution']} resolution)")
    if not report["checks"]:
        console.print("Not checked against PyTorch (--no-verify).")
        return
    table = Table(
        title=f"check against PyTorch (pass: max|diff| <= {report['rtol']:g} * max|torch| + {report['atol']:g})"
    )
    for col in ("input", "output", "max |diff|", "max |torch|", "argmax agreement", "pass"):
        table.add_column(col)
    for check in report["checks"]:
        table.add_row(
            "x".join(map(str, check["input_shape"])),
            "x".join(map(str, check["output_shape"])),
            f"{check['max_abs_diff']:.2e}",
            f"{check['max_abs_torch']:.3g}",
            f"{100 * check['argmax_agreement']:.2f}%",
            "yes" if check["passed"] else "NO",
        )
    console.print(table)


if __name__ == "__main__":
    main()
