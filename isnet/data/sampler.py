"""Distributed evaluation sampler that visits every sample exactly once.

``torch.utils.data.DistributedSampler`` pads the index list with repeated samples so that every rank gets the
same count; summed metric states then count those images twice (Lightning issue #12862). sssegmentation
removes the duplicates by keying results by image id (``ssseg/test.py``). A confusion-matrix metric has no
ids, so instead this sampler splits the indices without padding: rank ``r`` gets ``r, r + W, r + 2W, ...``
(the unshuffled ``DistributedSampler`` order minus the padding), and ranks may differ by one sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import DistributedSampler

__all__ = ["DistributedEvalSampler"]


class DistributedEvalSampler(DistributedSampler):
    """Split a dataset across ranks without padding or shuffling.

    It subclasses ``DistributedSampler`` only so that Lightning (``use_distributed_sampler=True``) keeps it
    instead of injecting a padding sampler. Because ranks may run a different number of steps, nothing in the
    evaluation step may call a collective (e.g. ``self.log(..., sync_dist=True)`` per step); metric states
    are synchronised once, in ``compute()``.

    Args:
        dataset: Any sized dataset.
        num_replicas, rank: World size and this process's rank; ``None``: from ``torch.distributed`` (1 and 0
            if it is not initialised).
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> None:
        # DistributedSampler.__init__ is not called: it requires an initialised process group and pads.
        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas must be a positive int, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be an int in [0, {num_replicas - 1}], got {rank!r}")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.shuffle = False
        self.drop_last = False
        self.seed = 0
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # the sampler protocol; the order never changes
