"""ISNet segmentor: a timm dilated backbone, the ISNet head and the FCN auxiliary head.

Paper: Jin et al., "ISNet: Integrate Image-Level and Semantic-Level Context for Semantic Segmentation",
ICCV 2021. Reproduces sssegmentation ``segmentors/isnet/isnet.py`` (forward order, resizing, losses inputs).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from isnet.models.backbones import build_backbone
from isnet.models.fusion import accumulate_residuals_, make_inference_copy, use_winograd_
from isnet.models.heads import ISNetHead, build_auxiliary_decoder
from isnet.models.layers.conv import ACTIVATIONS
from isnet.models.layers.resize import resize_bilinear

__all__ = ["ISNet"]


class ISNet(nn.Module):
    """ISNet for semantic segmentation.

    Args:
        backbone: ``resnet50_d8``, ``resnet101_d8``, ``resnest101_d8`` (the model zoo's) or any timm model name
            supporting ``features_only`` + ``output_stride`` (e.g. ``resnet18d`` for quick CPU runs).
        num_classes: number of classes K.
        pretrained: backbone ImageNet weights: ``False`` (default, nothing is downloaded), ``True`` (timm's
            tag for the backbone), a timm tag or a local file; see :func:`isnet.models.build_backbone`.
        feats_channels: head width C (512 in all reference configs).
        transform_channels: attention width T (256).
        dropout: ``Dropout2d`` probability before each classifier (0.1).
        shortcut: LIP variant: add the 48-channel layer1 shortcut; logits come out at 1/4 instead of 1/8.
        act: head activation, ``relu`` or ``leaky_relu`` (LIP). The backbone always uses ReLU.
        aux: build the FCN auxiliary head on layer3 (used only by the training loss).
        fast_inference: in eval mode without autograd, run a cached copy with BatchNorm folded into the convs
            and ``channels_last`` weights (fp32, equal to the plain path within 1e-4 on the logits). The copy is
            rebuilt whenever a parameter or buffer changes (``load_state_dict``, an optimiser step).
        winograd: in that copy on the CPU in fp32, compute the 3x3 stride-1 convolutions with >= 256 channels
            with Winograd F(2x2, 3x3) (:class:`isnet.models.layers.winograd.WinogradConv2d`): 2.25x fewer
            multiplications, 0.55-0.7x the time of oneDNN's direct convolution here, and a smaller error
            against float64 than the direct convolution. Not used under autocast, on CUDA or with ``compile``.
        compile: ``torch.compile`` the training forward and the eval fast path: ``False`` (default), ``True``
            or a dict of ``torch.compile`` arguments (``mode``, ``dynamic``, ``fullgraph``, ``backend``,
            ``options``). The eval copy is compiled with inductor's ``freezing``, which treats the folded weights
            as constants (prepacked, conv + bias + activation fused). The first call of each compiles (tens of
            seconds on a CPU); see docs/benchmarks.md for what it gains. Can be changed later with
            :meth:`set_compile`. Not part of :attr:`config`: checkpoints do not carry it.

    Shape:
        images (N, 3, H, W) normalised float. Train mode returns ``{"stage1", "stage2", "aux"}`` logits
        (N, K, H, W); eval mode returns the stage-2 logits (N, K, H, W). Both bilinearly resized to the input
        size with ``align_corners=False``. :meth:`predict_logits` returns stage-2 logits at feature resolution.
    """

    def __init__(
        self,
        backbone: str = "resnet50_d8",
        num_classes: int = 150,
        pretrained: bool | str = False,
        feats_channels: int = 512,
        transform_channels: int = 256,
        dropout: float = 0.1,
        shortcut: bool = False,
        act: str = "relu",
        aux: bool = True,
        fast_inference: bool = True,
        winograd: bool = True,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.config: dict[str, Any] = dict(
            backbone=backbone,
            num_classes=num_classes,
            feats_channels=feats_channels,
            transform_channels=transform_channels,
            dropout=dropout,
            shortcut=shortcut,
            act=act,
            aux=aux,
        )
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, pretrained=pretrained)
        channels = self.backbone.feature_info.channels()
        self.head = ISNetHead(
            in_channels=channels[-1],
            num_classes=num_classes,
            feats_channels=feats_channels,
            transform_channels=transform_channels,
            dropout=dropout,
            act=act,
            shortcut_in_channels=channels[0] if shortcut else None,
        )
        self.auxiliary_decoder = (
            build_auxiliary_decoder(channels[2], num_classes, feats_channels, dropout, act) if aux else None
        )
        self.fast_inference = fast_inference
        self.winograd = winograd
        self._inference_cache: tuple[tuple[int, ...], nn.Module] | None = None
        self.compile_options: dict[str, Any] | None = None
        self._compiled_train: Any = None
        self.set_compile(compile)

    def set_compile(self, compile: bool | dict[str, Any]) -> ISNet:
        """Turn ``torch.compile`` of the training forward and the eval fast path on or off (see ``compile``)."""
        self.compile_options = _compile_options(compile)
        self._compiled_train = None
        self._inference_cache = None
        return self

    def __getstate__(self) -> dict[str, Any]:
        # compiled callables and the cached copy are rebuilt on demand; they neither pickle nor deep-copy
        state = self.__dict__.copy()
        state["_compiled_train"] = None
        state["_inference_cache"] = None
        return state

    def _state_version(self) -> tuple[object, ...]:
        # in-place updates (optimiser steps, load_state_dict, BN statistics) bump these counters; .to() does not,
        # so device and dtype are part of the key
        tensors = [
            *self.backbone.parameters(),
            *self.head.parameters(),
            *self.backbone.buffers(),
            *self.head.buffers(),
        ]
        return (*(t._version for t in tensors), str(tensors[0].device), tensors[0].dtype)

    def _fast_path(self) -> nn.Module | None:
        """The fused eval copy of backbone + head, or None when the plain modules must run.

        Under CPU/GPU autocast the copy holds weights already in the autocast dtype: autocast does not cache
        weight casts when autograd is off, so it would otherwise re-cast every weight on every call.
        """
        if self.training or not self.fast_inference or torch.is_grad_enabled():
            return None
        device_type = next(self.head.parameters()).device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        version = (*self._state_version(), dtype, self.winograd)
        if self._inference_cache is None or self._inference_cache[0] != version:
            self._inference_cache = None  # free the old copy before building the new one
            modules = nn.ModuleDict({"backbone": self.backbone, "head": self.head})
            fast = FusedNetwork(make_inference_copy(modules, dtype=dtype))
            fp32_cpu = (
                dtype is None
                and device_type == "cpu"
                and self.head.bottleneck[0].weight.dtype == torch.float32
            )
            if self.winograd and fp32_cpu and self.compile_options is None:
                use_winograd_(fast)
                accumulate_residuals_(fast)
            return_layers = getattr(fast.backbone, "return_layers", None)
            if isinstance(return_layers, dict) and len(return_layers) == 4:
                # eval needs only the last stage (and layer1 for the shortcut): not keeping layer2/layer3 alive
                # until the head runs saves ~200 MB at 1024x2048; the head indexes features[0] and features[-1]
                names = list(return_layers)
                keep = {names[-1]} | ({names[0]} if self.head.shortcut is not None else set())
                fast.backbone.return_layers = {k: v for k, v in return_layers.items() if k in keep}
            if self.compile_options is not None:
                fast = torch.compile(fast, **_with_freezing(self.compile_options))
            self._inference_cache = (version, fast)
        return self._inference_cache[1]

    def train(self, mode: bool = True) -> ISNet:
        if mode:
            self._inference_cache = None  # free the fused copy while training
        return super().train(mode)

    def _check_input(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"ISNet expects a torch.Tensor of shape (N, 3, H, W), got {type(images).__name__}"
            )
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ISNet expects images of shape (N, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(
                f"ISNet expects normalised floating-point images, got dtype {images.dtype}; "
                "convert with (image.float() - mean) / std as in isnet.data.transforms"
            )
        if images.shape[2] < 8 or images.shape[3] < 8:
            raise ValueError(f"images must be at least 8x8 pixels, got {tuple(images.shape[2:])}")
        if self.training and images.shape[0] * -(-images.shape[2] // 8) * -(-images.shape[3] // 8) < 2:
            raise ValueError(
                f"training BatchNorm needs more than one value per channel, but a batch of {images.shape[0]} "
                f"image(s) of {tuple(images.shape[2:])} gives a single feature pixel; use a larger crop or batch"
            )

    def _forward_features(
        self, images: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        self._check_input(images)
        weight_dtype = self.head.bottleneck[0].weight.dtype
        if images.dtype != weight_dtype and not torch.is_autocast_enabled(images.device.type):
            images = images.to(
                weight_dtype
            )  # e.g. float64 or float16 input to an fp32 model: compute in fp32
        fast = self._fast_path()
        if fast is not None:
            return fast(images)
        features = self.backbone(images)
        preds_stage1, preds_stage2 = self.head(features)
        return features, preds_stage1, preds_stage2

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Stage-2 logits at feature resolution (1/8; ~1/4 with the shortcut), exactly what the reference's
        test mode returns, for inference code that resizes once to the original image size."""
        return self._forward_features(images)[2]

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = images.shape[2:] if isinstance(images, torch.Tensor) else None
        if self.training and self.compile_options is not None:
            self._check_input(images)
            if self._compiled_train is None:
                self._compiled_train = torch.compile(self._forward_train, **self.compile_options)
            return self._compiled_train(images)
        if self.training:
            return self._forward_train(images)
        _, _, preds_stage2 = self._forward_features(images)
        return F.interpolate(preds_stage2, size=size, mode="bilinear", align_corners=False)

    def _forward_train(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        size = images.shape[2:]
        features, preds_stage1, preds_stage2 = self._forward_features(images)
        outputs = {"stage2": preds_stage2, "stage1": preds_stage1}
        if self.auxiliary_decoder is not None:
            outputs["aux"] = self.auxiliary_decoder(features[2])
        # the reference computes every loss on logits upsampled to the crop size
        # the same F.interpolate forward; its backward runs as two matmuls (isnet.models.layers.resize)
        return {k: resize_bilinear(v, size) for k, v in outputs.items()}


class FusedNetwork(nn.Module):
    """The eval copy of backbone + head (BatchNorm folded, ``channels_last``) as one module, so that it can be
    handed to ``torch.compile`` whole.

    Shape:
        images (N, 3, H, W) -> ([], stage-1 logits, stage-2 logits contiguous); the backbone features are
        released inside (eval needs only the logits).
    """

    def __init__(self, modules: nn.ModuleDict) -> None:
        super().__init__()
        self.backbone = modules["backbone"]
        self.head = modules["head"]
        #: the copy's compute dtype (bf16 under autocast; the classifiers stay fp32)
        self.dtype = self.head.bottleneck[0].weight.dtype

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        features = self.backbone(images.to(self.dtype).contiguous(memory_format=torch.channels_last))
        feats = self.head.bottleneck(features[-1])
        low_level = features[0] if self.head.shortcut is not None else None
        del features  # the last stage is not needed after the bottleneck: free it before the head's peak
        preds_stage1, preds_stage2 = self.head.decode(feats, low_level)
        return [], preds_stage1, preds_stage2.contiguous()


_COMPILE_KEYS = ("mode", "dynamic", "fullgraph", "backend", "options")


def _compile_options(compile: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if not isinstance(compile, dict):
        raise ValueError(f"compile must be true, false or a dict of torch.compile arguments, got {compile!r}")
    unknown = sorted(set(compile) - set(_COMPILE_KEYS))
    if unknown:
        raise ValueError(f"compile has unknown keys {unknown}; allowed: {list(_COMPILE_KEYS)}")
    return dict(compile)


def _with_freezing(options: dict[str, Any]) -> dict[str, Any]:
    """``torch.compile`` arguments with inductor's ``freezing`` on (a ``mode`` is spelt out as its options,
    since torch.compile takes either a mode or options)."""
    if options.get("backend", "inductor") != "inductor":
        return options
    options = dict(options)
    mode = options.pop("mode", None)
    inductor = dict(torch._inductor.list_mode_options(mode)) if mode else {}
    options["options"] = {**inductor, "freezing": True, **(options.get("options") or {})}
    return options
