"""Benchmark ISNet on this machine (and the reference sssegmentation beside it), written as JSON plus a table.

Each timed case runs in its own worker process per implementation (``tools/bench_worker.py``), so peak RSS
is that case's own; the parent alternates single iterations between the implementations (one warm-up each, then
``--repeats`` rounds) so both see the same machine load, and reports min / median and our/their ratio. The
reference is built with its own random weights and ours loads exactly those weights. In-process extras: the
fp32 matmul peak of this machine, model FLOPs (``torch.utils.flop_counter``) and the achieved fraction of that
peak, the SLC class-centre step vectorised vs the reference's loop, bf16 vs fp32 argmax agreement, and the train
data pipeline's images/s per worker. The ``checkpointing`` case trains with and without
``ISNet.set_grad_checkpointing`` and reports the ratios of peak memory and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from isnet.cli import one_line_errors
from isnet.errors import ConfigError
from isnet.utils.io import atomic_write

__all__ = ["main", "slc_loop", "time_fn"]

WORKER = Path(__file__).resolve().parents[2] / "tools" / "bench_worker.py"  # a developer tool, not installed


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
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return _summary(times)


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "times_s": [round(t, 4) for t in times],
        "min_s": min(times),
        "median_s": statistics.median(times),
    }


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul throughput of this machine (GFLOP/s), the roofline for the achieved-FLOP/s fraction."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / time_fn(lambda: a @ b, repeats)["min_s"] / 1e9


def count_gflop(backbone: str, num_classes: int, size: tuple[int, int], batch: int = 1) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from isnet import ISNet
    from isnet.cli.model_info import custom_flop_formulas

    model = ISNet(backbone, num_classes=num_classes).eval()  # the plain modules: the FLOPs of the network
    # torch's counter has no formula for the CPU flash-attention kernel; without this attention counts as 0
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom_flop_formulas()) as counter:
        model.predict_logits(torch.randn(batch, 3, *size))
    return counter.get_total_flops() / 1e9


class Worker:
    """A bench_worker subprocess for one implementation and phase."""

    def __init__(self, label: str, args: list[str], python: str, env: dict[str, str]) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            [python, str(WORKER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.ready = self._read()  # {"ready": true, "rss_mb": RSS after set-up, ...}
        self.times: list[float] = []

    def _read(self) -> dict[str, Any]:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"benchmark worker {self.label!r} exited with code {self.proc.wait()}")
            if line.startswith("{"):
                return json.loads(line)

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()["time_s"]

    def close(self) -> dict[str, float]:
        """Stop the worker; returns its ``{"peak_rss_mb", ["peak_allocated_mb"]}``."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        final = self._read()
        self.proc.wait()
        return final


def run_case(name: str, common: list[str], variants: dict[str, list[str]], args: argparse.Namespace) -> dict:
    """Start one worker per variant, alternate warm-up + ``repeats`` single iterations, summarise."""
    env = dict(os.environ)
    workers: dict[str, Worker] = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "reference_weights.pth")
        try:
            # the reference starts first: it writes the random weights that our workers then load
            for label, extra in sorted(variants.items(), key=lambda item: item[0] != "reference"):
                is_ref = label == "reference"
                python = args.reference_python if is_ref else sys.executable
                shares_weights = "reference" in variants and common[common.index("--phase") + 1] != "slc"
                more = ["--impl", "reference" if is_ref else "ours"]
                if is_ref:
                    more += ["--reference-src", args.reference] + (
                        ["--weights-out", weights] if shares_weights else []
                    )
                elif shares_weights:
                    more += ["--weights", weights]
                workers[label] = Worker(
                    label, [*common, *extra, *more, "--threads", str(args.threads)], python, env
                )
            for worker in workers.values():
                worker.run()  # warm-up
            for _ in range(args.repeats):
                for worker in workers.values():
                    worker.times.append(worker.run())
        finally:
            final = {label: w.close() for label, w in workers.items() if w.proc.poll() is None}
    result: dict[str, Any] = {"case": name, "args": common}
    for label, worker in workers.items():
        memory = {
            "peak_rss_mb": final.get(label, {}).get("peak_rss_mb"),
            "setup_rss_mb": worker.ready.get("rss_mb"),
        }
        if "peak_allocated_mb" in final.get(label, {}):
            memory |= {"peak_allocated_mb": final[label]["peak_allocated_mb"],
                       "setup_allocated_mb": worker.ready.get("allocated_mb")}  # fmt: skip
        result[label] = _summary(worker.times) | memory
    if "reference" in workers:
        ref = result["reference"]
        for label in workers:
            if label != "reference":
                result[label]["speedup_vs_reference_median"] = ref["median_s"] / result[label]["median_s"]
                result[label]["speedup_vs_reference_min"] = ref["min_s"] / result[label]["min_s"]
                if ref["peak_rss_mb"] and result[label]["peak_rss_mb"]:
                    result[label]["rss_fraction_of_reference"] = (
                        result[label]["peak_rss_mb"] / ref["peak_rss_mb"]
                    )
    _print_case(result)
    return result


def bench_slc_centres(batch: int, size: int, num_classes: int, repeats: int) -> dict[str, Any]:
    """Every pixel's class centre: our scatter route, the atomics-free dense route and the loop, alternating.

    Also times the scatter route alone at half and double the side and with 19/150/182 classes, to show how its
    cost grows with pixels and classes.
    """
    from isnet.models.heads import semantic_class_centres
    from isnet.models.heads.context import class_centres_dense

    def inputs(side: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        shape = (batch, 512, side, side)
        return torch.randn(*shape, generator=gen), torch.randn(batch, classes, side, side, generator=gen)

    def dense_per_pixel(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        centres, classes, _ = class_centres_dense(feats.flatten(2), logits.flatten(2))
        return centres.gather(2, classes.expand(-1, feats.shape[1], -1)).view_as(feats)

    feats, logits = inputs(size, num_classes)
    routes = {
        "vectorised": lambda: semantic_class_centres(feats, logits),
        "dense": lambda: dense_per_pixel(feats, logits),
        "loop": lambda: slc_loop(feats, logits),
    }
    with torch.inference_mode():
        loop_out = slc_loop(feats, logits)
        diff = (semantic_class_centres(feats, logits) - loop_out).abs().max().item()
        diff_dense = (dense_per_pixel(feats, logits) - loop_out).abs().max().item()
        times: dict[str, list[float]] = {name: [] for name in routes}
        for fn in routes.values():
            fn()  # warm-up
        for _ in range(max(repeats, 5)):  # alternate so that machine noise hits every route alike
            for name, fn in routes.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        growth = {}
        for side, classes in [(size // 2, num_classes), (size * 2, num_classes), (size, 19), (size, 182)]:
            f, p = inputs(side, classes)
            growth[f"{side}x{side}, {classes} classes"] = time_fn(
                lambda f=f, p=p: semantic_class_centres(f, p), max(repeats, 5)
            )["median_s"]
    result = {name: _summary(t) for name, t in times.items()}
    growth[f"{size}x{size}, {num_classes} classes"] = result["vectorised"]["median_s"]
    return {"shape": [batch, 512, size, size], "classes": num_classes, **result,
            "speedup_median": result["loop"]["median_s"] / result["vectorised"]["median_s"],
            "dense_speedup_median": result["loop"]["median_s"] / result["dense"]["median_s"],
            "max_abs_diff": diff, "max_abs_diff_dense": diff_dense, "vectorised_median_by_size": growth}  # fmt: skip


def bf16_agreement(backbone: str, num_classes: int, sizes: list[tuple[int, int]]) -> dict[str, float]:
    """Fraction of pixels whose bf16-autocast argmax equals our fp32 argmax (random weights, randomised BN), both
    through the inference copies that evaluation uses."""
    from isnet import ISNet, optimize_for_inference

    torch.manual_seed(0)
    model = ISNet(backbone, num_classes=num_classes).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-0.1, 0.1)
    fast_fp32, fast_bf16 = optimize_for_inference(model), optimize_for_inference(model, dtype=torch.bfloat16)
    out = {}
    for size in sizes:
        x = torch.randn(1, 3, *size)
        with torch.inference_mode():
            fp32 = fast_fp32.predict_logits(x).argmax(1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = fast_bf16.predict_logits(x).argmax(1)
        out[f"{size[0]}x{size[1]}"] = (fp32 == bf16).float().mean().item()
    return out


def bench_data(repeats: int) -> dict[str, float]:
    """Train-pipeline images/s in this process (one worker's worth) on stand-in images of each dataset's size."""
    import cv2

    from isnet.data.transforms import build_train_transforms
    from isnet.meta import dataset_info

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    shapes = {"ade20k": (512, 683, 150), "cocostuff10k": (480, 640, 182), "cityscapes": (1024, 2048, 19),
              "lip": (400, 260, 20)}  # fmt: skip
    result = {}
    for name, (h, w, k) in shapes.items():
        pipeline = build_train_transforms(**dataset_info(name).train_pipeline)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = (np.arange(h)[:, None] // 37 * 7 + np.arange(w)[None] // 53).astype(np.uint8) % k
        stats = time_fn(lambda p=pipeline, i=image, m=mask: p(image=i, mask=m), repeats * 5)
        result[name] = 1.0 / stats["median_s"]
    return result


def saved_for_backward_mb(
    backbone: str, size: tuple[int, int], batch: int, checkpointing: bool
) -> dict[str, float]:
    """MB of tensors autograd keeps for backward after one training forward (network and loss), counted exactly
    with ``saved_tensors_hooks`` (a tensor saved twice counts twice), and the network's share of it."""
    from isnet import ISNet, ISNetLoss

    torch.manual_seed(0)
    model = ISNet(backbone, num_classes=150).train().set_grad_checkpointing(checkpointing)
    images, labels = torch.randn(batch, 3, *size), torch.randint(0, 150, (batch, *size))
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = model(images)
        network = sum(saved)
        ISNetLoss()(outputs, labels)
    return {"network": network / 2**20, "network_and_loss": sum(saved) / 2**20}


def checkpointing_ratios(plain: dict[str, Any], checkpointed: dict[str, Any]) -> dict[str, float]:
    """Checkpointed / plain: median step time, peak RSS of the worker, and the step's own memory (peak minus the
    RSS after set-up: activations, gradients, optimizer state); on CUDA also ``max_memory_allocated``."""
    ratios = {"time_median": checkpointed["median_s"] / plain["median_s"]}
    if plain.get("peak_rss_mb") and checkpointed.get("peak_rss_mb"):
        ratios["peak_rss"] = checkpointed["peak_rss_mb"] / plain["peak_rss_mb"]
        if plain.get("setup_rss_mb") and checkpointed.get("setup_rss_mb"):
            step = {k: v["peak_rss_mb"] - v["setup_rss_mb"] for k, v in (("p", plain), ("c", checkpointed))}
            ratios |= {"step_rss_mb_plain": step["p"], "step_rss_mb_checkpointed": step["c"],
                       "step_rss": step["c"] / step["p"]}  # fmt: skip
    if plain.get("peak_allocated_mb") and checkpointed.get("peak_allocated_mb"):
        ratios["peak_allocated"] = checkpointed["peak_allocated_mb"] / plain["peak_allocated_mb"]
    return ratios


def _print_case(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['case']}  ({' '.join(result['args'])})")
    for col in ("impl", "min (s)", "median (s)", "peak RSS (MB)", "speed-up vs reference"):
        table.add_column(col)
    for label, stats in result.items():
        if isinstance(stats, dict) and "min_s" in stats:
            speed = stats.get("speedup_vs_reference_median")
            table.add_row(label, f"{stats['min_s']:.3f}", f"{stats['median_s']:.3f}",
                          f"{stats['peak_rss_mb']:.0f}" if stats.get("peak_rss_mb") else "-",
                          f"x{speed:.2f}" if speed else "-")  # fmt: skip
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Benchmark ISNet (JSON + table).")
    parser.add_argument("--reference", default=os.environ.get("ISNET_REFERENCE_SRC"),
                        help="sssegmentation checkout to time beside ours (default: $ISNET_REFERENCE_SRC)")  # fmt: skip
    parser.add_argument(
        "--reference-python", default=os.environ.get("ISNET_REFERENCE_PYTHON", sys.executable)
    )
    parser.add_argument("--cases", default="slc,infer,train,bf16,data",
                        help="comma list of: slc, infer, train, bf16, cityscapes, scaling, data, compile, "
                             "checkpointing")  # fmt: skip
    parser.add_argument("--backbone", default="resnet50_d8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--train-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="crop of the training-step cases (default 256 256; 64 64 with --smoke)")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of the checkpointing case's training step")  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes and resnet18d, for CI (no timing claims)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write a markdown summary here")
    return parser


def to_markdown(report: dict[str, Any]) -> str:
    """A markdown summary of a report: machine, command, one row per (case, implementation)."""
    machine = report["machine"]
    lines = [
        f"Machine: {machine['processor']}, {machine['cpu_count']} cores, {machine['threads']} torch threads, "
        f"torch {machine['torch']}"
        + (f", GPU {machine['cuda']}" if machine.get("cuda") else ", no GPU")
        + ".",
        f"fp32 matmul peak measured in the same run: {report['matmul_peak_gflops']:.0f} GFLOP/s.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| case | implementation | min (s) | median (s) | peak RSS (MB) | speed-up vs reference (median) |",
        "|---|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        for label, stats in case.items():
            if isinstance(stats, dict) and "min_s" in stats:
                speed = stats.get("speedup_vs_reference_median")
                rss = f"{stats['peak_rss_mb']:.0f}" if stats.get("peak_rss_mb") else "-"
                lines.append(f"| {case['case']} | {label} | {stats['min_s']:.3f} | {stats['median_s']:.3f} | {rss} | "
                             f"{f'x{speed:.2f}' if speed else '-'} |")  # fmt: skip
    if "gflop_infer" in report:
        infer = next(c for c in report["cases"] if c["case"] == "infer")
        ours, plain = infer["ours"], infer.get("ours_plain", {})
        lines += ["", f"Inference cost {report['gflop_infer']:.0f} GFLOP (direct convolutions, counted by "
                  "torch.utils.flop_counter). The plain path achieves "
                  f"{plain.get('achieved_gflops', float('nan')):.0f} GFLOP/s = "
                  f"{100 * plain.get('fraction_of_matmul_peak', float('nan')):.0f}% of the matmul peak; the default "
                  f"path's {ours['achieved_gflops']:.0f} GFLOP/s = {100 * ours['fraction_of_matmul_peak']:.0f}% is "
                  "counted the same way, but its Winograd convolutions execute 2.25x fewer multiplications."]  # fmt: skip
    if "slc_centres" in report:
        slc = report["slc_centres"]
        lines += ["", f"SLC class centres {slc['shape']} with {slc['classes']} classes: vectorised "
                  f"{slc['vectorised']['median_s'] * 1e3:.1f} ms vs loop {slc['loop']['median_s'] * 1e3:.1f} ms "
                  f"(x{slc['speedup_median']:.1f}), max abs diff {slc['max_abs_diff']:.1e}; dense (deterministic-CUDA) "
                  f"route {slc['dense']['median_s'] * 1e3:.1f} ms (x{slc['dense_speedup_median']:.1f}). "
                  "Vectorised by size: " + ", ".join(f"{k}: {v * 1e3:.1f} ms"
                                                     for k, v in slc["vectorised_median_by_size"].items()) + "."]  # fmt: skip
    if "bf16_argmax_agreement" in report:
        agree = ", ".join(f"{k}: {100 * v:.3f}%" for k, v in report["bf16_argmax_agreement"].items())
        lines += ["", f"bf16 autocast argmax equal to fp32 argmax on {agree} of pixels."]
    for case in report["cases"]:
        if "checkpointed_vs_plain" in case:
            r, plain, ckpt = case["checkpointed_vs_plain"], case["ours"], case["ours_checkpointed"]
            step = (
                (
                    f"; the step's own memory (peak minus set-up RSS) {r['step_rss_mb_plain']:.0f} -> "
                    f"{r['step_rss_mb_checkpointed']:.0f} MB (x{r['step_rss']:.2f})"
                )
                if "step_rss" in r
                else ""
            )
            cuda = (
                (
                    f"; CUDA max allocated {plain['peak_allocated_mb']:.0f} -> {ckpt['peak_allocated_mb']:.0f} MB "
                    f"(x{r['peak_allocated']:.2f})"
                )
                if "peak_allocated" in r
                else ""
            )
            kept = case.get("saved_for_backward_mb", {})
            kept = (
                (
                    f"; kept for backward after the forward: network {kept['ours']['network']:.0f} -> "
                    f"{kept['ours_checkpointed']['network']:.0f} MB, with the loss "
                    f"{kept['ours']['network_and_loss']:.0f} -> {kept['ours_checkpointed']['network_and_loss']:.0f} MB"
                )
                if kept
                else ""
            )
            lines += ["", f"Gradient checkpointing ({' '.join(case['args'])}): median step time x{r['time_median']:.2f}, "
                      f"peak RSS {plain['peak_rss_mb']:.0f} -> {ckpt['peak_rss_mb']:.0f} MB (x{r['peak_rss']:.2f})"
                      f"{step}{cuda}{kept}."]  # fmt: skip
    if "data_images_per_s_per_worker" in report:
        rates = ", ".join(f"{k} {v:.1f}" for k, v in report["data_images_per_s_per_worker"].items())
        lines += ["", f"Train data pipeline, images/s in one process: {rates}."]
    return "\n".join(lines) + "\n"


@one_line_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if not WORKER.is_file():
        raise ConfigError(f"isnet-benchmark needs a source checkout of the repository ({WORKER} is missing)")
    if args.reference and not (Path(args.reference) / "ssseg").is_dir():
        raise ConfigError(
            f"--reference {args.reference}: no ssseg/ package there (expected a sssegmentation checkout)"
        )
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    known = ["slc", "infer", "train", "bf16", "cityscapes", "scaling", "data", "compile", "checkpointing"]
    if unknown := set(cases) - set(known):
        raise ConfigError(f"unknown --cases {sorted(unknown)}; choose from {', '.join(known)}")
    backbone = "resnet18d" if args.smoke else args.backbone
    small = args.smoke
    peak = matmul_peak_gflops(512 if small else 2048)
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },  # fmt: skip
        "command": " ".join(["python scripts/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
        "matmul_peak_gflops": peak,
        "backbone": backbone,
        "reference": args.reference,
        "cases": [],
    }
    with_ref = {"reference": []} if args.reference and not small else {}
    model_args = ["--backbone", backbone, "--num-classes", "150"]
    infer_size, train_size = ((64, 64), (64, 64)) if small else ((512, 512), (256, 256))
    train_size = tuple(args.train_size) if args.train_size else train_size

    def add(name: str, phase: str, size: tuple[int, int], extra: list[str], variants: dict) -> dict[str, Any]:
        common = ["--phase", phase, "--size", *map(str, size), *extra]
        report["cases"].append(run_case(name, common, {**variants, **with_ref}, args))
        return report["cases"][-1]

    if "slc" in cases:
        report["slc_centres"] = bench_slc_centres(2, 16 if small else 64, 150, args.repeats)
        slc_size = (8, 8) if small else (64, 64)
        add("slc_module", "slc", slc_size, ["--batch", "2", "--num-classes", "150"], {"ours": []})
    if "infer" in cases:
        report["gflop_infer"] = count_gflop(backbone, 150, infer_size)
        variants = {"ours": [], "ours_plain": ["--plain"]}
        case = add("infer", "infer", infer_size, ["--batch", "1", *model_args], variants)
        for label in ("ours", "ours_plain"):
            case[label]["achieved_gflops"] = report["gflop_infer"] / case[label]["min_s"]
            case[label]["fraction_of_matmul_peak"] = case[label]["achieved_gflops"] / peak
    if "bf16" in cases:
        add("infer_bf16", "infer", infer_size, model_args, {"ours_bf16": ["--bf16"], "ours": []})
        sizes = [(64, 64)] if small else [(512, 512), (1024, 2048)]
        report["bf16_argmax_agreement"] = bf16_agreement(backbone, 150 if not small else 19, sizes)
    if "train" in cases:
        variants = {"ours": ["--channels-last"], "ours_contiguous": []}
        add("train_step", "train", train_size, ["--batch", "2", *model_args], variants)
    if "checkpointing" in cases:
        variants = {"ours": [], "ours_checkpointed": ["--grad-checkpointing"]}
        extra = ["--batch", "2", "--device", args.device, *model_args]
        case = add("train_step_checkpointing", "train", train_size, extra, variants)
        case["checkpointed_vs_plain"] = checkpointing_ratios(case["ours"], case["ours_checkpointed"])
        case["saved_for_backward_mb"] = {
            label: saved_for_backward_mb(backbone, train_size, 2, checkpointing=label != "ours")
            for label in variants
        }
    if "compile" in cases:  # the warm-up iteration compiles; the timed ones reuse the compiled code
        variants = {"ours": [], "ours_compiled": ["--compile"]}
        add("infer_compiled", "infer", infer_size, ["--batch", "1", *model_args], variants)
        variants = {"ours": ["--channels-last"], "ours_compiled": ["--compile"]}
        add("train_step_compiled", "train", train_size, ["--batch", "2", *model_args], variants)
    if "cityscapes" in cases:
        city = ["--backbone", backbone, "--num-classes", "19", "--config", "isnet_resnet50os8_cityscapes"]
        size = (128, 256) if small else (1024, 2048)
        add("cityscapes_whole", "infer", size, city, {"ours": [], "ours_bf16": ["--bf16"]})
    if "scaling" in cases:
        sizes = [(64, 64), (96, 128)] if small else [(256, 256), (512, 512), (1024, 1024), (1024, 2048)]
        for size in sizes:
            add(f"scaling_{size[0]}x{size[1]}", "infer", size, model_args, {"ours": []})
        for classes, dataset in ((19, "cityscapes"), (150, "ade20k"), (182, "cocostuff10k")):
            extra = [
                "--backbone",
                backbone,
                "--num-classes",
                str(classes),
                "--config",
                f"isnet_resnet50os8_{dataset}",
            ]
            add(f"scaling_{classes}classes", "infer", infer_size, extra, {"ours": []})
    if "data" in cases:
        report["data_images_per_s_per_worker"] = bench_data(1 if small else args.repeats)
    if args.out:
        atomic_write(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.markdown:
        atomic_write(args.markdown, to_markdown(report))
        print(f"wrote {args.markdown}")
    return report


if __name__ == "__main__":
    main()
