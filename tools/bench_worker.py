"""One benchmark phase for one implementation, driven line by line over stdin by ``isnet.cli.benchmark``.

Runs standalone (``python bench_worker.py ...``) so the reference implementation can be timed with its own
interpreter without importing ``isnet``; a phase per process makes peak RSS (``VmHWM``) that phase's own.
Protocol: after set-up it prints ``{"ready": ..., "rss_mb": RSS after set-up}``; each ``run`` line runs one
iteration and prints ``{"time_s": t}``; ``quit`` prints ``{"peak_rss_mb": ...}`` (on CUDA also
``peak_allocated_mb``, ``torch.cuda.max_memory_allocated`` over the iterations) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os
import resource
import sys
import time

import torch


def _reference_cfg(config: str) -> dict:
    cfg = copy.deepcopy(importlib.import_module(f"ssseg.configs.isnet.{config}").SEGMENTOR_CFG)
    cfg["backbone"]["pretrained"] = False
    cfg["norm_cfg"] = {
        "type": "BatchNorm2d"
    }  # SyncBN needs a process group; identical keys and maths on 1 process
    return cfg


def _build_reference(args: argparse.Namespace):
    sys.path.insert(0, args.reference_src)
    from ssseg.modules import BuildSegmentor
    from ssseg.modules.models.segmentors.isnet import SemanticLevelContext
    from ssseg.modules.utils import SSSegInputStructure

    cfg = _reference_cfg(args.config)
    num_classes = cfg["num_classes"]
    if args.phase == "slc":
        head = cfg["head"]
        module = SemanticLevelContext(head["feats_channels"], head["transform_channels"], head["concat_input"],
                                      copy.deepcopy(cfg["norm_cfg"]), copy.deepcopy(cfg["act_cfg"])).eval()  # fmt: skip
        return module, num_classes, None
    model = BuildSegmentor(cfg, mode="TRAIN" if args.phase == "train" else "TEST")
    if args.weights_out:  # the parent loads these same weights into our model
        torch.save({"model": model.state_dict()}, args.weights_out)
    return model, num_classes, SSSegInputStructure


def _step_fn(args: argparse.Namespace):
    torch.manual_seed(args.seed)
    size, batch = args.size, args.batch
    if args.impl == "reference":
        model, num_classes, inputs = _build_reference(args)
    else:
        from isnet import ISNet, ISNetLoss, from_sssegmentation
        from isnet.models.heads import SemanticLevelContext

        if args.phase == "slc":
            model, num_classes = SemanticLevelContext(512, 256).eval(), args.num_classes
        elif args.weights:
            model = from_sssegmentation(args.weights)
            num_classes = model.num_classes
        else:
            model = ISNet(args.backbone, num_classes=args.num_classes).eval()
            num_classes = args.num_classes
        if args.grad_checkpointing:
            model.set_grad_checkpointing(True)  # recompute activations in backward (train phase)
        if args.phase == "infer" and not args.plain:  # the explicit fast copy; the warm-up call compiles
            from isnet.accel import optimize_for_inference

            dtype = torch.bfloat16 if args.bf16 else None
            model = optimize_for_inference(model.eval(), dtype=dtype, compile=args.compile or None)
        elif args.compile:
            model = torch.compile(model.train())  # the training forward; the warm-up call compiles
    gen = torch.Generator().manual_seed(args.seed)
    if args.phase == "slc":
        feats = torch.randn(batch, 512, *size, generator=gen)
        feats_il = torch.randn(batch, 512, *size, generator=gen)
        preds = torch.randn(batch, num_classes, *size, generator=gen)

        def run() -> None:
            with torch.no_grad():
                model(feats, preds, feats_il)

        return run
    x = torch.randn(batch, 3, *size, generator=gen)
    if args.phase == "train" and args.device != "cpu":
        model, x = model.to(args.device), x.to(args.device)
    if args.phase == "infer":
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

        def run() -> None:
            with torch.inference_mode(), autocast:
                if args.impl == "reference":
                    _ = model(inputs(images=x, mode="TEST")).seg_logits
                else:
                    model.predict_logits(x)

        model.eval()
        return run
    target = torch.randint(0, num_classes, (batch, *size), generator=gen).to(x.device)
    model.train()
    if args.impl != "reference" and args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = None if args.impl == "reference" else ISNetLoss()

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        if args.impl == "reference":
            loss = model(inputs(images=x, seg_targets=target, mode="TRAIN")).loss
        else:
            loss = loss_fn(model(x), target)["loss"]
        loss.backward()
        optimizer.step()

    return run


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's ``VmHWM`` belongs to the process's own address space; ``ru_maxrss``
    is carried across ``execve`` and so would include the launching benchmark process's peak."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "reference"], required=True)
    parser.add_argument("--phase", choices=["infer", "train", "slc"], required=True)
    parser.add_argument("--size", type=int, nargs=2, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--backbone", default="resnet50_d8")
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--config", default="isnet_resnet50os8_ade20k", help="reference config module")
    parser.add_argument("--reference-src", default=os.environ.get("ISNET_REFERENCE_SRC", ""))
    parser.add_argument("--weights", default=None, help="reference-format weights for our model")
    parser.add_argument("--weights-out", default=None, help="reference: save its random weights here")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--plain", action="store_true", help="ours: disable the fused eval fast path")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="ours: torch.compile (the inference copy, or the training forward)",
    )
    parser.add_argument(
        "--grad-checkpointing", action="store_true", help="ours: ISNet.set_grad_checkpointing(True)"
    )
    parser.add_argument("--device", default="cpu", help="train phase: the device to train on (e.g. cuda)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = _step_fn(args)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ready = {"ready": True, "threads": torch.get_num_threads(), "rss_mb": _status_mb("VmRSS")}
    if cuda:
        ready["allocated_mb"] = torch.cuda.memory_allocated() / 2**20
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            start = time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize()
            print(json.dumps({"time_s": time.perf_counter() - start}), flush=True)
        elif command == "quit":
            break
    final = {"peak_rss_mb": peak_rss_mb()}
    if cuda:
        final["peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()
