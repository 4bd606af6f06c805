"""Parameters and FLOPs of ISNet per module group (backbone, bottleneck, ILC, SLC, decoders, aux) (``--help``).

Examples::

    python scripts/model_info.py isnet_r101_d8_cityscapes            # a model-zoo experiment at its crop size
    python scripts/model_info.py --backbone resnet50_d8 --num-classes 150 --size 512 512 --json

FLOPs come from ``torch.utils.flop_counter`` (2 FLOPs per multiply-add; convolutions, matrix products and
attention; element-wise ops, pooling, softmax and resizing are not counted; GMACs = GFLOPs / 2). The forward runs
on fake tensors (shapes only), so even Cityscapes-sized inputs take a second on a CPU. The auxiliary head runs only
in training, so the inference total leaves it out.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isnet.cli import doc_parser, one_line_errors
from isnet.errors import ConfigError

__all__ = [
    "GROUPS",
    "build_parser",
    "count_flops",
    "count_params",
    "custom_flop_formulas",
    "doc_parser",
    "main",
    "model_info",
]

#: Report group -> module paths inside :class:`isnet.ISNet` (missing ones, e.g. no shortcut, are skipped).
GROUPS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "bottleneck": ("head.bottleneck",),
    "ILC": ("head.ilc_net",),
    "SLC": ("head.slc_net",),
    "decoders": ("head.decoder_stage1", "head.decoder_stage2", "head.shortcut"),
    "aux": ("auxiliary_decoder",),
}
_TRAIN_ONLY = ("aux",)


def _sdpa_cpu_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    # torch's counter knows the GPU attention kernels but not the CPU flash kernel that runs here: same count
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def custom_flop_formulas() -> dict[Any, Any]:
    """Extra ``FlopCounterMode(custom_mapping=...)`` formulas: attention on the CPU, otherwise counted as 0."""
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _sdpa_cpu_flops}


def count_params(model: nn.Module, groups: dict[str, tuple[str, ...]] = GROUPS) -> dict[str, int]:
    """Parameters per group (plus ``other`` for any parameter outside every group, normally 0)."""
    counts = {name: 0 for name in groups}
    counts["other"] = 0
    for pname, param in model.named_parameters():
        group = next(
            (g for g, paths in groups.items() if any(pname.startswith(p + ".") for p in paths)),
            "other",
        )
        counts[group] += param.numel()
    return counts


def count_flops(
    model: nn.Module, input_size: tuple[int, int], batch: int = 1, groups: dict[str, tuple[str, ...]] = GROUPS
) -> dict[str, int]:
    """FLOPs per group of one forward with the auxiliary head, on fake tensors (a copy of ``model`` runs), plus
    ``total`` (everything counted) and ``other`` (counted outside every group)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    work = copy.deepcopy(model).train()
    for module in work.modules():
        # training mode only to run the auxiliary head; BatchNorm in eval mode accepts batch 1 (ResNeSt's
        # split-attention BN sees 1x1 maps) and costs the same FLOPs (none counted)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    root = type(work).__name__
    with FakeTensorMode(allow_non_fake_inputs=True):
        images = torch.empty(batch, 3, *input_size)
        with (
            torch.no_grad(),
            FlopCounterMode(display=False, depth=None, custom_mapping=custom_flop_formulas()) as counter,
        ):
            work(images)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    flops = {g: sum(per_module.get(f"{root}.{p}", 0) for p in paths) for g, paths in groups.items()}
    flops["total"] = int(counter.get_total_flops())
    flops["other"] = flops["total"] - sum(flops[g] for g in groups)
    return flops


def model_info(model: nn.Module, input_size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
    """Parameters and FLOPs per group, with inference (no aux) and training-forward totals.

    Args:
        model: an :class:`isnet.ISNet`.
        input_size: (H, W) of the input.
        batch: batch size N.

    Returns:
        ``{"model": config, "input": [N, 3, H, W], "groups": [{"name", "modules", "params", "gflops"}, ...],
        "total": {"params", "params_inference", "gflops_inference", "gflops_train_forward"}, "note"}``.
    """
    params = count_params(model)
    flops = count_flops(model, input_size, batch)
    existing = dict(model.named_modules())  # e.g. no head.shortcut without the LIP variant
    rows = []
    for name, paths in GROUPS.items():
        present = [p for p in paths if p in existing]
        rows.append({"name": name, "modules": present, "params": params[name], "gflops": flops[name] / 1e9})
    if params["other"] or flops["other"]:
        rows.append(
            {"name": "other", "modules": [], "params": params["other"], "gflops": flops["other"] / 1e9}
        )
    train_only = sum(flops[g] for g in _TRAIN_ONLY)
    return {
        "model": dict(getattr(model, "config", {})),
        "input": [batch, 3, *input_size],
        "groups": rows,
        "total": {
            "params": sum(params.values()),
            "params_inference": sum(params.values()) - sum(params[g] for g in _TRAIN_ONLY),
            "gflops_inference": (flops["total"] - train_only) / 1e9,
            "gflops_train_forward": flops["total"] / 1e9,
        },
        "note": "FLOPs from torch.utils.flop_counter: 2 per multiply-add (GMACs = GFLOPs / 2); convolutions, "
        "matmuls and attention only. Inference totals leave out the auxiliary head (training only).",
    }


def build_parser() -> argparse.ArgumentParser:
    parser = doc_parser("scripts/model_info.py", __doc__)
    parser.add_argument("experiment", nargs="?", help="a model-zoo experiment (e.g. isnet_r50_d8_ade20k)")
    parser.add_argument(
        "--backbone", default=None, help="backbone (default resnet50_d8 without an experiment)"
    )
    parser.add_argument(
        "--num-classes", type=int, default=None, help="classes (default 150 without an experiment)"
    )
    parser.add_argument("--feats-channels", type=int, default=512)
    parser.add_argument("--transform-channels", type=int, default=256)
    parser.add_argument("--shortcut", action="store_true", help="the LIP variant (layer1 shortcut)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="input size")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser


def _build(args: argparse.Namespace) -> tuple[nn.Module, tuple[int, int]]:
    from isnet.models import ISNet

    config: dict[str, Any] = dict(
        backbone=args.backbone or "resnet50_d8",
        num_classes=args.num_classes or 150,
        feats_channels=args.feats_channels,
        transform_channels=args.transform_channels,
        shortcut=args.shortcut,
    )
    size = tuple(args.size) if args.size else (512, 512)
    if args.experiment:
        from isnet.hub import resolve_entry

        try:
            entry = resolve_entry(args.experiment)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        config.update(backbone=entry.backbone, num_classes=entry.num_classes, shortcut=entry.lip_variant)
        if entry.lip_variant:
            config["act"] = "leaky_relu"
        for option, value in (("backbone", args.backbone), ("num_classes", args.num_classes)):
            if value is not None and value != config[option]:
                raise ConfigError(
                    f"--{option.replace('_', '-')}={value} contradicts {entry.experiment} ({config[option]})"
                )
        size = tuple(args.size) if args.size else tuple(entry.crop_size)
    if min(size) < 8 or args.batch < 1:
        raise ConfigError(f"--size must be >= 8 and --batch >= 1, got size={size}, batch={args.batch}")
    try:
        return ISNet(**config), size  # type: ignore[return-value]
    except ValueError as err:  # a bad backbone or channel count
        raise ConfigError(str(err)) from err


@one_line_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print (and with ``--out`` write) the per-group table; returns :func:`model_info`'s dict."""
    args = build_parser().parse_args(argv)
    model, size = _build(args)
    info = model_info(model, size, args.batch)
    if args.experiment:
        info["experiment"] = args.experiment
    text = json.dumps(info, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        _print_table(info)
    return info


def _print_table(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cfg = info["model"]
    title = f"{info.get('experiment') or cfg.get('backbone')}: {cfg.get('num_classes')} classes, input {info['input']}"
    table = Table(title=title, caption=info["note"])
    for col in ("group", "modules", "params (M)", "GFLOPs"):
        table.add_column(col, justify="right" if col != "modules" and col != "group" else "left")
    for row in info["groups"]:
        table.add_row(
            row["name"], ", ".join(row["modules"]), f"{row['params'] / 1e6:.3f}", f"{row['gflops']:.2f}"
        )
    total = info["total"]
    table.add_row(
        "total (inference)",
        "no aux",
        f"{total['params_inference'] / 1e6:.3f}",
        f"{total['gflops_inference']:.2f}",
    )
    table.add_row(
        "total (training)", "with aux", f"{total['params'] / 1e6:.3f}", f"{total['gflops_train_forward']:.2f}"
    )
    Console(file=sys.stdout).print(table)


if __name__ == "__main__":
    main()
