"""Helpers shared by tests: reading the reference key lists and building reference-format checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

KEYS_DIR = Path(__file__).resolve().parent / "data" / "sssegmentation_keys"
KEY_FILES = {
    "resnet50_d8": KEYS_DIR / "isnet_resnet50os8_ade20k.txt",
    "resnet101_d8": KEYS_DIR / "isnet_resnet101os8_ade20k.txt",
    "resnest101_d8": KEYS_DIR / "isnet_resnest101os8_ade20k.txt",
}


def read_key_list(path: Path) -> dict[str, tuple[int, ...]]:
    """Parse ``key<TAB>shape`` lines (shape ``AxBxC`` or ``scalar``) in file order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes


def reference_state_dict(backbone: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the reference's keys and shapes (positive BN variances)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in read_key_list(KEY_FILES[backbone]).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state
