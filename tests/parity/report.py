"""Numerical parity of ``isnet`` against the reference ISNet (sssegmentation), case by case.

Each case dumps a randomly initialised reference model with ``reference_dump.py`` (run by the reference's
interpreter), loads the dump through :func:`isnet.from_sssegmentation` and compares, on the dump's input:

- eval mode, plain path (``ISNet`` itself: the reference's operations in its order): every
  intermediate tensor the dump holds (4 backbone stages, head bottleneck, image-level context, stage-1
  logits, semantic-level context, LIP shortcut, stage-2 logits at feature resolution and resized to the
  input), as max abs diffs, plus stage-1 argmax agreement; the logits must agree to 1e-4;
- eval mode, default path (BatchNorm folded into the convs, ``channels_last``, Winograd for the wide 3x3 convs
  on the CPU): the same, but the logits
  only need to agree to twice the reference's own rounding sensitivity (how far its logits move when it
  runs in ``channels_last``, or on the input times 1 + 1e-6 noise; recorded in the dump), since the fast path
  rounds differently and ~60 layers plus attention amplify fp32 rounding about as much;
- train mode (dropout p=0 on both sides, BN on batch statistics): the same intermediates and the three
  weighted losses and their sum, as relative diffs; the reference's ignore value -100 is mapped to 255.

The parity tests (``test_reference_parity.py``) assert on these numbers; run as a script, this module writes
them for all cases to a JSON file and a markdown table::

    ISNET_REFERENCE_SRC=<checkout containing ssseg/> ISNET_REFERENCE_PYTHON=<its python> \\
        .venv/bin/python tests/parity/report.py parity.json [--markdown parity.md] [--dump-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isnet.meta.recipes import PARITY_ATOL

DUMP_SCRIPT = Path(__file__).with_name("reference_dump.py")
REFERENCE_IGNORE = -100
IGNORE_INDEX = 255
EVAL_ATOL = PARITY_ATOL
LOSS_RTOL = 1e-5
DEFAULT_SIZE = (97, 129)  # odd sizes catch align_corners and padding mistakes
DEFAULT_BATCH = 2

# Dump key -> the reference attribute it was recorded from; ours is found by the same last name component.
TENSOR_SOURCES = {
    "backbone": ("backbone", "backbone_net"),
    "feats": ("bottleneck",),
    "feats_il": ("ilc_net",),
    "preds_stage1": ("decoder_stage1",),
    "feats_sl": ("slc_net",),
    "shortcut": ("shortcut",),
    "logits": ("decoder_stage2",),
    "aux": ("auxiliary_decoder",),
}
TENSOR_ORDER = [
    "backbone.0",
    "backbone.1",
    "backbone.2",
    "backbone.3",
    "feats",
    "feats_il",
    "preds_stage1",
    "feats_sl",
    "shortcut",
    "logits",
    "logits_resized",
    "aux",
]
# ISNetLoss key -> reference losses_log_dict key
LOSS_KEYS = {
    "loss_stage2": "loss_cls_stage2",
    "loss_stage1": "loss_cls_stage1",
    "loss_aux": "loss_aux",
    "loss": "loss_total",
}


@dataclass(frozen=True)
class ParityCase:
    """One reference config to compare against.

    Args:
        name: short id used in test ids and the report.
        config: module name in ``ssseg/configs/isnet/``.
        num_classes: classes the config sets (checked against the converted model).
        shortcut: the LIP variant (layer1 shortcut, logits at ~1/4).
        act: head activation the config sets.
    """

    name: str
    config: str
    num_classes: int
    shortcut: bool = False
    act: str = "relu"


CASES = [
    ParityCase("r50_ade20k", "isnet_resnet50os8_ade20k", 150),
    ParityCase("r101_ade20k", "isnet_resnet101os8_ade20k", 150),
    ParityCase("s101_ade20k", "isnet_resnest101os8_ade20k", 150),
    ParityCase("r50_cocostuff10k", "isnet_resnet50os8_cocostuff10k", 182),
    ParityCase("r50_lip", "isnet_resnet50os8_lip", 20, shortcut=True, act="leaky_relu"),
]


def reference_src() -> str | None:
    """The reference checkout (folder containing ``ssseg/``) from ``$ISNET_REFERENCE_SRC``, if set."""
    return os.environ.get("ISNET_REFERENCE_SRC") or None


def reference_python() -> str:
    """The interpreter that can import the reference: ``$ISNET_REFERENCE_PYTHON``, else this one."""
    return os.environ.get("ISNET_REFERENCE_PYTHON") or sys.executable


def make_reference_dump(
    config: str,
    out: Path,
    src: str,
    python: str,
    size: tuple[int, int] = DEFAULT_SIZE,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Run ``reference_dump.py`` for ``config`` in a subprocess and return its JSON summary.

    Raises:
        RuntimeError: the subprocess failed; the message carries its stderr tail.
    """
    cmd = [
        python,
        str(DUMP_SCRIPT),
        config,
        str(out),
        "--size",
        str(size[0]),
        str(size[1]),
        "--batch",
        str(batch),
        "--seed",
        str(seed),
        "--src",
        src,
    ]
    env = dict(os.environ, ISNET_REFERENCE_SRC=src)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"reference dump for {config} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_dump(path: Path) -> dict[str, Any]:
    """Read a dump; files written by ``reference_dump.py`` hold only tensors and plain containers."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # older dumps may pickle a TorchVersion; they are local files we wrote ourselves
        return torch.load(path, map_location="cpu", weights_only=False)


def load_model(path: Path, dump: dict[str, Any], plain: bool = False) -> nn.Module:
    """Convert the dump's reference weights with the public converter (from the file when it loads safely).

    Args:
        path: the dump file.
        dump: its loaded content (used when the file holds objects ``weights_only`` refuses).
        plain: return the plain ISNet (the reference's operations in the reference's order); otherwise the
            inference copy :func:`isnet.accel.optimize_for_inference` builds (BN folded into convs,
            ``channels_last``, Winograd), which changes the rounding, which the network amplifies to about the
            reference's own ``rounding_sensitivity``.
    """
    from isnet import from_sssegmentation

    try:
        model = from_sssegmentation(path)
    except ValueError as err:
        if "refusing to load" not in str(err):
            raise
        model = from_sssegmentation(dump)
    if plain:
        return model
    try:
        from isnet.accel import optimize_for_inference
    except ImportError:  # versions before isnet.accel: the model's default eval path is the fast copy
        return model
    return optimize_for_inference(model.eval())


def fast_path_tolerance(sensitivity: dict[str, float] | None) -> float:
    """Tolerance for the default (fast) eval path: twice the reference's own rounding sensitivity, >= 1e-4."""
    if not sensitivity:
        return EVAL_ATOL
    return max(EVAL_ATOL, 2.0 * max(sensitivity.values()))


def _find_module(model: nn.Module, names: tuple[str, ...]) -> nn.Module | None:
    """The shallowest submodule whose own name is one of ``names`` (``head.bottleneck``, not ``ilc_net``'s)."""
    hits = [(q.count("."), q, m) for q, m in model.named_modules() if q and q.rsplit(".", 1)[-1] in names]
    return min(hits, key=lambda h: (h[0], h[1]))[2] if hits else None


def _record(model: nn.Module, store: dict[str, Any]) -> list:
    handles = []
    for key, names in TENSOR_SOURCES.items():
        module = _find_module(model, names)
        if module is None:
            continue

        def hook(mod, inp, out, key=key):
            if isinstance(out, dict):
                out = list(out.values())
            store[key] = [t.detach() for t in out] if isinstance(out, (list, tuple)) else out.detach()

        handles.append(module.register_forward_hook(hook))
    return handles


def _flatten(tensors: dict[str, Any]) -> dict[str, torch.Tensor]:
    flat = {}
    for key, value in tensors.items():
        if isinstance(value, (list, tuple)):
            flat.update({f"{key}.{i}": v for i, v in enumerate(value)})
        else:
            flat[key] = value
    return flat


def _tensor_diffs(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Max abs diff (and the reference's max magnitude, for scale) of every tensor both sides hold."""
    ours, ref = _flatten(ours), _flatten(ref)
    out = {}
    for key in sorted(ref, key=lambda k: TENSOR_ORDER.index(k) if k in TENSOR_ORDER else len(TENSOR_ORDER)):
        r = ref[key].float()
        if key not in ours:
            out[key] = {
                "max_abs": None,
                "ref_max_abs": r.abs().max().item(),
                "note": "not recorded on our side",
            }
            continue
        o = ours[key].float()
        if o.shape != r.shape:
            out[key] = {
                "max_abs": None,
                "ref_max_abs": r.abs().max().item(),
                "note": f"shape {tuple(o.shape)} vs reference {tuple(r.shape)}",
            }
            continue
        out[key] = {"max_abs": (o - r).abs().max().item(), "ref_max_abs": r.abs().max().item()}
    return out


def _argmax_agreement(ours: torch.Tensor | None, ref: torch.Tensor) -> float | None:
    if ours is None or ours.shape != ref.shape:
        return None
    return (ours.argmax(1) == ref.argmax(1)).float().mean().item()


def _disable_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0


def compare_eval(dump_path: Path, plain: bool = True) -> dict[str, Any]:
    """Eval-mode comparison: intermediates, ``predict_logits`` and ``model(x)`` against the dump.

    Args:
        dump_path: a dump written by ``reference_dump.py``.
        plain: compare the plain eval path (True) or the model's default path (False; see :func:`load_model`).

    Returns:
        ``{"plain", "logits_max_abs", "logits_resized_max_abs", "tensors": {key: {"max_abs", "ref_max_abs"}},
        "stage1_argmax_agreement", "stage1_min_margin", "rounding_sensitivity", "num_classes", "logits_shape",
        "ref_logits_shape"}``.
    """
    dump = load_dump(dump_path)
    model = load_model(dump_path, dump, plain=plain).eval()
    x = dump["input"]
    ref = dump["eval"]
    store: dict[str, Any] = {}
    handles = _record(model, store)
    with torch.no_grad():
        low = model.predict_logits(x)
    for h in handles:
        h.remove()
    # keep what predict_logits recorded
    recorded = dict(store)
    with torch.no_grad():
        full = model(x)
    recorded["logits"] = low  # what the public API returns, not just the hooked module
    recorded["logits_resized"] = full
    tensors = _tensor_diffs(recorded, ref)
    return {
        "plain": plain,
        "num_classes": int(getattr(model, "num_classes", -1)),
        "logits_shape": list(low.shape),
        "ref_logits_shape": list(ref["logits"].shape),
        "logits_max_abs": tensors["logits"]["max_abs"],
        "logits_resized_max_abs": tensors["logits_resized"]["max_abs"],
        "tensors": tensors,
        "stage1_argmax_agreement": _argmax_agreement(recorded.get("preds_stage1"), ref["preds_stage1"]),
        "stage1_min_margin": float(dump["stage1_min_margin"]),
        "rounding_sensitivity": dump.get("rounding_sensitivity"),
    }


def compare_train(dump_path: Path) -> dict[str, Any]:
    """Train-mode comparison (dropout p=0, batch-statistics BN): intermediates and the weighted losses.

    Returns:
        ``{"losses": {our key: {"ours", "ref", "rel_diff"}}, "tensors": {...}, "stage1_argmax_agreement",
        "stage1_min_margin"}``.
    """
    from isnet.models import ISNetLoss

    dump = load_dump(dump_path)
    model = load_model(dump_path, dump, plain=True)  # training never takes the fast path anyway
    model.train()
    _disable_dropout(model)
    train = dump["train"]
    target = train["targets"].clone()
    target[target == REFERENCE_IGNORE] = IGNORE_INDEX
    store: dict[str, Any] = {}
    handles = _record(model, store)
    with torch.no_grad():
        outputs = model(dump["input"])
    for h in handles:
        h.remove()
    losses = ISNetLoss(ignore_index=IGNORE_INDEX)(outputs, target)
    loss_diffs = {}
    for ours_key, ref_key in LOSS_KEYS.items():
        ref_value = float(train["losses"][ref_key])
        value = float(losses[ours_key]) if ours_key in losses else None
        rel = None if value is None else abs(value - ref_value) / max(abs(ref_value), 1e-12)
        loss_diffs[ours_key] = {"ours": value, "ref": ref_value, "rel_diff": rel}
    ref_tensors = train.get("tensors", {})
    return {
        "losses": loss_diffs,
        "tensors": _tensor_diffs(store, ref_tensors) if ref_tensors else {},
        "stage1_argmax_agreement": (
            _argmax_agreement(store.get("preds_stage1"), ref_tensors["preds_stage1"])
            if "preds_stage1" in ref_tensors
            else None
        ),
        "stage1_min_margin": float(train.get("stage1_min_margin", float("nan"))),
    }


def format_eval(name: str, result: dict[str, Any]) -> str:
    """One human-readable block of eval max abs diffs."""
    path = "plain eval path" if result["plain"] else "default eval path"
    lines = [f"[{name}] eval ({path}) max |ours - ref| (ref max |x|):"]
    for key, d in result["tensors"].items():
        value = "n/a (" + d.get("note", "") + ")" if d["max_abs"] is None else f"{d['max_abs']:.3e}"
        lines.append(f"  {key:<15} {value}  ({d['ref_max_abs']:.3g})")
    lines.append(
        f"  stage-1 argmax agreement {result['stage1_argmax_agreement']}, "
        f"reference min top-1/top-2 margin {result['stage1_min_margin']:.3e}"
    )
    sens = result.get("rounding_sensitivity")
    if sens:
        lines.append(
            "  reference vs itself (logits max abs): "
            + ", ".join(f"{k} {v:.3e}" for k, v in sens.items())
            + f"; default-path tolerance {fast_path_tolerance(sens):.3e}"
        )
    return "\n".join(lines)


def format_train(name: str, result: dict[str, Any]) -> str:
    """One human-readable block of train-mode loss and tensor diffs."""
    lines = [f"[{name}] train losses (ours / ref / rel diff):"]
    for key, d in result["losses"].items():
        ours = "n/a" if d["ours"] is None else f"{d['ours']:.7g}"
        rel = "n/a" if d["rel_diff"] is None else f"{d['rel_diff']:.3e}"
        lines.append(f"  {key:<12} {ours} / {d['ref']:.7g} / {rel}")
    for key, d in result["tensors"].items():
        value = "n/a" if d["max_abs"] is None else f"{d['max_abs']:.3e}"
        lines.append(f"  {key:<15} max abs {value}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2e}"


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Markdown tables: plain-path eval diffs per tensor, default-path logits, train loss relative diffs."""
    keys = [k for k in TENSOR_ORDER if any(k in r["eval"]["tensors"] for r in results)]
    head = "| case | " + " | ".join(f"`{k}`" for k in keys) + " | stage-1 argmax agree | stage-1 margin |"
    rows = [head, "|" + "---|" * (len(keys) + 3)]
    for r in results:
        cells = [_fmt(r["eval"]["tensors"].get(k, {}).get("max_abs")) for k in keys]
        agree = r["eval"]["stage1_argmax_agreement"]
        cells += ["n/a" if agree is None else f"{agree:.4f}", f"{r['eval']['stage1_min_margin']:.1e}"]
        rows.append(f"| {r['case']['name']} | " + " | ".join(cells) + " |")
    fast_head = (
        "| case | `logits` | `logits_resized` | stage-1 argmax agree | reference vs itself, channels_last "
        "| reference vs itself, input x (1 + 1e-6 noise) | tolerance |"
    )
    fast_rows = [fast_head, "|" + "---|" * 7]
    for r in results:
        f, sens = r["eval_default"], r["eval_default"].get("rounding_sensitivity") or {}
        agree = f["stage1_argmax_agreement"]
        cells = [
            _fmt(f["logits_max_abs"]),
            _fmt(f["logits_resized_max_abs"]),
            "n/a" if agree is None else f"{agree:.4f}",
            _fmt(sens.get("channels_last")),
            _fmt(sens.get("input_noise_1e-6")),
            _fmt(fast_path_tolerance(sens)),
        ]
        fast_rows.append(f"| {r['case']['name']} | " + " | ".join(cells) + " |")
    loss_head = "| case | " + " | ".join(f"`{k}` rel diff" for k in LOSS_KEYS) + " | train `logits` max abs |"
    loss_rows = [loss_head, "|" + "---|" * (len(LOSS_KEYS) + 2)]
    for r in results:
        cells = [_fmt(r["train"]["losses"][k]["rel_diff"]) for k in LOSS_KEYS]
        cells.append(_fmt(r["train"]["tensors"].get("logits", {}).get("max_abs")))
        loss_rows.append(f"| {r['case']['name']} | " + " | ".join(cells) + " |")
    return (
        "Eval mode, plain path (`ISNet`): max abs diff per tensor "
        f"(tolerance on `logits` and `logits_resized`: {EVAL_ATOL:g}).\n\n"
        + "\n".join(rows)
        + "\n\nEval mode, default path (BatchNorm folded, `channels_last`, Winograd 3x3 convs on the CPU): max abs "
        "logits diff, next to how far "
        "the reference's own logits move under a rounding-level change (tolerance: twice that, at least "
        f"{EVAL_ATOL:g}).\n\n"
        + "\n".join(fast_rows)
        + f"\n\nTrain mode (dropout p=0): relative diff of the weighted losses (tolerance {LOSS_RTOL:g}).\n\n"
        + "\n".join(loss_rows)
        + "\n"
    )


def case_passes(result: dict[str, Any]) -> bool:
    """Whether one case meets every tolerance (plain and default eval paths, train losses)."""
    plain, default = result["eval"], result["eval_default"]
    tol = fast_path_tolerance(default.get("rounding_sensitivity"))
    checks = [
        plain["logits_max_abs"] is not None and plain["logits_max_abs"] <= EVAL_ATOL,
        plain["logits_resized_max_abs"] is not None and plain["logits_resized_max_abs"] <= EVAL_ATOL,
        default["logits_max_abs"] is not None and default["logits_max_abs"] <= tol,
        default["logits_resized_max_abs"] is not None and default["logits_resized_max_abs"] <= tol,
    ]
    checks += [
        d["rel_diff"] is not None and d["rel_diff"] <= LOSS_RTOL
        for k, d in result["train"]["losses"].items()
        if k != "loss"
    ]
    return all(checks)


def run_case(case: ParityCase, dump_dir: Path, src: str, python: str) -> dict[str, Any]:
    """Dump (unless ``dump_dir`` already holds ``<config>.pth``) and compare one case in both modes."""
    dump_path = dump_dir / f"{case.config}.pth"
    summary = None
    if not dump_path.is_file():
        summary = make_reference_dump(case.config, dump_path, src, python)
    return {
        "case": asdict(case),
        "dump": str(dump_path),
        "dump_summary": summary,
        "eval": compare_eval(dump_path, plain=True),
        "eval_default": compare_eval(dump_path, plain=False),
        "train": compare_train(dump_path),
    }


def main(argv: list[str] | None = None) -> int:
    """Compare every case and write the JSON report and the markdown table."""
    p = argparse.ArgumentParser(description="Write the isnet vs sssegmentation parity report.")
    p.add_argument("output", type=Path, help="JSON report path; the markdown table goes beside it (.md)")
    p.add_argument("--markdown", type=Path, default=None, help="markdown path (default: OUTPUT with .md)")
    p.add_argument("--cases", nargs="+", choices=[c.name for c in CASES], default=None)
    p.add_argument("--dump-dir", type=Path, default=None, help="keep/reuse dumps here (default: a temp dir)")
    p.add_argument(
        "--src", default=reference_src(), help="reference checkout (default: $ISNET_REFERENCE_SRC)"
    )
    p.add_argument("--python", default=reference_python(), help="reference interpreter")
    a = p.parse_args(argv)
    if not a.src or not (Path(a.src) / "ssseg").is_dir():
        p.error(f"--src / ISNET_REFERENCE_SRC must name a folder that contains ssseg/, got {a.src!r}")
    cases = [c for c in CASES if a.cases is None or c.name in a.cases]
    results = []
    with tempfile.TemporaryDirectory(prefix="isnet_parity_") as tmp:
        dump_dir = a.dump_dir or Path(tmp)
        dump_dir.mkdir(parents=True, exist_ok=True)
        for case in cases:
            start = time.perf_counter()
            result = run_case(case, dump_dir, a.src, a.python)
            result["seconds"] = round(time.perf_counter() - start, 1)
            print(format_eval(case.name, result["eval"]))
            print(format_eval(case.name, result["eval_default"]))
            print(format_train(case.name, result["train"]), flush=True)
            results.append(result)
    report = {
        "tolerances": {
            "eval_atol_plain_path": EVAL_ATOL,
            "eval_default_path": "max(1e-4, 2 x the reference's rounding_sensitivity)",
            "loss_rtol": LOSS_RTOL,
        },
        "input": {"size": list(DEFAULT_SIZE), "batch": DEFAULT_BATCH, "seed": 0},
        "environment": {
            "torch": str(torch.__version__),
            "python": platform.python_version(),
            "reference_python": a.python,
            "reference_src": a.src,
        },
        "results": results,
    }
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(report, indent=2))
    md = a.markdown or a.output.with_suffix(".md")
    md.write_text(markdown_table(results))
    print(f"wrote {a.output} and {md}")
    ok = all(case_passes(r) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
