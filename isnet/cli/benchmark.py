"""Benchmarks of ISNet on this machine, written as JSON (and printed as a table).

Measured here (never in timed tests): the SLC class-centre step vectorised vs the reference's loop, inference
latency, a training step, FLOPs (``torch.utils.flop_counter``) and achieved FLOP/s against a matmul peak
measured in the same run. Each timing is ``repeats`` runs after one warm-up; min and median are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from isnet.models import ISNet, ISNetLoss
from isnet.models.heads import semantic_class_centres

__all__ = ["main", "slc_loop", "time_fn"]


def slc_loop(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The reference's per-image, per-class loop (sssegmentation ``semanticlevel.py``), as the baseline."""
    batch, channels, height, width = feats.shape
    num_classes = logits.shape[1]
    out = torch.zeros(batch, height * width, channels, dtype=feats.dtype)
    for b in range(batch):
        f = feats[b].reshape(channels, -1).t()
        p = logits[b].reshape(num_classes, -1).t()
        argmax = p.argmax(1)
        for k in range(num_classes):
            mask = argmax == k
            if mask.sum() == 0:
                continue
            weight = F.softmax(p[:, k][mask], dim=0)
            out[b][mask] = (f[mask] * weight.unsqueeze(-1)).sum(0)
    return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def time_fn(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs (synchronising CUDA around each)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"times_s": times, "min_s": min(times), "median_s": statistics.median(times)}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul throughput of this machine (GFLOP/s), the roofline for the achieved-FLOP/s fraction."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    stats = time_fn(lambda: a @ b, repeats)
    return 2 * n**3 / stats["min_s"] / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_slc(
    batch: int, height: int, width: int, num_classes: int, channels: int, repeats: int
) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, channels, height, width, generator=gen)
    logits = torch.randn(batch, num_classes, height, width, generator=gen)
    with torch.inference_mode():
        diff = (semantic_class_centres(feats, logits) - slc_loop(feats, logits)).abs().max().item()
        vec = time_fn(lambda: semantic_class_centres(feats, logits), repeats)
        loop = time_fn(lambda: slc_loop(feats, logits), repeats)
    return {
        "shape": {"batch": batch, "feat": [height, width], "classes": num_classes, "channels": channels},
        "vectorised": vec,
        "loop": loop,
        "speedup_median": loop["median_s"] / vec["median_s"],
        "max_abs_diff": diff,
    }


def bench_model(args: argparse.Namespace, peak: float) -> dict[str, Any]:
    model = ISNet(args.backbone, num_classes=args.num_classes).eval()
    x = torch.randn(args.batch, 3, *args.size)
    with torch.inference_mode():
        flops = count_flops(lambda: model.predict_logits(x))
        infer = time_fn(lambda: model.predict_logits(x), args.repeats)
    result: dict[str, Any] = {
        "inference": infer
        | {
            "input": [args.batch, 3, *args.size],
            "gflop": flops / 1e9,
            "achieved_gflops": flops / 1e9 / infer["min_s"],
            "fraction_of_matmul_peak": flops / 1e9 / infer["min_s"] / peak,
        },  # fmt: skip
    }
    if args.train_size:
        model.train()
        loss_fn = ISNetLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        xt = torch.randn(args.train_batch, 3, *args.train_size)
        target = torch.randint(0, args.num_classes, (args.train_batch, *args.train_size))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xt), target)["loss"].backward()
            optimizer.step()

        result["train_step"] = time_fn(step, args.repeats) | {
            "input": [args.train_batch, 3, *args.train_size]
        }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50_d8")
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], help="inference H W")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--train-size", type=int, nargs=2, default=[256, 256], help="train-step H W (0 0 = skip)"
    )
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--slc", type=int, nargs=4, default=[2, 64, 64, 150], metavar=("B", "H", "W", "K"))
    parser.add_argument("--only", choices=["all", "slc", "model"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args(argv)
    if args.train_size == [0, 0]:
        args.train_size = None
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },  # fmt: skip
        "command": " ".join(["scripts/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
        "matmul_peak_gflops": peak,
        "backbone": args.backbone,
    }
    if args.only in ("all", "slc"):
        b, h, w, k = args.slc
        report["slc"] = bench_slc(b, h, w, k, 512, args.repeats)
    if args.only in ("all", "model"):
        report.update(bench_model(args, peak))
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    _print_table(report)
    return report


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"isnet benchmark ({report['backbone']}, {report['machine']['threads']} threads)")
    for col in ("what", "min (s)", "median (s)", "note"):
        table.add_column(col)
    table.add_row("matmul peak", "", "", f"{report['matmul_peak_gflops']:.0f} GFLOP/s")
    if "slc" in report:
        s = report["slc"]
        table.add_row("SLC vectorised", f"{s['vectorised']['min_s']:.4f}", f"{s['vectorised']['median_s']:.4f}",
                      f"{s['shape']}")  # fmt: skip
        table.add_row("SLC loop", f"{s['loop']['min_s']:.4f}", f"{s['loop']['median_s']:.4f}",
                      f"speed-up x{s['speedup_median']:.1f}, max diff {s['max_abs_diff']:.1e}")  # fmt: skip
    if "inference" in report:
        i = report["inference"]
        table.add_row("inference", f"{i['min_s']:.3f}", f"{i['median_s']:.3f}",
                      f"{i['input']} {i['gflop']:.0f} GFLOP, {100 * i['fraction_of_matmul_peak']:.0f}% of peak")  # fmt: skip
    if "train_step" in report:
        t = report["train_step"]
        table.add_row("train step", f"{t['min_s']:.3f}", f"{t['median_s']:.3f}", f"{t['input']}")
    Console().print(table)


if __name__ == "__main__":
    main()
