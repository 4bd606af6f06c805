"""`SegDataModule`: the LightningDataModule base shared by every dataset.

Reproduces the sssegmentation data loading contract (`ssseg/modules/datasets/builder.py`,
`ssseg/train.py`): the configured batch size is the GLOBAL batch (the paper's "BS 16" over 8 GPUs), the
train loader shuffles and drops the last incomplete batch, and evaluation runs one image at a time at
the dataset's test resolution with labels kept at their original size.

Under DDP, ``torch.utils.data.DistributedSampler`` pads the index list with repeated samples so that every rank
gets the same count; summed metric states then count those images twice (Lightning issue #12862).
sssegmentation removes the duplicates by keying results by image id (``ssseg/test.py``). A confusion-matrix
metric has no ids, so the evaluation loaders split the images with :class:`DistributedEvalSampler` instead:
rank ``r`` gets ``r, r + W, r + 2W, ...`` (the unshuffled ``DistributedSampler`` order minus the padding).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from isnet.data.datasets.base import SegDataset, SegFileDataset, SegSample, build_lut, read_label
from isnet.data.transforms import build_test_transforms, build_train_transforms
from isnet.errors import ConfigError, DataError
from isnet.meta import IGNORE_INDEX, IMAGENET_MEAN_255, IMAGENET_STD_255, dataset_info
from isnet.utils.pairs import as_pair
from isnet.utils.seeds import derive_seed

__all__ = [
    "DistributedEvalSampler",
    "FileSegDataModule",
    "SegDataModule",
    "TrainSampler",
    "seed_worker",
    "seg_collate",
]


class DistributedEvalSampler(DistributedSampler):
    """Split a dataset across ranks without padding or shuffling (ranks may differ by one sample).

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


class TrainSampler(DistributedSampler):
    """The train order of ``torch.utils.data.DistributedSampler`` (shuffled from ``seed + epoch``, the same on
    every rank, padded to a multiple of the world size, rank ``r`` taking every ``num_replicas``-th index),
    yielding ``(index, derive_seed(seed, epoch, index))``: each sample carries the seed of its augmentation.

    The seed travels with the index to whichever DataLoader worker loads it, so a sample's augmentation depends
    on ``(seed, epoch, index)`` only: not on the worker, the number of workers, the rank, nor on what the
    worker loaded before. As a ``DistributedSampler`` it is kept by Lightning under DDP (no sampler is injected)
    and told the epoch by ``set_epoch`` before each epoch's first batch (see :class:`DeferredDataLoader`).

    Args:
        dataset: Any sized dataset.
        num_replicas, rank: World size and this process's rank.
        seed: Seed of the order and of the per-sample seeds.
        epoch: The epoch of the first iteration.
        keys: Yield ``(index, seed)``; ``False`` yields bare indices (datasets that do not take keys).
    """

    def __init__(
        self, dataset: Sized, num_replicas: int, rank: int, seed: int, epoch: int = 0, keys: bool = True
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.epoch = int(epoch)
        self.keys = keys

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch  # the order's epoch; set_epoch during the iteration changes neither
        for index in super().__iter__():
            yield (index, derive_seed(self.seed, epoch, index)) if self.keys else index


class DeferredDataLoader(DataLoader):
    """A ``DataLoader`` whose iterator starts loading (and drawing indices from its sampler) at the first batch
    rather than at ``iter()``.

    Lightning creates the train iterator of a ``fit`` call's first epoch early, while it measures the schedule
    length in ``configure_optimizers``: before it restores a resumed run's epoch and calls
    ``sampler.set_epoch``. A multi-process iterator would prefetch the indices of epoch 0 at once; deferred,
    the first indices are drawn after ``set_epoch``, as with in-process loading.
    """

    def __iter__(self) -> Iterator[Any]:
        return _DeferredIterator(super().__iter__)


class _DeferredIterator:
    def __init__(self, start: Any) -> None:
        self._start, self._iterator = start, None

    def __iter__(self) -> _DeferredIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)

    def __getattr__(self, name: str) -> Any:
        # everything else (e.g. _shutdown_workers) is the started DataLoader iterator's
        iterator = self.__dict__.get("_iterator")
        if iterator is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} before its first batch")
        return getattr(iterator, name)

    def __getstate__(self) -> dict[str, Any]:
        # a started multi-process DataLoader iterator cannot be pickled (Lightning drops those too)
        return {"_start": self._start, "_iterator": None}


def seed_worker(worker_id: int) -> None:
    """Seed numpy, ``random`` and the dataset's transform in a DataLoader worker.

    Forked workers inherit identical copies of every random state (albumentations keeps its own per
    ``Compose``); ``worker_info.seed`` differs per worker, epoch and (through the loader's generator) run seed.
    """
    info = get_worker_info()
    if info is None:  # pragma: no cover - only called inside workers
        return
    seed = info.seed % 2**32
    np.random.seed(seed)
    random.seed(seed)
    reseed = getattr(info.dataset, "reseed", None)
    if callable(reseed):
        reseed(seed)


def seg_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples (``image``, ``mask``, ``name``), stacking tensors when their sizes agree and keeping
    lists otherwise: eval images keep their own test-resized size and their original-size labels."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if isinstance(values[0], torch.Tensor) and all(v.shape == values[0].shape for v in values):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def _pipeline_defaults(dataset: str) -> dict[str, Any]:
    """Constructor defaults of a dataset from ``isnet.meta``: train pipeline, ``test_*`` pipeline, global batch."""
    info = dataset_info(dataset)
    test = {f"test_{key}": value for key, value in info.test_pipeline.items()}
    return {**info.train_pipeline, **test, "batch_size": info.batch_size}


class SegDataModule(pl.LightningDataModule):
    """Base DataModule: global batch split over ranks, seeded workers, train/val/test loaders.

    Subclasses declare their dataset (``class X(SegDataModule, dataset="ade20k")``), which sets the metadata
    (``name``, ``class_names``, ``palette``, ``flip_pairs``, splits) and the defaults marked below from
    ``isnet.meta.dataset_info``, and implement :meth:`make_dataset`. The train settings are checked by
    building the train pipeline once here.

    Args (``None``: the dataset's default):
        crop_size: Train crop (h, w) or a square side.
        batch_size: GLOBAL train batch size, divided by ``trainer.world_size`` in :meth:`setup`.
        num_workers: DataLoader workers per rank.
        val_batch_size: Eval batch size per rank (1 as in the reference, images keep their own size).
        pin_memory: Pin host memory for faster host-to-device copies.
        seed: Seed of the train order and augmentation, with the run's seed (:meth:`train_seed`); a sample's
            augmentation is a function of ``(train_seed, epoch, index)`` (:class:`TrainSampler`).
        scale: Train resize target (long, short) before the ratio jitter.
        ratio_range: Train resize ratio range, r ~ U[lo, hi).
        cat_max_ratio: Max share of one class in a train crop (crop retries, reference 0.75).
        flip_prob: Horizontal flip probability in training.
        test_scale: Eval resize target (synthetic data: none, no resize).
        test_keep_ratio: Whether the eval resize keeps the aspect ratio.
        mean: Normalisation mean (RGB, 0-255 units).
        std: Normalisation std (RGB, 0-255 units).

    Attributes:
        num_classes: K; labels are in [0, K) or ``ignore_index`` (255).
        lip: Whether the train pipeline is LIP's (square resize, rotation).
        batch_size_per_device: ``batch_size // world_size`` after :meth:`setup`.
    """

    # Dataset facts and pipeline defaults, set per subclass from isnet.meta (known before construction).
    name: str = "segmentation"
    class_names: list[str] = []
    palette: list[tuple[int, int, int]] = []
    flip_pairs: list[tuple[int, int]] = []
    lip: bool = False
    train_split, val_split, test_split = "train", "val", "val"
    defaults: dict[str, Any] = _pipeline_defaults("ade20k")  # generic: the ADE20k ones

    def __init_subclass__(cls, dataset: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if dataset is not None:
            info = dataset_info(dataset)
            cls.name, (cls.train_split, cls.val_split, cls.test_split) = info.name, info.splits
            cls.class_names, cls.palette = list(info.class_names), list(info.palette)
            cls.flip_pairs, cls.lip = list(info.flip_pairs), info.train_pipeline.get("lip", False)
            cls.defaults = {**cls.defaults, **_pipeline_defaults(dataset)}
            cls.lut = None if info.label_map is None else build_lut(info.label_map, identity=False)

    def __init__(
        self,
        crop_size: int | Sequence[int] | None = None,
        batch_size: int | None = None,
        num_workers: int = 4,
        val_batch_size: int = 1,
        pin_memory: bool = True,
        seed: int = 0,
        scale: Sequence[int] | None = None,
        ratio_range: Sequence[float] | None = None,
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        test_scale: Sequence[int] | None = None,
        test_keep_ratio: bool | None = None,
        mean: Sequence[float] = IMAGENET_MEAN_255,
        std: Sequence[float] = IMAGENET_STD_255,
    ) -> None:
        super().__init__()
        defaults = self.defaults
        batch_size = defaults["batch_size"] if batch_size is None else batch_size
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive int (the global batch), got {batch_size!r}.")
        if not isinstance(val_batch_size, int) or val_batch_size <= 0:
            raise ConfigError(f"val_batch_size must be a positive int, got {val_batch_size!r}.")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"num_workers must be an int >= 0, got {num_workers!r}.")
        self.crop_size = as_pair(defaults["crop_size"] if crop_size is None else crop_size, "crop_size")
        self.batch_size = self.batch_size_per_device = batch_size
        self.num_workers = num_workers
        self.val_batch_size = val_batch_size
        self.pin_memory = pin_memory
        self.seed = int(seed)
        self.scale = as_pair(defaults["scale"] if scale is None else scale, "scale")
        self.ratio_range = defaults["ratio_range"] if ratio_range is None else ratio_range
        self.cat_max_ratio = cat_max_ratio
        self.flip_prob = flip_prob
        test_scale = defaults["test_scale"] if test_scale is None else test_scale
        self.test_scale = None if test_scale is None else as_pair(test_scale, "test_scale")
        self.test_keep_ratio = (
            defaults["test_keep_ratio"] if test_keep_ratio is None else bool(test_keep_ratio)
        )
        self.mean, self.std = mean, std
        self.ignore_index = IGNORE_INDEX
        self.build_train_transform()  # checks the train settings (a ConfigError naming the bad one)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def build_train_transform(self) -> Any:
        """Albumentations train pipeline with this dataset's settings (see ``isnet.data.transforms``)."""
        return build_train_transforms(
            scale=self.scale,
            crop_size=self.crop_size,
            ratio_range=self.ratio_range,
            cat_max_ratio=self.cat_max_ratio,
            flip_prob=self.flip_prob,
            flip_pairs=list(self.flip_pairs),
            lip=self.lip,
            ignore_index=self.ignore_index,
            mean=self.mean,
            std=self.std,
        )

    def build_test_transform(self) -> Any:
        """Albumentations eval pipeline (resize + normalise, no padding, image only)."""
        return build_test_transforms(
            scale=self.test_scale, keep_ratio=self.test_keep_ratio, mean=self.mean, std=self.std
        )

    def make_dataset(self, split: str, train: bool) -> Dataset:
        """Build the dataset of ``split``; ``train`` selects the joint train transforms."""
        raise NotImplementedError

    def _world(self) -> tuple[int, int]:
        """(world size, rank): the trainer's, else the initialised process group's, else (1, 0)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def setup(self, stage: str | None = None) -> None:
        """Split the global batch over ranks (it must divide) and build the datasets the stage needs."""
        world_size, _ = self._world()
        if self.batch_size % world_size != 0:
            raise ConfigError(
                f"batch_size ({self.batch_size}) is the global batch and must be divisible by the number "
                f"of devices (trainer.world_size = {world_size})."
            )
        self.batch_size_per_device = self.batch_size // world_size
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self.make_dataset(self.train_split, train=True)
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self.make_dataset(self.val_split, train=False)
        if stage in ("test", "predict", None) and self.test_dataset is None:
            self.test_dataset = self.make_dataset(self.test_split, train=False)

    def _loader(self, attr: str, stage: str, train: bool) -> DataLoader:
        if getattr(self, attr) is None:
            self.setup(stage)
        dataset = getattr(self, attr)
        world_size, rank = self._world()
        if train:  # each sample with its augmentation seed (TrainSampler), the same order on every rank
            keys = isinstance(dataset, SegDataset)
            sampler = TrainSampler(dataset, world_size, rank, self.train_seed(), keys=keys)
        elif world_size > 1:  # evaluation under DDP: every world_size-th image, no padding (module docstring)
            sampler = DistributedEvalSampler(dataset, world_size, rank)
        else:
            sampler = None
        # the workers' base seeds (numpy and `random` in seed_worker; a SegDataset's augmentation ignores them)
        generator = torch.Generator().manual_seed(self.seed + rank)
        return (DeferredDataLoader if train else DataLoader)(
            dataset,
            batch_size=self.batch_size_per_device if train else self.val_batch_size,
            sampler=sampler,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker,
            generator=generator,
            collate_fn=seg_collate,
        )

    def train_seed(self) -> int:
        """Seed of the train order and augmentation: from ``seed`` and the run's seed (``PL_GLOBAL_SEED``, set by
        ``seed_everything``; the seed Lightning gives the samplers it injects), 0 when unset."""
        return derive_seed(self.seed, int(os.environ.get("PL_GLOBAL_SEED", 0)))

    def train_dataloader(self) -> DataLoader:
        """Shuffled train loader with the per-device batch, dropping the last incomplete batch; the sampler
        (:class:`TrainSampler`) gives every sample its augmentation seed ``(train_seed, epoch, index)``."""
        return self._loader("train_dataset", "fit", train=True)

    def val_dataloader(self) -> DataLoader:
        """Ordered eval loader over the val split (batch 1 by default; this rank's share under DDP)."""
        return self._loader("val_dataset", "validate", train=False)

    def test_dataloader(self) -> DataLoader:
        """Ordered eval loader over the test split (the reference's eval split)."""
        return self._loader("test_dataset", "test", train=False)

    def predict_dataloader(self) -> DataLoader:
        """Same as :meth:`test_dataloader`."""
        return self.test_dataloader()


class FileSegDataModule(SegDataModule):
    """Base for datasets stored as image/label files under ``root``.

    Subclasses implement :meth:`list_samples` and may set ``lut`` (raw id -> train id) and ``label_reader``.

    Args:
        root: Dataset folder.
        train_split, val_split, test_split: Splits of training, validation and ``trainer.test`` (the
            reference's eval split); ``None`` = dataset default.
        check_labels: Check every label's values after mapping (cheap; recommended).
        **kwargs: :class:`SegDataModule` arguments.
    """

    layout: str = ""
    prepare_script: str = ""

    def __init__(
        self,
        root: str | Path,
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        check_labels: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.train_split = train_split or type(self).train_split
        self.val_split = val_split or type(self).val_split
        self.test_split = test_split or type(self).test_split
        self.check_labels = bool(check_labels)

    lut: np.ndarray | None = None
    # A plain function (not a bound method) so worker processes never pickle the DataModule.
    label_reader = staticmethod(read_label)

    def label_lut(self, samples: list[SegSample]) -> np.ndarray | None:
        """Raw id -> train id table for these samples (default: the class's ``lut``)."""
        return self.lut

    def list_samples(self, split: str) -> list[SegSample]:
        """All image/label pairs of ``split`` (raising if the layout is missing or a label is absent); a split
        whose label folder does not exist (a benchmark's test split) gives samples with ``label=None``."""
        raise NotImplementedError

    def expected_layout(self) -> str:
        """Where the data was looked for: the layout under ``root`` and the script that prepares it."""
        prepare = f"; prepare it with `python {self.prepare_script}`" if self.prepare_script else ""
        return f"expected layout under root={self.root}: {self.layout}{prepare}."

    def missing(self, what: Path | str) -> FileNotFoundError:
        """Error for a missing root, folder or file (or an empty root), naming the expected layout."""
        empty = self.root.is_dir() and not any(self.root.iterdir())
        what = f"dataset root {self.root} is an empty folder (no images)" if empty else f"{what} not found"
        return FileNotFoundError(f"{self.name}: {what}; {self.expected_layout()}")

    def require(self, *folders: Path, split: str | None = None) -> None:
        """Raise :meth:`missing` for the dataset root or the first of ``folders`` that is not a folder."""
        if not self.root.is_dir():
            raise self.missing(f"dataset root {self.root}")
        for folder in folders:
            if not folder.is_dir():
                raise self.missing(f"split {split!r} folder {folder}" if split else f"folder {folder}")

    def make_dataset(self, split: str, train: bool) -> Dataset:
        """A :class:`SegFileDataset` over the split's files (a ``DataError`` if there are none, or if a train
        split has no labels; an unlabelled evaluation split can be predicted: ``scripts/eval.py format_only=true``)."""
        samples = self.list_samples(split)
        if not samples:
            raise DataError(f"{self.name}: split {split!r} is empty; {self.expected_layout()}")
        if train and any(sample.label is None for sample in samples):
            raise DataError(f"{self.name}: split {split!r} has no labels and cannot be trained on")
        transform = self.build_train_transform() if train else self.build_test_transform()
        return SegFileDataset(
            samples,
            num_classes=self.num_classes,
            lut=self.label_lut(samples),
            transform=transform,
            train=train,
            check_labels=self.check_labels,
            ignore_index=self.ignore_index,
            label_reader=self.label_reader,
        )
