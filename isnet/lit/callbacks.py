"""Training callbacks: exact resumption, an exponential moving average of the weights, metric history with
curves, and prediction overlays."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from isnet.errors import CheckpointError, ConfigError
from isnet.inference import run_inference
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.utils.io import safe_torch_load, write_json
from isnet.utils.seeds import derive_seed
from isnet.utils.state_dict import EMA_STATE_KEY
from isnet.viz import default_palette, denormalize, plot_curves, prediction_panel, save_image

__all__ = ["EMAWeights", "EpochSeed", "MetricsHistory", "PredictionOverlays"]


class EpochSeed(pl.Callback):
    """Derive the main process's random streams of an epoch from ``(seed, epoch, rank)`` at the start of the epoch.

    Lightning restores weights, optimizer, schedule and loop counters on resume, but not the global RNG nor a
    ``RandomSampler``'s generator. Reseeding torch, numpy and ``random`` (dropout, anything drawn in the
    training step) at every epoch start makes a run resumed from an epoch-end checkpoint continue exactly as
    the uninterrupted run. The data order and augmentation of the isnet DataModules do not depend on it: their
    :class:`isnet.data.TrainSampler` gives every sample the seed of its augmentation, ``(seed, epoch, index)``,
    whichever worker loads it. For other loaders with a ``RandomSampler`` it also reseeds the sampler's
    generator (exact with ``num_workers=0``).

    Args:
        seed: Base seed; ``None`` reads ``PL_GLOBAL_SEED`` (set by ``seed_everything``), else 0.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def epoch_seed(self, epoch: int, rank: int) -> int:
        """The 32-bit seed of ``epoch`` on ``rank``."""
        base = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        return derive_seed(base, epoch, rank)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed = self.epoch_seed(trainer.current_epoch, trainer.global_rank)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        loaders = trainer.train_dataloader
        for loader in loaders if isinstance(loaders, list | tuple) else [loaders]:
            sampler = getattr(loader, "sampler", None)
            # The DataLoader iterator is created before this hook for the first epoch of a run (and draws a
            # worker base seed from loader.generator), but a RandomSampler draws its permutation lazily.
            # A generator of its own makes the permutation depend on the epoch only.
            if isinstance(sampler, torch.utils.data.RandomSampler):
                sampler.generator = torch.Generator().manual_seed(seed)
            generator = getattr(loader, "generator", None)
            if isinstance(generator, torch.Generator):
                generator.manual_seed(seed + 1)


class EMAWeights(pl.Callback):
    """Exponential moving average of the network's weights, evaluated in place of the trained weights.

    The reference's ``ema_cfg`` (``ssseg/modules/models/segmentors/base/ema.py``): after every optimizer step,
    every entry of the network's ``state_dict`` (parameters and BatchNorm running statistics) becomes
    ``ema * (1 - momentum) + momentum * current``, starting from a copy of the weights at the start of
    training. Integer entries (BatchNorm's ``num_batches_tracked``) are copied from the network instead: the
    reference's formula truncates them back to about their initial value, and nothing in ISNet reads them (its
    BatchNorms have a momentum).

    Validation and ``trainer.test``/``validate`` run with the averaged weights: they are copied into
    ``pl_module.model`` when evaluation starts (so the module's fast evaluation copy, built on the first batch,
    is built from them) and the trained weights are copied back, bit for bit, when it ends (in ``fit``: at
    ``on_validation_end``; in ``test``/``validate``: at ``teardown``, after every callback's end hooks, or on
    an exception). The logged ``val/mIoU``, and with it the best checkpoint, therefore measure the averaged
    weights. The average is saved in every checkpoint (``checkpoint["callbacks"]["EMAWeights"]``) and restored
    on resume (the configured ``momentum`` applies from there); testing a checkpoint
    (``trainer.test(ckpt_path=...)``) takes the average stored in that file. ``isnet.load_checkpoint(path,
    ema=True)`` (``scripts/eval.py ema=true``) reads it too. It lives on the network's device.

    Args:
        momentum: Weight of the current weights in each update, in (0, 1]; the reference's example configs
            use 0.0005.
    """

    def __init__(self, momentum: float = 0.0005) -> None:
        ok = isinstance(momentum, int | float) and not isinstance(momentum, bool) and 0.0 < momentum <= 1.0
        if not ok:
            raise ConfigError(f"EMAWeights.momentum must be a number in (0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        #: The averaged ``state_dict`` of ``pl_module.model`` (``None`` before training starts).
        self.weights: dict[str, Tensor] | None = None
        #: Number of updates applied so far.
        self.updates = 0
        self._last_step: int | None = None
        self._trained: dict[str, Tensor] | None = None  # the trained weights while the average is swapped in

    @property
    def state_key(self) -> str:
        return EMA_STATE_KEY

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        current = pl_module.model.state_dict()
        if self.weights is None:  # a new run (or resuming a checkpoint written without this callback)
            if trainer.ckpt_path:
                rank_zero_warn(
                    f"EMAWeights: {trainer.ckpt_path} holds no average; it starts from its weights"
                )
            self.weights = {key: value.detach().clone() for key, value in current.items()}
        else:  # restored by load_state_dict
            if list(self.weights) != list(current):
                raise CheckpointError(
                    "EMAWeights: the averaged weights do not match the network's state_dict keys"
                )
            self.weights = {key: value.to(current[key].device) for key, value in self.weights.items()}
        self._last_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != self._last_step:  # an optimizer step was taken (not so while accumulating)
            self._last_step = trainer.global_step
            self.update(pl_module.model)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One update from ``model``'s current weights: ``ema * (1 - momentum) + momentum * current``."""
        if self.weights is None:
            self.weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
        current = model.state_dict()
        floats = [(self.weights[key], value) for key, value in current.items() if value.is_floating_point()]
        if floats:
            averages, values = (list(group) for group in zip(*floats, strict=True))
            torch._foreach_mul_(averages, 1.0 - self.momentum)
            torch._foreach_add_(averages, torch._foreach_mul(values, self.momentum))
        for key, value in current.items():
            if not value.is_floating_point():
                self.weights[key].copy_(value)
        self.updates += 1

    # evaluation with the average
    def _swap_in(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING and trainer.ckpt_path:
            self._load_from_file(trainer.ckpt_path)  # test/validate a checkpoint: its own average
        if self.weights is None:
            rank_zero_warn(
                "EMAWeights: no average exists yet (no training, no checkpoint); evaluating the weights"
            )
            return
        state = pl_module.model.state_dict()
        with torch.no_grad():
            self._trained = {key: value.detach().clone() for key, value in state.items()}
            for key, value in state.items():
                value.copy_(self.weights[key])

    def _swap_out(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._trained is None:
            return
        with torch.no_grad():
            for key, value in pl_module.model.state_dict().items():
                value.copy_(self._trained[key])
        self._trained = None

    on_validation_start = on_test_start = _swap_in

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # training continues with the trained weights
            self._swap_out(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # after every callback's on_test_end/on_validation_end (e.g. PredictionOverlays draws the average)
        self._swap_out(trainer, pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._swap_out(trainer, pl_module)

    def _load_from_file(self, path: str) -> None:
        state = safe_torch_load(path).get("callbacks", {}).get(self.state_key)
        if state is None:
            raise CheckpointError(
                f"{path} holds no weight average (not trained with callbacks=[default,ema])"
            )
        self.load_state_dict(state)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._trained is not None:  # saved during evaluation: the checkpoint keeps the trained weights
            checkpoint["state_dict"].update({f"model.{key}": value for key, value in self._trained.items()})

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "updates": self.updates, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.updates = int(state_dict["updates"])
        self.weights = None if state_dict["weights"] is None else dict(state_dict["weights"])


class MetricsHistory(pl.Callback):
    """Record the training loss per step and epoch and the validation mIoU; write JSON and a curve plot.

    The history is part of the checkpoint, so a resumed run keeps one continuous curve.

    Args:
        dirpath: Output folder; ``None`` uses ``trainer.default_root_dir``.
        filename: JSON file name.
        plot: PNG file name of the loss / mIoU curves, ``None`` for no plot.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "metrics_history.json",
        plot: str | None = "curves.png",
    ) -> None:
        self.dirpath = dirpath
        self.filename = filename
        self.plot = plot
        keys = ("train_step", "train_step_loss", "epoch", "train_loss", "val_epoch", "val_mIoU", "val_aAcc")
        self.history: dict[str, list[float]] = {key: [] for key in keys}
        self.steps_per_epoch = 1
        self._epoch_losses: list[float] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._epoch_losses.append(float(loss.detach()))
        self.history["train_step"].append(trainer.global_step)
        self.history["train_step_loss"].append(self._epoch_losses[-1])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_losses:
            self.steps_per_epoch = len(self._epoch_losses)
            self.history["epoch"].append(trainer.current_epoch)
            self.history["train_loss"].append(float(np.mean(self._epoch_losses)))
        self._epoch_losses = []
        self._write(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val/mIoU" not in trainer.callback_metrics:
            return
        self.history["val_epoch"].append(trainer.current_epoch)
        self.history["val_mIoU"].append(float(trainer.callback_metrics["val/mIoU"]))
        self.history["val_aAcc"].append(float(trainer.callback_metrics.get("val/aAcc", float("nan"))))
        self._write(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)

    @rank_zero_only
    def _write(self, trainer: pl.Trainer) -> None:
        folder = Path(self.dirpath or trainer.default_root_dir)
        history = {**self.history, "steps_per_epoch": self.steps_per_epoch}
        write_json(folder / self.filename, history)
        if self.plot and (self.history["epoch"] or self.history["val_epoch"]):
            plot_curves(history, folder / self.plot)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
        self.steps_per_epoch = state_dict.get("steps_per_epoch", 1)


class PredictionOverlays(pl.Callback):
    """Save ``image | ground truth | prediction`` panels with a class legend for the first evaluation images.

    Files are written on rank zero after ``trainer.test`` (``stage="test"``) or ``trainer.fit`` (``"fit"``), with
    the module's inference settings, so the pictures show what the metrics measured. With a TensorBoard logger
    the first ``log_images`` validation panels are also logged after every validation epoch.

    Args:
        num_images: Number of images to draw into files.
        dirpath: Output folder; ``None`` uses ``<trainer.default_root_dir>/overlays``.
        stage: ``"test"`` or ``"fit"``.
        alpha: Mask opacity.
        min_height: Panels of smaller images are drawn enlarged to at least this height (pixels).
        palette: ``"data"`` (the datamodule's palette), ``"generated"`` (well separated hues, useful when the
            data palette resembles the image colours, as for the synthetic scenes) or a list of RGB triples.
        log_images: Validation panels logged to TensorBoard per validation epoch (0 disables).
    """

    def __init__(
        self,
        num_images: int = 4,
        dirpath: str | None = None,
        stage: str = "test",
        alpha: float = 0.5,
        min_height: int = 192,
        palette: str | list[list[int]] = "data",
        log_images: int = 2,
    ) -> None:
        def count(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        for name, value, ok, what in (
            ("stage", stage, stage in ("test", "fit"), "'test' or 'fit'"),
            ("num_images", num_images, count(num_images, 1), "a positive int"),
            ("log_images", log_images, count(log_images, 0), "an int >= 0"),
            ("alpha", alpha, 0.0 <= float(alpha) <= 1.0, "in [0, 1]"),
            ("palette", palette, palette in ("data", "generated") or not isinstance(palette, str),
             "'data', 'generated' or a list"),
        ):  # fmt: skip
            if not ok:
                raise ConfigError(f"PredictionOverlays.{name} must be {what}, got {value!r}")
        self.num_images = num_images
        self.dirpath = dirpath
        self.stage = stage
        self.alpha = float(alpha)
        self.min_height = int(min_height)
        self.palette = palette
        self.log_images = log_images
        #: Paths written by the last call.
        self.written: list[Path] = []

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stage == "test":
            self.draw(trainer, pl_module, "test_dataset")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stage == "fit":
            self.draw(trainer, pl_module, "val_dataset")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self.log_images:
            self.log_to_tensorboard(trainer, pl_module)

    @rank_zero_only
    def log_to_tensorboard(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the first ``log_images`` validation panels to the trainer's TensorBoard logger, if it has one."""
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers = [lg for lg in getattr(trainer, "loggers", []) if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        for index, _name, panel in self._panels(trainer, pl_module, "val_dataset", self.log_images):
            for logger in loggers:
                logger.experiment.add_image(
                    f"val/prediction_{index}", panel, trainer.global_step, dataformats="HWC"
                )

    @rank_zero_only
    def draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, attr: str) -> None:
        """Predict the first ``num_images`` samples of ``datamodule.<attr>`` and write the PNGs."""
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "overlays")
        self.written = []
        for index, name, panel in self._panels(trainer, pl_module, attr, self.num_images):
            self.written.append(save_image(folder / f"{index:02d}_{name}.png", panel))

    @torch.no_grad()
    def _panels(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, attr: str, count: int
    ) -> Iterator[tuple[int, str, np.ndarray]]:
        """Yield ``(index, file-safe name, RGB panel)`` for the first ``count`` samples of
        ``datamodule.<attr>`` (predicted in eval mode; the module's mode is restored afterwards)."""
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, attr, None)
        if dataset is None:
            return
        palette = self.palette if not isinstance(self.palette, str) else []
        if self.palette == "data":
            palette = getattr(datamodule, "palette", None) or []
        k = pl_module.hparams.num_classes  # a palette of another size is replaced by generated colours
        palette = [tuple(c) for c in palette] if len(palette) == k else default_palette(k)
        ignore_index = pl_module.hparams.ignore_index
        mean = getattr(datamodule, "mean", IMAGENET_MEAN_255)
        std = getattr(datamodule, "std", IMAGENET_STD_255)
        config = pl_module.test_inference_config if attr == "test_dataset" else pl_module.inference_config
        predict = pl_module.model.predict_logits
        was_training = pl_module.training
        pl_module.eval()
        try:
            for index in range(min(count, len(dataset))):
                sample = dataset[index]
                mask, image = sample["mask"], sample["image"][None].to(pl_module.device)
                scores = run_inference(predict, image, mask.shape[-2:], config, pl_module.flip_pairs)
                pred = scores.argmax(dim=1)[0].cpu()
                rgb = denormalize(sample["image"], mean, std)
                if rgb.shape[:2] != tuple(mask.shape):
                    # Eval images are test-resized while labels keep the original size: draw at label size.
                    import cv2

                    rgb = cv2.resize(rgb, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
                raw_name = str(sample.get("name", f"{index:04d}"))
                panel = prediction_panel(rgb, mask, pred, pl_module.class_names, palette, ignore_index,
                                         title=raw_name, alpha=self.alpha,
                                         panel_height=max(self.min_height, int(mask.shape[0])))  # fmt: skip
                yield index, raw_name.replace("/", "_"), panel
        finally:
            pl_module.train(was_training)
