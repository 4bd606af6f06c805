"""``A.Compose`` whose random state follows PyTorch's seed, so DataLoader workers differ.

albumentations 2.0.x keeps its own generators inside ``Compose``, created once at construction and
ignoring ``np.random``/``torch`` seeds. Each DataLoader worker receives a copy of that same state, so all
workers draw the same augmentation sequence, and non-persistent workers restart from it every epoch.
``Compose.set_random_seed(s)`` also gives every child transform its *own* generator seeded with ``s``,
which correlates their draws (e.g. the flip coin and the rotation coin come out equal).

Here every child shares one generator. :meth:`TorchSeededCompose.set_random_seed` seeds it explicitly;
otherwise, and whenever ``torch.initial_seed()`` changes, it is reseeded from ``torch.initial_seed()``.
PyTorch gives each worker of each epoch a distinct seed (``base_seed + worker_id``, ``base_seed`` drawn
from the main process's generator), and ``pytorch_lightning.seed_everything(seed, workers=True)`` makes
those seeds reproducible and different across ranks.
"""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import numpy as np
import torch

__all__ = ["TorchSeededCompose"]


class TorchSeededCompose(A.Compose):
    """``A.Compose`` with one shared generator, reseeded from ``torch.initial_seed()`` when it changes."""

    _torch_seed: int | None = None

    def set_random_seed(self, seed: int | None) -> None:
        """Seed all transforms with one shared generator.

        With an int ``seed`` the state holds until ``torch.initial_seed()`` changes (e.g. in a new
        DataLoader worker); with ``None`` the next call seeds from ``torch.initial_seed()``.
        """
        self.seed = seed
        self.set_random_state(np.random.default_rng(seed), random.Random(seed))
        self._torch_seed = None if seed is None else torch.initial_seed()

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
        """Reseed if the process's torch seed changed, then apply the transforms."""
        torch_seed = torch.initial_seed()
        if torch_seed != self._torch_seed:
            self.set_random_seed(torch_seed)
        return super().__call__(*args, force_apply=force_apply, **data)
