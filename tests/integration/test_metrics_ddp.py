"""SegmentationIoU under DDP (2 CPU processes, gloo) equals a single-process evaluation of the same split."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from isnet.data import DistributedEvalSampler
from isnet.metrics import SegmentationIoU

NUM_CLASSES = 6
NUM_IMAGES = 7  # odd: a padding sampler would evaluate one image twice
WORLD_SIZE = 2


def make_split() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic (preds, target) pairs of different sizes, with ignore pixels and an unused class."""
    generator = torch.Generator().manual_seed(0)
    samples = []
    for i in range(NUM_IMAGES):
        shape = (1, 9 + i, 14 - i)
        target = torch.randint(0, NUM_CLASSES - 1, shape, generator=generator)
        target[torch.rand(shape, generator=generator) < 0.1] = 255
        preds = torch.randint(0, NUM_CLASSES - 1, shape, generator=generator)
        keep = torch.rand(shape, generator=generator) < 0.6
        preds[keep] = target[keep].clamp(max=NUM_CLASSES - 1)
        samples.append((preds, target))
    return samples


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        split = make_split()
        sampler = DistributedEvalSampler(split)  # world size and rank read from the process group
        metric = SegmentationIoU(num_classes=NUM_CLASSES)
        indices = list(sampler)
        for index in indices:
            metric.update(*split[index])
        local = metric.confmat.clone()
        result = metric.compute()  # all-reduces the confusion matrix
        torch.save({"indices": indices, "local": local, "result": result}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.timeout(120)
def test_ddp_metric_equals_single_process(tmp_path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "pg_init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]

    # Each image evaluated exactly once, with uneven shard sizes (4 + 3).
    assert sorted(i for r in ranks for i in r["indices"]) == list(range(NUM_IMAGES))
    assert [len(r["indices"]) for r in ranks] == [4, 3]

    single = SegmentationIoU(num_classes=NUM_CLASSES)
    for preds, target in make_split():
        single.update(preds, target)
    expected = single.compute()

    assert torch.equal(ranks[0]["local"] + ranks[1]["local"], single.confmat)
    for r in ranks:
        assert set(r["result"]) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(r["result"][key], value, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(expected["IoU"][NUM_CLASSES - 1])
