"""Comparing a renamed state dict with a model's, shared by every strict weight loader; where a Lightning
checkpoint keeps the weight average."""

from __future__ import annotations

import torch

__all__ = ["EMA_STATE_KEY", "mismatch_report", "plain_state_dict"]

#: Where a Lightning checkpoint keeps the state of ``isnet.lit.EMAWeights``: ``checkpoint["callbacks"][key]``,
#: with the averaged network ``state_dict`` under ``"weights"``.
EMA_STATE_KEY = "EMAWeights"


def plain_state_dict(
    state: dict, source: str, error: type[Exception] = ValueError
) -> dict[str, torch.Tensor]:
    """Check that every entry is a tensor (else raise ``error`` naming ``source`` and the first offenders) and
    drop a DataParallel/DDP ``module.`` prefix shared by all keys."""
    if non_tensor := [k for k, v in state.items() if not isinstance(v, torch.Tensor)]:
        raise error(f"{source}: entries that are not tensors: {non_tensor[:5]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def mismatch_report(
    converted: dict[str, torch.Tensor],
    unmapped: list[str],
    target: dict[str, torch.Tensor],
    source_label: str = "checkpoint",
    target_label: str = "model",
    limit: int = 20,
) -> str | None:
    """List unmapped, missing, unexpected and mis-shaped keys of ``converted`` (the file's tensors renamed to
    the keys of the model's ``target``) and ``unmapped`` (its keys no rule matched), naming the two sides with
    the labels and showing ``limit`` keys per category; ``None`` when the two agree exactly."""
    mismatched = [
        f"{k}: {source_label} {tuple(v.shape)} vs {target_label} {tuple(target[k].shape)}"
        for k, v in converted.items()
        if k in target and v.shape != target[k].shape
    ]
    parts = []
    for title, items in (
        ("unmapped", unmapped),
        ("missing", sorted(set(target) - set(converted))),
        ("unexpected", sorted(set(converted) - set(target))),
        ("shape mismatch", mismatched),
    ):
        if items:
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"  {title} ({len(items)}):\n    " + "\n    ".join(items[:limit]) + more)
    return "\n".join(parts) if parts else None
