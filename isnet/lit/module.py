"""LightningModule that trains and evaluates ISNet as sssegmentation does (``ssseg/{train,test}.py``).

* loss: CE(stage2) x 1.0 + CE(stage1) x 0.4 + CE(aux) x 0.4 on logits upsampled to the crop (``ISNetLoss``);
  ``loss`` swaps CE for another pixel loss (:mod:`isnet.lit.criterion`);
* optimiser: plain SGD over **one** parameter group (weight decay on every parameter, BN and biases included,
  no nesterov), learning rate set before every step by the poly rule (:class:`isnet.lit.schedule.PolyLR`)
  over ``T = max_epochs * steps_per_epoch`` steps; ``optimizer`` and ``param_rules`` change the optimiser and
  its parameter groups (:mod:`isnet.lit.optim`);
* evaluation: the stage-2 logits at feature resolution (of the fast copy that
  :func:`isnet.accel.optimize_for_inference` builds at the start of each evaluation epoch) are resized straight
  to the **original** label size by :mod:`isnet.inference` and accumulated into a dataset-level confusion
  matrix (:class:`isnet.metrics.SegmentationIoU`). Under DDP the DataModule's evaluation loaders split the
  images without padding, so every image is counted exactly once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MaxMetric

from isnet.accel import InferenceModel, compile_options, optimize_for_inference
from isnet.errors import ConfigError, DataError
from isnet.inference import SINGLE_SCALE, InferenceConfig, run_inference
from isnet.lit.criterion import build_criterion, loss_spec
from isnet.lit.optim import build_optimizer, check_param_rules, optimizer_spec, param_groups
from isnet.lit.schedule import PolyLR
from isnet.lit.specs import check_number
from isnet.metrics import SegmentationIoU
from isnet.models import ISNet, TransferReport, load_transfer

__all__ = ["ISNetModule", "newest_checkpoint"]

_LOSS_WEIGHTS = {"stage2": 1.0, "stage1": 0.4, "aux": 0.4}


def newest_checkpoint(trainer: Any, monitored: bool = True) -> Path | None:
    """The newest checkpoint file of the trainer's ModelCheckpoint callbacks, or ``None``; ``monitored=False``
    skips the best-so-far files of monitoring callbacks (the end-of-epoch checkpoint written last)."""
    cbs = getattr(trainer, "checkpoint_callbacks", None) or []
    names = [c.last_model_path for c in cbs] + [c.best_model_path for c in cbs if monitored or not c.monitor]
    paths = [Path(name) for name in names if name and Path(name).is_file()]
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


def _as_dict(config: InferenceConfig) -> dict[str, Any]:
    """InferenceConfig as plain dict/list values (readable YAML in hparams, safe checkpoint loading)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _inference_config(name: str, value: dict[str, Any] | InferenceConfig | None) -> InferenceConfig:
    if value is None or isinstance(value, InferenceConfig):
        return value or SINGLE_SCALE
    fields = {f.name for f in dataclasses.fields(InferenceConfig)}
    if unknown := sorted(set(value) - fields):
        raise ConfigError(f"{name} has unknown keys {unknown}; allowed: {sorted(fields)}")
    return InferenceConfig(**value)


class ISNetModule(pl.LightningModule):
    """Train and evaluate ISNet with the reference's optimiser, schedule, losses and evaluation.

    All arguments are primitives, so ``save_hyperparameters()`` records the complete recipe and
    ``ISNetModule.load_from_checkpoint(path)`` (or :func:`isnet.load_checkpoint`) rebuilds the network without
    Hydra.

    Args:
        model_config: :class:`isnet.models.ISNet` keyword arguments; a ``num_classes`` there must equal
            ``num_classes``.
        num_classes: Number of classes K.
        lr: Initial learning rate ``lr0`` of the default SGD (0.01); with ``optimizer``, set ``optimizer.lr``.
        momentum: Momentum of the default SGD (0.9 in every reference config).
        weight_decay: Weight decay of the default SGD (5e-4), applied to all parameters as in the reference.
        min_lr: Final learning rate of the poly schedule; ``None`` means ``0.01 * lr0`` (reference default).
        power: Poly exponent (0.9).
        optimizer: A ``torch.optim`` optimiser as a Hydra partial or its dict (``{"_target_":
            "torch.optim.AdamW", "_partial_": True, "lr": ..., ...}``, ``lr`` required; ``conf/optimizer/``);
            ``None``: the reference's SGD from ``lr``/``momentum``/``weight_decay``. Recorded as the dict.
        param_rules: Learning-rate and weight-decay multipliers per parameter-name prefix and for norm layers
            and biases (:mod:`isnet.lit.optim`); ``None``: one parameter group, as the reference.
        loss: The pixel loss of every term, a class of :mod:`isnet.models.losses` as a Hydra partial or its
            dict (``conf/loss/``); ``None``: cross-entropy, as the reference. Recorded as the dict.
        loss_weights: Weights of the ``stage2``, ``stage1`` and ``aux`` loss terms (1.0, 0.4, 0.4).
        ignore_index: Label value excluded from the loss and the metrics (255).
        inference: Validation/test :class:`isnet.inference.InferenceConfig` fields; ``None`` is the
            reference's single-scale whole-image logits.
        test_inference: Settings for ``trainer.test`` only (e.g. multi-scale + flip); ``None`` = ``inference``.
        class_names: K class names for per-class results; ``None`` gives ``class_0 ... class_{K-1}``.
        flip_pairs: Class pairs whose channels swap under a horizontal test-time flip (LIP).
        experiment: Name of the recipe (stored with the checkpoint for reference).
        compile: ``torch.compile`` the training forward and the evaluation copy (``True`` or a dict of
            ``torch.compile`` arguments). Off by default: compiling takes minutes for the zoo backbones.
        init_from: Weights to start from (a model-zoo name, an isnet checkpoint, a Lightning ``.ckpt`` or a
            released sssegmentation ``.pth``), recorded here and loaded by the caller through
            :meth:`load_initial_weights` (``scripts/train.py`` does, unless it resumes a run); nothing is read
            here, so ``load_from_checkpoint`` never reads it again. Fitting with it unloaded is an error.
        freeze_backbone: Train the head only: the backbone's parameters get no gradient and its BatchNorm layers
            stay in eval mode (running statistics unchanged).
        grad_checkpointing: recompute activations in backward instead of keeping them
            (:meth:`isnet.models.ISNet.set_grad_checkpointing`): less memory, one more forward, same results.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        num_classes: int,
        lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        min_lr: float | None = None,
        power: float = 0.9,
        optimizer: Mapping[str, Any] | functools.partial | None = None,
        param_rules: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | functools.partial | None = None,
        loss_weights: dict[str, float] | None = None,
        ignore_index: int = 255,
        inference: dict[str, Any] | None = None,
        test_inference: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        flip_pairs: Sequence[Sequence[int]] | None = None,
        experiment: str | None = None,
        compile: bool | dict[str, Any] = False,
        init_from: str | None = None,
        freeze_backbone: bool = False,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if model_config.get("num_classes", num_classes) != num_classes:
            raise ConfigError(
                f"model_config.num_classes={model_config['num_classes']} disagrees with num_classes={num_classes}"
            )
        # the optimiser and the loss are recorded once, as plain dicts (lr/momentum/weight_decay only shortcut
        # the default SGD and are stored inside `optimizer`)
        optimizer = optimizer_spec(optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
        lr = momentum = weight_decay = None
        param_rules = check_param_rules(param_rules)
        loss = loss_spec(loss, num_classes)
        check_number("power", power)
        if min_lr is not None and (
            check_number("min_lr", min_lr, allow_zero=True) or min_lr > optimizer["lr"]
        ):
            raise ConfigError(f"min_lr must be <= lr ({optimizer['lr']}), got {min_lr!r}")
        loss_weights = {**_LOSS_WEIGHTS, **(loss_weights or {})}
        if unknown := sorted(set(loss_weights) - set(_LOSS_WEIGHTS)):
            raise ConfigError(f"loss_weights has unknown terms {unknown}; allowed: {list(_LOSS_WEIGHTS)}")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"class_names has {len(class_names)} names but num_classes is {num_classes}")
        if not (init_from is None or (isinstance(init_from, str) and init_from)):
            raise ConfigError(f"init_from must be a checkpoint file or model-zoo name, got {init_from!r}")
        if not isinstance(freeze_backbone, bool):
            raise ConfigError(f"freeze_backbone must be true or false, got {freeze_backbone!r}")
        # Rebinding the arguments before save_hyperparameters() stores the resolved values: the full ISNet
        # config (with num_classes) lets isnet.load_checkpoint rebuild the network from hparams alone.
        model_config = {**model_config, "num_classes": num_classes}
        class_names = [str(c) for c in class_names] if class_names is not None else None
        flip_pairs = [[int(a), int(b)] for a, b in flip_pairs] if flip_pairs else []
        val_config = _inference_config("inference", inference)
        test_config = _inference_config("test_inference", test_inference) if test_inference else None
        inference = _as_dict(val_config)
        test_inference = _as_dict(test_config) if test_config is not None else None
        self.compile_options = compile_options(compile)
        self.save_hyperparameters()

        self.model = ISNet.from_config(model_config).set_grad_checkpointing(grad_checkpointing)
        if freeze_backbone:
            self.model.backbone.requires_grad_(False).eval()  # train() keeps it in eval mode
        #: whether the weights came from init_from, a checkpoint or (at the start of a fit) the backbone's ImageNet
        #: file; once set, neither setup nor on_fit_start loads anything. model_config.pretrained (the reference's
        #: start) is read by setup("fit"), not here: load_from_checkpoint never reads it, and a resumed run's
        #: checkpoint, restored after setup, replaces it.
        self.weights_loaded = False
        if param_rules is not None:
            param_groups(self.model, optimizer, param_rules)  # a prefix that matches no parameter fails here
        self.criterion = build_criterion(loss, ignore_index, loss_weights)
        self.inference_config = val_config
        self.test_inference_config = test_config or val_config
        self.class_names = class_names or [f"class_{k}" for k in range(num_classes)]
        self.flip_pairs = flip_pairs
        # One metric object per stage (Lightning practice): val and test never share state.
        self.val_iou = SegmentationIoU(num_classes=num_classes, ignore_index=ignore_index)
        self.test_iou = SegmentationIoU(num_classes=num_classes, ignore_index=ignore_index)
        self.val_miou_best = MaxMetric()
        self.val_miou_best.persistent(True)  # saved with the checkpoint, restored on resume
        #: Results of the last ``trainer.test`` on this process: mIoU, aAcc, per-class IoU/Acc and the ``(K, K)``
        #: confusion matrix ``confmat`` (rows = label, columns = prediction).
        self.test_results: dict[str, Any] = {}
        # kept out of the module tree (not in the state dict, not moved or trained): the compiled training
        # forward and the fast evaluation copy of the current evaluation epoch
        self.__dict__["_compiled_train"] = None
        self.__dict__["_eval_model"] = None

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        """Run the network (train mode: dict of logits; eval mode: stage-2 logits at input size)."""
        if self.model.training and self.compile_options is not None:
            if self._compiled_train is None:
                self.__dict__["_compiled_train"] = torch.compile(self.model, **self.compile_options)
            return self._compiled_train(images)
        return self.model(images)

    def load_initial_weights(self, state: dict[str, Tensor]) -> TransferReport:
        """Load the weights of ``init_from`` (a state dict in ISNet keys, read by the caller) into the network:
        every tensor strictly, except the classifiers, which keep their initialisation when the number of classes
        differs (:func:`isnet.models.load_transfer`; the report is logged and returned)."""
        report = load_transfer(self.model, state, source=str(self.hparams.init_from or "state dict"))
        self.weights_loaded = True
        return report

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # resumed or load_from_checkpoint: the checkpoint's weights win over init_from and ImageNet weights
        self.weights_loaded = True

    def setup(self, stage: str) -> None:
        """At the start of a fit of a new network: load the backbone's ImageNet weights (``pretrained``), once."""
        pretrained = self.hparams.model_config.get("pretrained")
        if stage == "fit" and pretrained and not self.weights_loaded and not self.hparams.get("init_from"):
            self.model.load_pretrained_backbone(pretrained)
            self.weights_loaded = True

    def on_fit_start(self) -> None:
        init_from = self.hparams.get("init_from")
        if init_from and not self.weights_loaded and not self.trainer.ckpt_path:
            raise ConfigError(
                f"init_from={init_from!r} was not loaded: read it and call load_initial_weights() before fitting "
                "(isnet.cli.utils.build_training_module does, as scripts/train.py)"
            )

    def train(self, mode: bool = True) -> ISNetModule:
        super().train(mode)
        if self.hparams.get("freeze_backbone"):
            self.model.backbone.eval()  # frozen BatchNorm statistics, also after each validation
        return self

    def on_train_start(self) -> None:
        # Sanity-check batches must not leak into the first validation result. The best mIoU is kept: it is
        # part of the checkpoint, so a resumed run continues the same maximum.
        self.val_iou.reset()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One reference iteration: forward in train mode, three CE terms, checked for NaN/inf."""
        images, masks = batch["image"], batch["mask"]
        losses = self.criterion(self(images), masks)
        loss = losses["loss"]
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(self._nonfinite_message(losses, batch_idx))
        log = dict(on_step=True, on_epoch=False, batch_size=images.shape[0])
        self.log("train/loss", loss, prog_bar=True, **log)
        for name in ("loss_stage1", "loss_stage2", "loss_aux"):
            if name in losses:
                self.log(f"train/{name}", losses[name], **log)
        if self._trainer is not None and self.trainer.optimizers:
            # the value this step uses (set before the step)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], **log)
        return loss

    def _nonfinite_message(self, losses: dict[str, Tensor], batch_idx: int) -> str:
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        last = newest_checkpoint(self._trainer)  # it predates this step, so its weights are still finite
        where = f"the last good checkpoint is {last}" if last else "no checkpoint has been written yet"
        return (
            f"non-finite training loss at global step {self.global_step} (epoch {self.current_epoch}, "
            f"batch {batch_idx}): {terms}; training stopped, {where}. Check the learning rate and the labels."
        )

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimiser (default: SGD over one parameter group) + poly LR stepped every optimizer step."""
        hp = self.hparams
        # ssseg/modules/models/optimizers: SGD(model.parameters(), lr, momentum, weight_decay), params_rules={}
        optimizer = build_optimizer(self.model, hp.optimizer, hp.param_rules)  # trainable parameters only
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            raise ConfigError(
                f"the poly schedule needs a finite training length, got trainer.estimated_stepping_batches={total}; "
                "set trainer.max_epochs (or max_steps)"
            )
        #: T, the schedule length in optimizer steps (per rank: max_epochs x per-rank batches per epoch).
        self.total_steps = int(total)
        scheduler = PolyLR(
            optimizer, self.total_steps, power=hp.power, min_lr=hp.min_lr, base_lr=hp.optimizer["lr"]
        )
        schedule = {"scheduler": scheduler, "interval": "step", "frequency": 1}
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def _evaluate(self, batch: dict[str, Any], metric: SegmentationIoU, stage: str) -> None:
        masks = batch.get("mask")
        if masks is None:
            raise DataError(
                f"the {stage} batch has no 'mask': this split has no labels and cannot be evaluated "
                "(scripts/eval.py format_only=true writes its predictions, e.g. for a benchmark server)"
            )
        images = batch["image"]
        if isinstance(images, Tensor) and isinstance(masks, Tensor):
            pairs = [(images, masks)]  # one call for the whole batch: all images and labels share a size
        else:
            pairs = [(img.unsqueeze(0), mask.unsqueeze(0)) for img, mask in zip(images, masks, strict=True)]
        config = self.test_inference_config if stage == "test" else self.inference_config
        for image, mask in pairs:
            metric.update(self._segment(image, mask.shape[-2:], config), mask)

    def _segment(self, images: Tensor, size: Sequence[int], config: InferenceConfig) -> Tensor:
        """Class ids ``(B, H, W)`` at the original ``size`` of ``images`` ``(B, 3, h, w)`` under ``config``."""
        scores = run_inference(self.eval_model().predict_logits, images, size, config, self.flip_pairs)
        return scores.argmax(dim=1)

    def eval_model(self) -> InferenceModel:
        """The fast copy of the network for this evaluation epoch, built on its first batch (under the trainer's
        autocast, whose dtype it takes); the network does not change during an evaluation epoch."""
        if self._eval_model is None:
            device = self.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
            self.__dict__["_eval_model"] = optimize_for_inference(self.model, dtype, self.compile_options)
        return self._eval_model

    def _drop_eval_model(self) -> None:
        self.__dict__["_eval_model"] = None  # rebuilt from the trained weights at the next evaluation

    on_validation_epoch_start = on_test_epoch_start = on_predict_epoch_start = _drop_eval_model

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Predict at the original label size and accumulate the confusion matrix."""
        self._evaluate(batch, self.val_iou, "validation")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """As :meth:`validation_step`, with the test-time settings."""
        self._evaluate(batch, self.test_iou, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Class ids of each image at its original size (the batch's ``size``), with the test-time settings of
        :meth:`test_step`; labels are not needed. Returns ``{"name": [...], "pred": [(H, W) int64, ...]}``."""
        images, sizes = batch["image"], [tuple(size.tolist()) for size in batch["size"]]
        if isinstance(images, Tensor) and len(set(sizes)) == 1:
            preds = list(self._segment(images, sizes[0], self.test_inference_config))
        else:
            preds = [self._segment(img.unsqueeze(0), size, self.test_inference_config)[0]
                     for img, size in zip(images, sizes, strict=True)]  # fmt: skip
        return {"name": list(batch["name"]), "pred": preds}

    def _log_epoch(self, name: str, value: Tensor | float) -> None:
        # The value is already global (the metric's compute() all-reduces its confusion matrix), so the
        # ranks hold identical numbers; "max" keeps it exact where a mean all-reduce could round.
        value = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        self.log(name, value, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")

    def _compute(self, metric: SegmentationIoU, stage: str) -> dict[str, Tensor]:
        self._drop_eval_model()
        result = metric.compute()
        if stage == "test":  # the global counts on every rank, for the confusion-matrix plot
            with metric.sync_context():
                result["confmat"] = metric.confmat.detach().cpu().clone()
        metric.reset()
        if not self.trainer.sanity_checking and bool(torch.isnan(result["aAcc"])):
            raise DataError(
                f"the {stage} split has no labelled pixel (every label is the ignore value or outside "
                "[0, num_classes)); it cannot be evaluated"
            )
        return result

    def on_validation_epoch_end(self) -> None:
        result = self._compute(self.val_iou, "validation")
        if self.trainer.sanity_checking:
            return
        miou = result["mIoU"].float()
        self._log_epoch("val/mIoU", miou)
        self._log_epoch("val/aAcc", result["aAcc"])
        self.val_miou_best.update(miou)
        self._log_epoch("val/mIoU_best", self.val_miou_best.compute())

    @property
    def test_suffix(self) -> str:
        """``"_ms_flip"`` when the test settings use several scales or flipping, else ``""``."""
        config = self.test_inference_config
        return "_ms_flip" if (len(config.scales) > 1 or config.flip) else ""

    def on_test_epoch_end(self) -> None:
        result = self._compute(self.test_iou, "test")
        suffix = self.test_suffix
        self._log_epoch(f"test/mIoU{suffix}", result["mIoU"])
        self._log_epoch(f"test/aAcc{suffix}", result["aAcc"])
        iou, acc = (dict(zip(self.class_names, result[k].tolist(), strict=True)) for k in ("IoU", "Acc"))
        for name, value in iou.items():
            self._log_epoch(f"test/IoU{suffix}/{name}", value)
        self.test_results = {
            **{k: float(result[k]) for k in ("mIoU", "aAcc", "mAcc")},
            "IoU": iou,
            "Acc": acc,
            "inference": _as_dict(self.test_inference_config),
            "confmat": result["confmat"],
        }
