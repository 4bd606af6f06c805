"""TrainSampler: a sample's augmentation is a function of (seed, epoch, index), whichever worker loads it."""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from isnet.data import SyntheticDataModule, TrainSampler
from isnet.utils.seeds import derive_seed


def _epoch_batches(workers: int, epochs: list[int]) -> list[list[torch.Tensor]]:
    """Batches of each of ``epochs``, read in turn through one train loader (persistent workers when > 0),
    with the first iterator created before ``set_epoch``, as Lightning does at the start of ``fit``."""
    data = SyntheticDataModule(num_classes=3, image_size=32, num_train=8, batch_size=4, augment=True,
                               num_workers=workers)  # fmt: skip
    loader = data.train_dataloader()
    iterator = iter(loader)
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out.append([t for batch in iterator for t in (batch["image"], batch["mask"])])
        iterator = iter(loader)
    return out


def test_augmentation_does_not_depend_on_workers_or_on_what_they_loaded_before() -> None:
    # persistent workers that loaded epoch 0 first, fresh workers (a resumed run), in-process loading
    (first, after_first), (fresh,), (in_process,) = (
        _epoch_batches(2, [0, 1]), _epoch_batches(2, [1]), _epoch_batches(0, [1])
    )  # fmt: skip
    for a, b, c in zip(after_first, fresh, in_process, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not all(torch.equal(a, b) for a, b in zip(first, after_first, strict=True))  # epochs differ


def test_order_is_torchs_distributed_order_and_keys_carry_the_sample_seed() -> None:
    dataset = list(range(5))
    for rank in range(2):
        sampler = TrainSampler(dataset, num_replicas=2, rank=rank, seed=11, epoch=3)
        reference = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=11)
        reference.set_epoch(3)
        keys = list(sampler)
        assert [index for index, _ in keys] == list(reference) and len(sampler) == 3
        assert all(seed == derive_seed(11, 3, index) for index, seed in keys)
    plain = TrainSampler(dataset, num_replicas=1, rank=0, seed=11, keys=False)
    assert sorted(plain) == dataset
