"""Activation checkpointing that leaves training unchanged: same gradients, same BatchNorm statistics.

``torch.utils.checkpoint`` (non-reentrant) keeps only a block's inputs and runs the block again during backward
to get the activations back. Two things must not differ between the first run and the recomputation:

* random numbers (``Dropout2d`` in the classifiers): the checkpoint saves the CPU and CUDA RNG states before the
  first run and restores them for the recomputation (``preserve_rng_state=True``, torch's default);
* BatchNorm's running statistics: a block in training mode recomputed in backward would update
  ``running_mean``/``running_var``/``num_batches_tracked`` a second time. :func:`checkpoint_module` restores
  them after the recomputation, so they see each batch once, as without checkpointing.

timm's own ``set_grad_checkpointing`` of a ``features_only`` CNN does neither the second (it recomputes
BatchNorm blocks as they are) nor checkpoint the last stage (its rule skips the last module, at stride 8 the
most expensive one), so :func:`checkpointed_features` runs the stages of a timm ``FeatureListNet`` itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_module", "checkpointed_features"]


@contextlib.contextmanager
def _batchnorm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Restore the BatchNorm buffers of ``module`` on exit (the recomputation's updates are undone)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [[b.clone() for b in m.buffers(recurse=False)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, buffers in zip(norms, saved, strict=True):
                for buffer, value in zip(norm.buffers(recurse=False), buffers, strict=True):
                    buffer.copy_(value)


def checkpoint_module(module: nn.Module, *args: Any) -> Any:
    """``module(*args)`` without keeping its intermediate activations for backward (recomputed there).

    Non-reentrant, RNG state preserved, BatchNorm statistics updated once. Outside autograd (``no_grad``,
    inference) it is a plain call.
    """
    if not torch.is_grad_enabled():
        return module(*args)

    def contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), _batchnorm_statistics_kept(module)  # (first run, recomputation)

    if torch.compiler.is_compiling():
        # torch.compile traces the block once and recomputes in its backward graph; BatchNorm's buffer updates
        # stay in the forward graph, so they happen once (and dynamo accepts no custom context_fn)
        return checkpoint(module, *args, use_reentrant=False, preserve_rng_state=True)
    return checkpoint(module, *args, use_reentrant=False, preserve_rng_state=True, context_fn=contexts)


def checkpointed_features(backbone: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps of a timm ``FeatureListNet`` (what ``backbone(images)`` returns), with every returned
    stage (layer1..layer4 of a ResNet, the four stages of a ConvNeXt) checkpointed; the stem runs plainly."""
    features = []
    x = images
    for name, module in backbone.items():
        returned = name in backbone.return_layers
        x = checkpoint_module(module, x) if returned else module(x)
        if returned:
            features.append(x)
    return features
