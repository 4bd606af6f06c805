"""A look inside ISNet for one image: both predictions, the image-level context's attention, and the
semantic-level context's class centres and attention.

Paper: Jin et al., "ISNet: Integrate Image-Level and Semantic-Level Context for Semantic Segmentation",
ICCV 2021 (https://arxiv.org/abs/2108.12382). The image-level context (ILC) lets every position of the
bottleneck feature map attend over all positions (each key also carries the image's global average); the
semantic-level context (SLC) computes one centre per class from the stage-1 prediction (a softmax of the class
logit over the class's argmax region) and lets every position attend over the K centres.

Nothing here changes the network or writes its forward a second time: :func:`inspect_isnet` runs the model's own
eval forward while forward hooks record what the head's two :class:`~isnet.models.layers.SelfAttentionBlock`
modules compute (the query, key and value projections and the attended values before ``out_project``). The
attention weights are then recomputed from those projections as the block computes them, ``softmax(q k^T /
sqrt(T))``, with ``log(pixel count)`` added per centre in the SLC's grouped eval path. Their product with the
values reproduces the recorded attended values, so the maps are the ones the model uses
(``tests/unit/test_inside.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.models import ISNet
from isnet.models.heads.context import class_centres
from isnet.models.layers import SelfAttentionBlock
from isnet.models.layers.resize import resize_bilinear

__all__ = ["AttentionTrace", "Inspection", "as_model_input", "inspect_isnet"]


@dataclass(frozen=True)
class AttentionTrace:
    """What one attention block computed for one image, as (rows, T) matrices (T = ``transform_channels``).

    Attributes:
        query: (N, T) query projection, one row per feature position (row-major, N = h * w).
        key: (M, T) key projection: M = N positions, or the K class centres in the SLC's grouped eval path.
        value: (M, T) value projection.
        log_counts: (M,) ``log`` of the number of positions each key stands for (grouped path; ``-inf`` for an
            absent class), or ``None`` when every key is one position.
        attended: (N, T) the block's attention output, recorded at the input of ``out_project``.
    """

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    log_counts: torch.Tensor | None
    attended: torch.Tensor

    def weights(self, rows: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """Attention weights of the query ``rows`` (all by default) over the M keys; each row sums to 1.

        Shape:
            -> (len(rows), M), in at least fp32.
        """
        query = self.query if rows is None else self.query[torch.as_tensor(rows, dtype=torch.long)]
        dtype = torch.promote_types(query.dtype, torch.float32)
        # the block's scale: SDPA's default 1/sqrt(T), the reference's matmul_norm
        scores = (query.to(dtype) @ self.key.to(dtype).T) * (self.query.shape[-1] ** -0.5)
        if self.log_counts is not None:
            scores = scores + self.log_counts.to(dtype)
        return torch.softmax(scores, dim=-1)


@dataclass(frozen=True)
class Inspection:
    """The inside of one ISNet forward (eval mode) on one image; returned by :func:`inspect_isnet`.

    Attributes:
        image: (3, H, W) the normalised input.
        stage1_logits: (K, h, w) stage-1 logits at feature resolution (1/8), as the head returns them.
        stage2_logits: (K, h2, w2) stage-2 logits (1/8, or 1/4 with the LIP shortcut).
        stage1: (H, W) stage-1 classes: its logits resized to the image as the eval forward resizes stage 2.
        stage2: (H, W) stage-2 classes, the model's prediction (``model(image).argmax(1)``).
        ilc: the image-level context block's :class:`AttentionTrace` (keys: all h * w positions).
        slc: the semantic-level context block's :class:`AttentionTrace`.
        centres: (K, C) class centres of the SLC (0 for a class absent from the stage-1 prediction).
        counts: (K,) number of feature positions the stage-1 prediction gives each class.
        pixels: the chosen image pixels (row, column).
        cells: the feature positions (row, column) that hold them.
        ilc_attention: (P, h, w) the image-level attention of each chosen pixel over the feature grid.
        slc_attention: (K, h, w) every position's attention over the K class centres (sums to 1 over K).
    """

    image: torch.Tensor
    stage1_logits: torch.Tensor
    stage2_logits: torch.Tensor
    stage1: torch.Tensor
    stage2: torch.Tensor
    ilc: AttentionTrace
    slc: AttentionTrace
    centres: torch.Tensor
    counts: torch.Tensor
    pixels: tuple[tuple[int, int], ...]
    cells: tuple[tuple[int, int], ...]
    ilc_attention: torch.Tensor
    slc_attention: torch.Tensor


def as_model_input(
    image: Any, mean: Sequence[float] = IMAGENET_MEAN_255, std: Sequence[float] = IMAGENET_STD_255
) -> torch.Tensor:
    """One image as a (1, 3, H, W) network input.

    Args:
        image: a normalised float tensor (3, H, W) or (1, 3, H, W), returned as it is (with the batch axis);
            or an RGB uint8 array (H, W, 3) or a PIL image, normalised with ``mean``/``std`` (0-255 units) by
            the datasets' own :func:`isnet.data.datasets.base.normalize`.
        mean, std: the normalisation the model was trained with (ImageNet's by default).
    """
    if isinstance(image, torch.Tensor):
        batch = image.unsqueeze(0) if image.ndim == 3 else image
        if batch.ndim != 4 or batch.shape[0] != 1:
            raise ValueError(f"expected one image (3, H, W) or (1, 3, H, W), got shape {tuple(image.shape)}")
        return batch
    array = (
        np.asarray(image.convert("RGB")) if callable(getattr(image, "convert", None)) else np.asarray(image)
    )
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {array.dtype} {array.shape}")
    from isnet.data.datasets.base import normalize  # lazily: the data stack loads OpenCV

    return normalize(array, mean, std).unsqueeze(0)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(1, T, a, b) projection of one image -> (a * b, T)."""
    return t[0].flatten(1).T.clone()


def _record(
    block: SelfAttentionBlock, store: dict[str, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks that fill ``store`` with the block's query, key, value and attended values.

    The last module of each projection runs in every path of the block (whole key map, key parts of a
    concatenation, grouped centres), so the hooks sit there rather than on the block's ``forward``.
    """

    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            store[name] = _rows(output)

        return hook

    def keep_input(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        store["attended"] = _rows(inputs[0])

    return [
        block.query_project.register_forward_hook(keep("query")),
        block.key_project[-1].register_forward_hook(keep("key")),
        block.value_project[-1].register_forward_hook(keep("value")),
        block.out_project.register_forward_pre_hook(keep_input),
    ]


def _cell(pixel: Sequence[int], image_size: Sequence[int], grid: Sequence[int]) -> tuple[int, int]:
    """The feature position (1/8 grid) whose footprint holds image pixel ``(row, column)``."""
    if len(pixel) != 2:
        raise ValueError(f"a pixel is (row, column), got {pixel!r}")
    row, col = int(pixel[0]), int(pixel[1])
    if not (0 <= row < image_size[0] and 0 <= col < image_size[1]):
        raise ValueError(f"pixel {(row, col)} is outside the image of size {tuple(image_size)}")
    return row * grid[0] // image_size[0], col * grid[1] // image_size[1]


def inspect_isnet(
    model: ISNet,
    image: Any,
    pixels: Sequence[Sequence[int]] = (),
    mean: Sequence[float] = IMAGENET_MEAN_255,
    std: Sequence[float] = IMAGENET_STD_255,
) -> Inspection:
    """Run ``model`` in eval mode on one image and return its predictions and both contexts' attention.

    The model's own forward runs once, under ``torch.no_grad``; its train/eval mode is restored afterwards.

    Args:
        model: a plain :class:`isnet.models.ISNet` (not a copy from :func:`isnet.accel.optimize_for_inference`).
        image: see :func:`as_model_input` (a normalised tensor, an RGB uint8 array or a PIL image).
        pixels: image pixels ``(row, column)`` whose image-level attention to return.
        mean, std: normalisation of an array or PIL ``image``.

    Returns:
        An :class:`Inspection`.
    """
    if not isinstance(model, ISNet):
        raise TypeError(f"inspect_isnet needs an isnet.models.ISNet, got {type(model).__name__}")
    parameter = next(model.parameters())
    images = as_model_input(image, mean, std).to(parameter.device)
    head = model.head
    ilc: dict[str, torch.Tensor] = {}
    slc: dict[str, torch.Tensor] = {}
    seen: dict[str, Any] = {}

    def keep_head_output(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        seen["stage1"], seen["stage2"] = output

    def keep_slc_inputs(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        seen["slc_inputs"] = inputs  # (bottleneck output, stage-1 logits, ILC output)

    def note_full_keys(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        seen["slc_full_keys"] = True  # the block's forward ran: one key per position, not per centre

    handles = [
        head.register_forward_hook(keep_head_output),
        head.slc_net.register_forward_pre_hook(keep_slc_inputs),
        head.slc_net.correlate_net.register_forward_pre_hook(note_full_keys),
        *_record(head.ilc_net.correlate_net, ilc),
        *_record(head.slc_net.correlate_net, slc),
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            scores = model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    feats, preds_stage1, _ = seen["slc_inputs"]
    with torch.no_grad():
        centres, classes, counts = class_centres(feats, preds_stage1)  # the SLC's own computation
    grid = tuple(feats.shape[2:])
    num_classes = preds_stage1.shape[1]
    log_counts = None if seen.get("slc_full_keys") else counts[0].log()
    slc_trace = AttentionTrace(slc["query"], slc["key"], slc["value"], log_counts, slc["attended"])
    slc_weights = slc_trace.weights()  # (N, M)
    if log_counts is None:  # one key per position: add up the positions of each stage-1 class
        slc_weights = slc_weights @ F.one_hot(classes[0, 0], num_classes).to(slc_weights.dtype)
    ilc_trace = AttentionTrace(ilc["query"], ilc["key"], ilc["value"], None, ilc["attended"])
    image_size = tuple(images.shape[2:])
    chosen = tuple((int(p[0]), int(p[1])) for p in pixels)
    cells = tuple(_cell(p, image_size, grid) for p in chosen)
    rows = [r * grid[1] + c for r, c in cells]
    ilc_attention = ilc_trace.weights(rows).reshape(len(rows), *grid)
    stage1_up = resize_bilinear(seen["stage1"], image_size)  # as the eval forward resizes the stage-2 logits
    return Inspection(
        image=images[0],
        stage1_logits=seen["stage1"][0],
        stage2_logits=seen["stage2"][0],
        stage1=stage1_up.argmax(dim=1)[0],
        stage2=scores.argmax(dim=1)[0],
        ilc=ilc_trace,
        slc=slc_trace,
        centres=centres[0].T.contiguous(),
        counts=counts[0],
        pixels=chosen,
        cells=cells,
        ilc_attention=ilc_attention,
        slc_attention=slc_weights.T.reshape(num_classes, *grid),
    )
