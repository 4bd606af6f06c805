"""Dump a randomly initialised reference ISNet (sssegmentation) for the parity tests.

Runs under the *reference's* interpreter (the one that can import ``ssseg``); it never imports ``isnet``.
The reference source is put on ``sys.path`` from ``--src`` or ``$ISNET_REFERENCE_SRC`` (the folder that
contains ``ssseg/``), so the reference is never installed.

Usage::

    python reference_dump.py CONFIG OUT.pth [--size H W] [--batch B] [--seed S] [--src DIR]

``CONFIG`` is a module name in ``ssseg/configs/isnet/`` (e.g. ``isnet_resnet50os8_ade20k``).

The model is the config's segmentor with ``pretrained=False`` and ``BatchNorm2d`` in place of
``SyncBatchNorm`` (same state-dict keys; SyncBN needs a process group to train). Random weights alone make
a poor test: BN statistics that do not fit the activations let them drift by orders of magnitude, and a
random stage-1 classifier predicts one or two classes for the whole image, which leaves the semantic-level
context (SLC) almost idle. So the dump

1. draws random BN affine parameters, fits the running statistics of every BN that the eval forward
   reaches to this input and perturbs them slightly (BNs on pooled vectors and the aux head's, which the
   eval forward never reaches, keep random statistics);
2. re-draws the stage-1 classifier (``decoder_stage1``'s last 1x1 conv) so its logits are centred per class
   over this input, and keeps, out of a few draws, the one whose smallest top-1/top-2 gap is widest, because
   the SLC argmax is only comparable across implementations where float noise stays below that gap.

The saved ``torch.save`` dict (load with ``weights_only=False``) holds:

- ``model``: the segmentor state dict, in the layout released checkpoints keep under ``'model'``;
- ``input``: (B, 3, H, W) float32 randn, treated as an already normalised image;
- ``eval``: TEST-mode tensors: ``backbone`` (list of the 4 stage outputs), ``feats`` (head bottleneck),
  ``feats_il`` (image-level context), ``preds_stage1``, ``feats_sl`` (semantic-level context), ``shortcut``
  (LIP only), ``logits`` (final logits before any resize) and ``logits_resized`` (bilinear to H x W,
  ``align_corners=False``);
- ``train``: TRAIN-mode record of a copy of the model with every dropout at p=0 (BN on batch statistics):
  ``targets`` (B, H, W) int64 with about 10 % set to -100 (the reference's ignore value), ``losses`` (dict of
  floats ``loss_aux``, ``loss_cls_stage1``, ``loss_cls_stage2``, ``loss_total``, each already scaled by its
  weight 0.4 / 0.4 / 1.0), ``loss`` (the summed scalar) and ``tensors`` (the same intermediates as ``eval``
  plus ``aux``, taken in train mode);
- ``stage1_min_margin``, ``stage1_classes`` and the same under ``train``; ``rounding_sensitivity``: how far
  the reference's own eval logits move when run in ``channels_last`` or on a 1e-6 relative input noise (the
  floor for any parity tolerance); provenance (``config``,
  ``num_classes``, ``seed``, ``size``, ``batch``, ``torch_version``, ``ref_commit``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Reference submodules whose outputs are recorded, under the names the parity tests compare.
RECORDED_MODULES = {
    "backbone_net": "backbone",
    "bottleneck": "feats",
    "ilc_net": "feats_il",
    "decoder_stage1": "preds_stage1",
    "slc_net": "feats_sl",
    "shortcut": "shortcut",
    "decoder_stage2": "logits",
    "auxiliary_decoder": "aux",
}
IGNORE_INDEX = -100  # the reference's loss ignore value
IGNORE_FRACTION = 0.1
STAGE1_LOGIT_STD = 3.0
STAGE1_DRAWS = 8
MIN_CALIBRATION_VALUES = 64
# gamma range of the last BN of every residual branch (``bn3`` in the reference's ResNet/ResNeSt blocks)
RESIDUAL_GAMMA = (0.1, 0.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("config", help="module name in ssseg/configs/isnet, e.g. isnet_resnet50os8_ade20k")
    p.add_argument("out", type=Path, help="where to torch.save the dump")
    p.add_argument("--size", type=int, nargs=2, default=[97, 129], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--src", default=os.environ.get("ISNET_REFERENCE_SRC"), help="folder containing ssseg/")
    a = p.parse_args(argv)
    if not a.src or not (Path(a.src) / "ssseg").is_dir():
        p.error(f"--src / ISNET_REFERENCE_SRC must name a folder that contains ssseg/, got {a.src!r}")
    if a.batch < 2:
        p.error(f"--batch must be >= 2 (train-mode BN needs more than one value per channel), got {a.batch}")
    return a


def build_reference(config: str) -> tuple[nn.Module, dict]:
    """Build the reference segmentor for ``config`` with random weights and plain BatchNorm2d."""
    module = importlib.import_module(f"ssseg.configs.isnet.{config}")
    cfg = copy.deepcopy(module.SEGMENTOR_CFG)
    cfg["backbone"]["pretrained"] = False
    cfg["norm_cfg"] = {"type": "BatchNorm2d"}
    from ssseg.modules import BuildSegmentor

    return BuildSegmentor(cfg, mode="TEST"), cfg


def batchnorms(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """All BN layers of ``model`` with their names, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def randomise_and_calibrate_bn(model: nn.Module, run_eval, gen: torch.Generator) -> None:
    """Give every BN random affine parameters, fit its running statistics to one eval forward, perturb them.

    The affine parameters are drawn first so that each layer's statistics are fitted to the inputs it really
    sees (fitting first and changing them afterwards compounds through the residual stages). A BN that sees
    fewer than ``MIN_CALIBRATION_VALUES`` values per channel (ResNeSt's split-attention ``conv2.bn1`` runs on
    pooled (B, C, 1, 1) vectors) keeps random statistics and runs in eval mode during the fit: statistics of
    two values are degenerate (variance ~1e-8), and they blew eval activations up to ~1e5. BNs the eval
    forward never reaches (the aux head) keep random statistics too. The final perturbation keeps eval mode
    (running statistics) distinct from train mode (batch statistics).

    The last BN of each residual branch gets a small gamma (``RESIDUAL_GAMMA``), as trained ResNets have (and
    zero-init-residual training starts from): each block stays a small change of its input. With gamma ~1
    the random 50-100-layer stack is chaotic: a 1e-6 relative change of the input moved the reference's own
    logits by 3e-3 to 1.4e-2, and running it in ``channels_last`` flipped stage-1 argmaxes, so no fp32
    tolerance could tell rounding from a bug.

    Args:
        model: the reference segmentor, in eval mode.
        run_eval: zero-argument callable running the eval forward.
        gen: random generator for the parameters and perturbations.
    """

    def skip_small(bn, inputs):
        x = inputs[0]
        if x.numel() // x.shape[1] < MIN_CALIBRATION_VALUES:
            bn.eval()

    bns = batchnorms(model)
    handles = []
    for name, bn in bns:
        n = bn.num_features
        if name.rsplit(".", 1)[-1] == "bn3":
            low, high = RESIDUAL_GAMMA
            bn.weight.copy_(torch.rand(n, generator=gen) * (high - low) + low)
            bn.bias.copy_(torch.randn(n, generator=gen) * 0.05)
        else:
            bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=gen) * 0.2)
        bn.reset_running_stats()
        bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.momentum = None  # cumulative average: one batch gives exactly its statistics
        bn.train()
        handles.append(bn.register_forward_pre_hook(skip_small))
    run_eval()
    for h in handles:
        h.remove()
    for _, bn in bns:
        bn.momentum = 0.1
        bn.eval()
        if int(bn.num_batches_tracked) > 0:  # fitted above
            n = bn.num_features
            std = bn.running_var.sqrt()
            bn.running_mean.add_(torch.randn(n, generator=gen) * 0.05 * std)
            bn.running_var.mul_(torch.rand(n, generator=gen) * 0.45 + 0.8)


def min_margin(logits: torch.Tensor) -> float:
    """Smallest gap between the top-1 and top-2 logit over all pixels of ``logits`` (B, K, h, w)."""
    top2 = logits.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).min().item()


@torch.no_grad()
def respread_stage1(model: nn.Module, run_eval, gen: torch.Generator) -> None:
    """Re-draw the stage-1 classifier so that many classes win the argmax with a wide margin.

    Args:
        model: the reference segmentor (eval mode, BN already fixed).
        run_eval: zero-argument callable running the eval forward.
        gen: random generator for the candidate weights.
    """
    cls = model.decoder_stage1[-1]
    seen = {}
    handle = cls.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))
    run_eval()
    handle.remove()
    x = seen["x"]
    mean = x.mean(dim=(0, 2, 3))
    centred = x - mean[None, :, None, None]
    best = None
    for _ in range(STAGE1_DRAWS):
        w = torch.randn(cls.weight.shape[:2], generator=gen)
        z = torch.einsum("kc,bchw->bkhw", w, centred)
        w = w * (STAGE1_LOGIT_STD / z.std())
        margin = min_margin(z * (STAGE1_LOGIT_STD / z.std()))
        if best is None or margin > best[0]:
            best = (margin, w)
    w = best[1]
    cls.weight.copy_(w[:, :, None, None])
    cls.bias.copy_(-(w @ mean))  # centres every class logit over this input


@torch.no_grad()
def rounding_sensitivity(
    model: nn.Module, forward, x: torch.Tensor, logits: torch.Tensor
) -> dict[str, float]:
    """How far the reference's own eval logits move under a rounding-level change.

    A second implementation can only be expected to agree to about this much: the same model run in
    ``channels_last`` (other convolution kernels, other summation order) and on the input times
    (1 + 1e-6 noise).

    Args:
        model: the reference segmentor, in eval mode.
        forward: callable ``(model, images) -> logits`` for the eval forward.
        x: the dump's input.
        logits: the reference's eval logits on ``x``.

    Returns:
        ``{"channels_last": max abs diff, "input_noise_1e-6": max abs diff}``.
    """
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    moved = forward(cl, x.contiguous(memory_format=torch.channels_last))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(12345))
    noisy = forward(model, x * (1 + 1e-6 * noise))
    return {
        "channels_last": (moved - logits).abs().max().item(),
        "input_noise_1e-6": (noisy - logits).abs().max().item(),
    }


def record(model: nn.Module, store: dict) -> list:
    """Register forward hooks that copy the recorded submodules' outputs into ``store``."""
    handles = []
    for attr, key in RECORDED_MODULES.items():
        module = getattr(model, attr, None)
        if module is None:
            continue

        def hook(mod, inp, out, key=key):
            if isinstance(out, (list, tuple)):
                store[key] = [t.detach().clone() for t in out]
            else:
                store[key] = out.detach().clone()

        handles.append(module.register_forward_hook(hook))
    return handles


def reference_commit(src: str) -> str:
    """The git commit of the reference checkout, if it can be told."""
    stamp = Path(src) / "REF_COMMIT"
    if stamp.is_file():
        return stamp.read_text().strip()
    try:
        out = subprocess.run(
            ["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("ISNET_REF_COMMIT", "unknown")


def main(argv: list[str] | None = None) -> None:
    """Build, randomise, run and dump the reference ISNet for one config."""
    a = parse_args(argv)
    sys.path.insert(0, str(Path(a.src).resolve()))
    from ssseg.modules.utils import SSSegInputStructure

    torch.manual_seed(a.seed)  # default init of every conv
    gen = torch.Generator().manual_seed(a.seed)
    model, cfg = build_reference(a.config)
    model.eval()
    x = torch.randn(a.batch, 3, *a.size, generator=gen)

    def forward(m: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return m(SSSegInputStructure(images=images, mode="TEST")).seg_logits

    def run_eval():
        return forward(model, x)

    randomise_and_calibrate_bn(model, run_eval, gen)
    respread_stage1(model, run_eval, gen)

    store: dict = {}
    handles = record(model, store)
    with torch.no_grad():
        logits = run_eval()
    for h in handles:
        h.remove()
    if not torch.equal(logits, store["logits"]):
        raise RuntimeError("decoder_stage2 output is not the segmentor's seg_logits; the hooks are stale")
    store["logits_resized"] = F.interpolate(logits, size=tuple(a.size), mode="bilinear", align_corners=False)
    sensitivity = rounding_sensitivity(model, forward, x, logits)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # TRAIN mode on a copy: BN uses batch statistics; dropout off so both implementations are deterministic.
    tmodel = copy.deepcopy(model)
    tmodel.train()
    for m in tmodel.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    k = cfg["num_classes"]
    targets = torch.randint(0, k, (a.batch, *a.size), generator=gen)
    targets[torch.rand(targets.shape, generator=gen) < IGNORE_FRACTION] = IGNORE_INDEX
    tstore: dict = {}
    handles = record(tmodel, tstore)
    res = tmodel(SSSegInputStructure(images=x, seg_targets=targets, mode="TRAIN"))
    for h in handles:
        h.remove()

    def classes_per_image(p):
        return [p[b].argmax(0).unique().numel() for b in range(p.shape[0])]

    dump = {
        "model": state,
        "cur_epoch": 0,
        "cur_iter": 0,
        "config": a.config,
        "num_classes": k,
        "seed": a.seed,
        "size": list(a.size),
        "batch": a.batch,
        "torch_version": str(torch.__version__),
        "ref_commit": reference_commit(a.src),
        "input": x,
        "eval": store,
        "stage1_min_margin": min_margin(store["preds_stage1"]),
        "stage1_classes": classes_per_image(store["preds_stage1"]),
        "rounding_sensitivity": sensitivity,
        "train": {
            "targets": targets,
            "losses": {n: float(v) for n, v in res.losses_log_dict.items()},
            "loss": res.loss.detach(),
            "tensors": tstore,
            "stage1_min_margin": min_margin(tstore["preds_stage1"]),
            "stage1_classes": classes_per_image(tstore["preds_stage1"]),
        },
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dump, a.out)
    summary = {
        "config": a.config,
        "ref_commit": dump["ref_commit"],
        "out": str(a.out),
        "state_keys": len(state),
        "logits": list(logits.shape),
        "stage1_min_margin": dump["stage1_min_margin"],
        "stage1_classes": dump["stage1_classes"],
        "rounding_sensitivity": sensitivity,
        "train_losses": dump["train"]["losses"],
        "train_stage1_min_margin": dump["train"]["stage1_min_margin"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
