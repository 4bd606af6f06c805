"""``optimize_for_inference``: an explicit, frozen fast copy of an ISNet for evaluation and prediction.

The copy holds the backbone and the head (no auxiliary head) with BatchNorm folded into the convolutions and
``channels_last`` weights; on the CPU in fp32 the wide 3x3 convolutions run as Winograd F(2x2, 3x3) and the
ResNet bottlenecks add their last 1x1 convolution into the shortcut; the classifiers stay fp32 under autocast.
Its fp32 logits equal the plain model's up to rounding (docs/parity.md). It is a snapshot: if the source
model's parameters or buffers change afterwards, calling the copy raises instead of answering with old weights.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import torch
from torch import nn

from isnet.accel.fusion import accumulate_residuals_, fold_batchnorm_, use_winograd_
from isnet.models.layers.resize import resize_bilinear
from isnet.models.segmentor import ISNet, check_images

__all__ = [
    "InferenceModel",
    "StaleSnapshotError",
    "compile_options",
    "optimize_for_inference",
    "with_freezing",
]

_COMPILE_KEYS = ("mode", "dynamic", "fullgraph", "backend", "options")


class StaleSnapshotError(RuntimeError):
    """The source model changed after :func:`optimize_for_inference` took the snapshot."""


def compile_options(compile: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """``torch.compile`` arguments from ``False``/``None`` (no compile), ``True`` (defaults) or a dict."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if not isinstance(compile, dict):
        raise ValueError(f"compile must be true, false or a dict of torch.compile arguments, got {compile!r}")
    if unknown := sorted(set(compile) - set(_COMPILE_KEYS)):
        raise ValueError(f"compile has unknown keys {unknown}; allowed: {list(_COMPILE_KEYS)}")
    return dict(compile)


def with_freezing(options: dict[str, Any]) -> dict[str, Any]:
    """``torch.compile`` arguments with inductor's ``freezing`` on (a ``mode`` is spelt out as its options,
    since torch.compile takes either a mode or options)."""
    if options.get("backend", "inductor") != "inductor":
        return options
    options = dict(options)
    mode = options.pop("mode", None)
    inductor = dict(torch._inductor.list_mode_options(mode)) if mode else {}
    options["options"] = {**inductor, "freezing": True, **(options.get("options") or {})}
    return options


def _fingerprint(model: ISNet) -> tuple[object, ...]:
    # in-place updates (optimiser steps, load_state_dict, BN statistics) bump the version counters; .to() and a
    # replaced module do not, so the tensors' identity, device and dtype are part of it
    tensors = [*model.parameters(), *model.buffers()]
    versions = tuple((id(t), 0 if t.is_inference() else t._version) for t in tensors)
    return (str(tensors[0].device), tensors[0].dtype, versions)


class InferenceModel(nn.Module):
    """The fast eval copy of an :class:`isnet.models.ISNet` (build it with :func:`optimize_for_inference`).

    Called like the model in eval mode (``forward``, ``predict_logits``), inference only; carries the source's
    ``num_classes``, ``class_names``, ``palette``, ``meta`` and ``config``.
    """

    def __init__(
        self, model: ISNet, dtype: torch.dtype | None = None, compile: bool | dict[str, Any] | None = None
    ):
        super().__init__()
        if not isinstance(model, ISNet):
            raise TypeError(f"optimize_for_inference expects an isnet ISNet, got {type(model).__name__}")
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype or None, got {dtype}")
        options = compile_options(compile)
        self.num_classes, self.class_names, self.palette = model.num_classes, model.class_names, model.palette
        self.config, self.meta, self.backbone_name = model.config, model.meta, model.backbone_name
        self._source = weakref.ref(model)
        self._source_fingerprint = _fingerprint(model)
        fast = copy.deepcopy(nn.ModuleDict({"backbone": model.backbone, "head": model.head})).eval()
        fold_batchnorm_(fast)  # in fp32, before any cast: a bf16 copy carries the rounding of one cast only
        if dtype is not None:
            for module in fast.modules():  # the classifiers (keep_fp32) stay fp32
                tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
                for tensor in [] if getattr(module, "keep_fp32", False) else tensors:
                    if tensor.is_floating_point():
                        tensor.data = tensor.data.to(dtype)
        fast = fast.to(memory_format=torch.channels_last).requires_grad_(False)
        self.backbone, self.head = fast["backbone"], fast["head"]
        #: the compute dtype (the classifiers stay fp32)
        self.dtype = self.head.bottleneck[0].weight.dtype
        if (
            options is None
            and self.dtype == torch.float32
            and self.head.bottleneck[0].weight.device.type == "cpu"
        ):
            use_winograd_(self)
            accumulate_residuals_(self)
        return_layers = getattr(self.backbone, "return_layers", None)
        if isinstance(return_layers, dict) and len(return_layers) == 4:
            # eval needs only the last stage (and layer1 for the shortcut): not keeping layer2/layer3 alive
            # until the head runs saves ~200 MB at 1024x2048; the head indexes features[0] and features[-1]
            names = list(return_layers)
            keep = {names[-1]} | ({names[0]} if self.head.shortcut is not None else set())
            self.backbone.return_layers = {k: v for k, v in return_layers.items() if k in keep}
        # kept out of the module tree: the compiled module wraps this one, it is not a second set of weights
        self.__dict__["_compiled"] = (
            None if options is None else torch.compile(self.logits, **with_freezing(options))
        )

    def check_fresh(self) -> None:
        """Raise :class:`StaleSnapshotError` if the source model changed since the snapshot."""
        source = self._source()
        if source is not None and _fingerprint(source) != self._source_fingerprint:
            raise StaleSnapshotError(
                "this inference copy is stale: the source model's parameters, buffers, device or dtype changed "
                "since optimize_for_inference; call optimize_for_inference(model) again"
            )

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The copy's computation, without checks (what ``torch.compile`` traces)."""
        features = self.backbone(images.to(self.dtype).contiguous(memory_format=torch.channels_last))
        feats = self.head.bottleneck(features[-1])
        low_level = features[0] if self.head.shortcut is not None else None
        del features  # the last stage is not needed after the bottleneck: free it before the head's peak
        return self.head.decode(feats, low_level)[1].contiguous()

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Stage-2 logits at feature resolution, as :meth:`isnet.models.ISNet.predict_logits`."""
        check_images(images)
        self.check_fresh()
        return (self._compiled or self.logits)(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return resize_bilinear(self.predict_logits(images), images.shape[2:])


def optimize_for_inference(
    model: ISNet, dtype: torch.dtype | None = None, compile: bool | dict[str, Any] | None = None
) -> InferenceModel:
    """A frozen fast copy of ``model`` for evaluation and prediction (``model`` itself is not changed).

    Args:
        model: the network, on the device the copy should run on.
        dtype: compute dtype: ``None`` keeps the model's; ``torch.bfloat16`` / ``torch.float16`` build a copy to
            run under ``torch.autocast`` of that dtype (autocast would re-cast fp32 weights on every call).
        compile: ``True`` or a dict of ``torch.compile`` arguments (``mode``, ``dynamic``, ``fullgraph``,
            ``backend``, ``options``), with inductor's ``freezing``; the first call compiles. Without compile an
            fp32 CPU copy runs the wide 3x3 convolutions as Winograd F(2x2, 3x3).

    Returns:
        An :class:`InferenceModel`; calling it after ``model`` changed raises :class:`StaleSnapshotError`.
    """
    return InferenceModel(model, dtype=dtype, compile=compile)
