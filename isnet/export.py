"""Export ISNet for deployment: ONNX, TorchScript and ``torch.export`` programs, each checked against PyTorch.

Every export has a dynamic batch, height and width and runs the plain eval path (BatchNorm kept as its own op),
returning stage-2 logits at the input size (``resolution="input"``, as ``model(images)`` in eval) or at feature
resolution (``resolution="feature"``, as :meth:`isnet.ISNet.predict_logits`). ONNX uses torch's TorchScript-based
exporter (needs only ``onnx``) or, with ``dynamo=True``, the ``torch.export``-based one (needs ``onnxscript``).
torch cannot yet save timm's ``AvgPool2dSame`` (e.g. ``resnet18d``) in a dynamic-shape ``.pt2`` program.

Each file is written under a temporary name, checked on random images of two sizes
(``max |exported - torch| <= rtol * max |torch| + atol``, default rtol 1e-4, atol 1e-5, fp32 CPU), and only
then renamed into place; an existing file is kept unless ``overwrite=True``. Inputs: float32 ``(N, 3, H, W)``
RGB normalised with ImageNet mean/std in 0-255 units (the ``isnet.mean`` / ``isnet.std`` metadata), H, W >= 9.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.models import ISNet
from isnet.utils.io import atomic_path

__all__ = [
    "FORMATS",
    "ExportCheck",
    "ExportResult",
    "ExportVerificationError",
    "LogitsExport",
    "export_model",
    "export_metadata",
    "format_from_suffix",
]

#: Export formats and their usual file suffix.
FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2"}
_RESOLUTIONS = ("input", "feature")


class ExportVerificationError(RuntimeError):
    """The exported artifact disagrees with PyTorch beyond the tolerance (nothing was written)."""


class LogitsExport(nn.Module):
    """ISNet's eval forward as a traceable module (the plain modules, without the input checks).

    Args:
        model: the network; used in eval mode.
        resolution: ``"input"`` (logits at the input size) or ``"feature"`` (as :meth:`isnet.ISNet.predict_logits`).

    Shape:
        images (N, 3, H, W) -> logits (N, K, H, W) or (N, K, h, w).
    """

    def __init__(self, model: ISNet, resolution: str = "input") -> None:
        super().__init__()
        if resolution not in _RESOLUTIONS:
            raise ValueError(f"resolution must be one of {_RESOLUTIONS}, got {resolution!r}")
        self.backbone = model.backbone
        self.head = model.head
        self.resolution = resolution

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        _, logits = self.head(features)
        if self.resolution == "feature":
            return logits
        # the same resize as ISNet.forward in eval mode
        return nn.functional.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)


@dataclass
class ExportCheck:
    """Agreement of the exported artifact with PyTorch on one input."""

    input_shape: list[int]
    output_shape: list[int]
    max_abs_diff: float
    max_abs_torch: float
    argmax_agreement: float  # fraction of pixels whose predicted class agrees
    passed: bool


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how it was checked."""

    path: str
    format: str
    resolution: str
    rtol: float
    atol: float
    checks: list[ExportCheck] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_from_suffix(path: str | os.PathLike) -> str:
    """The export format of a file name (``.onnx``, ``.pt``/``.ts``, ``.pt2``); ValueError for another suffix."""
    suffix = Path(path).suffix.lower()
    table = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "exported_program"}
    if suffix not in table:
        raise ValueError(
            f"cannot tell the export format of {path}: use a suffix in {sorted(table)} or pass format"
        )
    return table[suffix]


def export_metadata(model: ISNet, resolution: str) -> dict[str, str]:
    """String metadata stored with each export: config, classes, palette, input normalisation, output."""
    meta = {
        "isnet.config": json.dumps(model.architecture, sort_keys=True),
        "isnet.class_names": json.dumps(list(model.class_names)),
        "isnet.palette": json.dumps([list(c) for c in model.palette]),
        "isnet.mean": json.dumps(list(IMAGENET_MEAN_255)),
        "isnet.std": json.dumps(list(IMAGENET_STD_255)),
        "isnet.input": "images: float32 (N, 3, H, W), RGB, (pixel - mean) / std with mean/std in 0-255 units",
        "isnet.output": (
            "logits: float32 (N, K, H, W) stage-2 logits at the input size"
            if resolution == "input"
            else "logits: float32 (N, K, h, w) stage-2 logits at feature resolution (resize them to the image)"
        ),
    }
    if model.meta.get("recipe"):
        meta["isnet.zoo"] = model.meta["recipe"]
    return meta


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    # the tracers warn about the constant Python-side shape checks; the two-size check below is the real test
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        yield


def _write_onnx(
    wrapper: nn.Module, sample: torch.Tensor, tmp: Path, opset: int, meta: dict[str, str], dynamo: bool
) -> None:
    import onnx

    names = dict(input_names=["images"], output_names=["logits"])
    with _quiet_tracing(), torch.no_grad():
        if dynamo:  # torch.export-based exporter (needs onnxscript); names its dynamic dimensions itself
            from torch.export import Dim

            dims = {"images": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}}
            kwargs = dict(dynamic_shapes=dims, opset_version=max(opset, 18), external_data=False)
        else:  # TorchScript-based exporter: needs only onnx (deprecated by torch, the lighter dependency)
            axes = {"images": {0: "batch", 2: "height", 3: "width"}}
            axes["logits"] = {0: "batch", 2: "out_height", 3: "out_width"}
            kwargs = dict(dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
        torch.onnx.export(wrapper, (sample,), str(tmp), dynamo=dynamo, **names, **kwargs)
    proto = onnx.load(str(tmp))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))


def _onnx_runner(tmp: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def _write_torchscript(wrapper: nn.Module, sample: torch.Tensor, tmp: Path, meta: dict[str, str]) -> None:
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(wrapper, (sample,), check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={"isnet.json": json.dumps(meta)})


def _write_program(wrapper: nn.Module, sample: torch.Tensor, tmp: Path, meta: dict[str, str]) -> None:
    from torch.export import Dim

    dims = {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}
    with _quiet_tracing():
        program = torch.export.export(wrapper, (sample,), dynamic_shapes={"images": dims})
    try:
        torch.export.save(program, str(tmp), extra_files={"isnet.json": json.dumps(meta)})
    except Exception as err:  # torch's serialiser lacks some symbolic-shape ops (e.g. math.ceil)
        reason = str(err).splitlines()[0]
        raise RuntimeError(
            f"torch.export traced the model but cannot save its dynamic-shape program ({reason}): timm's "
            "AvgPool2dSame (dilated shortcuts of e.g. resnet18d; the reference backbones save fine). Export to "
            "onnx or torchscript instead."
        ) from err


def _compare(
    runner: Callable[[torch.Tensor], torch.Tensor],
    reference: nn.Module,
    sizes: Sequence[tuple[int, int, int]],
    rtol: float,
    atol: float,
    seed: int,
) -> list[ExportCheck]:
    gen = torch.Generator().manual_seed(seed)
    checks = []
    for batch, height, width in sizes:
        images = torch.randn(batch, 3, height, width, generator=gen)
        with torch.no_grad():
            expected = reference(images)
            got = runner(images).to(expected.dtype)
        if got.shape != expected.shape:
            checks.append(ExportCheck(list(images.shape), list(got.shape), float("inf"), 0.0, 0.0, False))
            continue
        diff, scale = (got - expected).abs().max().item(), expected.abs().max().item()
        agreement = (got.argmax(1) == expected.argmax(1)).float().mean().item()
        passed = diff <= rtol * scale + atol
        checks.append(ExportCheck(list(images.shape), list(got.shape), diff, scale, agreement, passed))
    return checks


def export_model(
    model: ISNet,
    path: str | os.PathLike,
    format: str | None = None,
    sample_size: Sequence[int] = (512, 512),
    resolution: str = "input",
    opset: int = 17,
    overwrite: bool = False,
    verify: bool = True,
    verify_sizes: Sequence[Sequence[int]] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seed: int = 0,
    dynamo: bool = False,
) -> ExportResult:
    """Export ``model`` with dynamic batch/height/width, check it against PyTorch, then move it into place.

    Args:
        model: the network (its weights are used as they are; it is not modified).
        path: output file.
        format: ``onnx``, ``torchscript`` or ``exported_program``; default from the suffix.
        sample_size: (H, W) of the tracing input (batch 2).
        resolution: ``input`` (logits at the input size) or ``feature`` (logits at feature resolution).
        opset: ONNX opset (>= 14 for ``scaled_dot_product_attention``).
        overwrite: replace an existing file.
        verify: run the exported artifact against PyTorch before writing it.
        verify_sizes: (batch, H, W) inputs to check; default (1, H, W) and (2, 3H/4 + 1, 5W/4 + 3).
        rtol: allowed max abs difference relative to the largest PyTorch logit.
        atol: allowed absolute slack on top of ``rtol``.
        seed: seed of the random check images.
        dynamo: ONNX only: torch's ``torch.export``-based exporter (needs ``onnxscript``).

    Returns:
        An :class:`ExportResult` (path, checks with max abs differences and argmax agreement, metadata).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before any work).
        ValueError: a bad format, resolution, size or tolerance.
        ExportVerificationError: a check failed; no file is written.
    """
    path = Path(path)
    fmt = format or format_from_suffix(path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if resolution not in _RESOLUTIONS:
        raise ValueError(f"resolution must be one of {_RESOLUTIONS}, got {resolution!r}")
    size = tuple(int(s) for s in sample_size)
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"sample_size must be (H, W) with both >= 16, got {tuple(sample_size)}")
    h, w = size
    default_sizes = [(1, h, w), (2, h * 3 // 4 + 1, w * 5 // 4 + 3)]  # the sample size and an odd size
    sizes = [tuple(int(v) for v in s) for s in verify_sizes] if verify_sizes else default_sizes
    if any(len(s) != 3 or s[0] < 1 or min(s[1:]) < 9 for s in sizes):
        raise ValueError(
            f"verify_sizes must be (batch, H, W) triples with batch >= 1 and H, W >= 9, got {sizes}"
        )
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    if dynamo and fmt != "onnx":
        raise ValueError(f"dynamo=True applies to the onnx format only, got format {fmt!r}")
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        raise ImportError("dynamo=True (CLI: --dynamo) needs the onnxscript package: pip install onnxscript")
    if fmt == "onnx" and opset < 14:
        raise ValueError(f"opset must be >= 14 (scaled_dot_product_attention), got {opset}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it")

    was_training = model.training
    model.eval()
    try:
        wrapper = LogitsExport(model, resolution).eval()
        meta = export_metadata(model, resolution)
        sample = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
        result = ExportResult(str(path), fmt, resolution, rtol, atol, metadata=meta)
        with atomic_path(path, overwrite) as tmp:
            if fmt == "onnx":
                _write_onnx(wrapper, sample, tmp, opset, meta, dynamo)
                load = _onnx_runner
            elif fmt == "torchscript":
                _write_torchscript(wrapper, sample, tmp, meta)
                load = lambda tmp: torch.jit.load(str(tmp), map_location="cpu")  # noqa: E731
            else:
                _write_program(wrapper, sample, tmp, meta)
                load = lambda tmp: torch.export.load(str(tmp)).module()  # noqa: E731
            if verify:
                with _quiet_tracing():
                    runner = load(tmp)
                result.checks = _compare(runner, wrapper, sizes, rtol, atol, seed + 1)
                failed = [c for c in result.checks if not c.passed]
                if failed:
                    lines = "\n  ".join(
                        f"input {c.input_shape}: max |diff| {c.max_abs_diff:.3g} vs allowed "
                        f"{rtol * c.max_abs_torch + atol:.3g} (output {c.output_shape})"
                        for c in failed
                    )
                    raise ExportVerificationError(
                        f"{fmt} export of {path.name} disagrees with PyTorch; nothing was written:\n  {lines}"
                    )
    finally:
        model.train(was_training)
    return result
