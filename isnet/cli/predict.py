"""Segment images with a checkpoint and write colour masks, overlays and class-id maps.

Examples::

    python scripts/predict.py ckpt=model.pth input=photo.jpg
    python scripts/predict.py experiment=isnet_r50_d8_ade20k ckpt=model.pth input=photos/ ms_flip=true
    python scripts/predict.py ckpt=runs/demo/<run>/checkpoints/last.ckpt data=synthetic input="imgs/*.png"
    python scripts/predict.py ckpt=isnet_r50_d8_cityscapes input=drive.mp4 batch_size=4   # <stem>_overlay.mp4

With an experiment (or ``data=<dataset>``) the dataset's test resize, palette and flip pairs are used;
otherwise the image is only normalised and a generated palette is used. Predictions are made at the image's
original size, exactly as in evaluation. The work is done by :class:`isnet.Segmenter`; this command adds the
Hydra settings (data, inference) and ``predictions.json``. Existing output files are refused unless ``force=true``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

import isnet
import isnet.hub
from isnet.cli import CONFIG_DIR, one_line_errors
from isnet.cli.eval import check_compatible, compile_setting, inference_settings
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.models import ISNet
from isnet.segmenter import VIDEO_SUFFIXES, Segmenter, list_images
from isnet.utils.image import IMAGE_SUFFIXES, normalize
from isnet.utils.io import write_json
from isnet.viz import default_palette

__all__ = ["IMAGE_SUFFIXES", "list_images", "main", "predict"]


def _data_settings(cfg: DictConfig, model: ISNet) -> dict[str, Any]:
    """Palette, class names, normalisation, test resize and flip pairs of the configured dataset (without one,
    the checkpoint's class names and palette)."""
    if cfg.get("data") is None:
        return {"palette": model.palette, "class_names": model.class_names,
                "mean": IMAGENET_MEAN_255, "std": IMAGENET_STD_255, "transform": None, "flip_pairs": []}  # fmt: skip
    datamodule = hydra.utils.instantiate(cfg.data)
    check_compatible(model, cfg, datamodule, cfg.ckpt, backbone=False)
    transform = datamodule.build_test_transform() if getattr(datamodule, "test_scale", None) else None
    k = model.num_classes
    palette = list(datamodule.palette) if len(datamodule.palette) == k else default_palette(k)
    return {"palette": palette, "class_names": list(datamodule.class_names), "mean": datamodule.mean,
            "std": datamodule.std, "transform": transform, "flip_pairs": list(datamodule.flip_pairs)}  # fmt: skip


def _to_input(rgb: np.ndarray, settings: dict[str, Any]) -> torch.Tensor:
    if settings["transform"] is not None:
        return settings["transform"](image=rgb)["image"].float()
    return normalize(rgb, settings["mean"], settings["std"])


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run the prediction described by ``cfg`` (a ``predict`` config).

    Returns:
        One record per image: input path, written files and the classes present (a video: one record with
        the overlay video, its frame count and the measured frames per second).
    """
    spec = str(cfg.input)
    video = Path(spec).suffix.lower() in VIDEO_SUFFIXES
    files = [] if video else list_images(spec)
    # a file, or one of the 12 model-zoo names (downloaded once into torch's hub cache)
    ckpt = str(isnet.hub.resolve_checkpoint(str(cfg.ckpt)))
    device = str(cfg.get("device", "auto"))
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    network = isnet.load_checkpoint(ckpt)
    settings = _data_settings(cfg, network)
    segmenter = Segmenter(network, device, inference=inference_settings(cfg), compile=compile_setting(cfg),
                          preprocess=partial(_to_input, settings=settings), flip_pairs=settings["flip_pairs"],
                          palette=settings["palette"], class_names=settings["class_names"])  # fmt: skip
    out_dir = Path(cfg.output_dir)  # created by the first file written
    force, alpha, batch_size = (
        bool(cfg.get("force", False)),
        float(cfg.get("alpha", 0.5)),
        int(cfg.get("batch_size", 1)),
    )
    if (out_dir / "predictions.json").exists() and not force:
        raise FileExistsError(f"{out_dir / 'predictions.json'} already exists; pass force=true to replace it")
    if video:
        source = Path(spec)
        suffix = ".mp4" if source.suffix.lower() in (".mp4", ".m4v", ".mov") else ".avi"
        result = segmenter.predict_video(source, out_dir / f"{source.stem}_overlay{suffix}", batch_size, alpha,
                                         overwrite=force)  # fmt: skip
        records = [{"input": spec, "overlay": str(result.path), "frames": result.frames,
                    "fps": round(result.fps, 3)}]  # fmt: skip
    else:
        records = [
            {"input": str(p.path), **{kind: str(path) for kind, path in p.files.items()}, "classes": p.classes}
            for p in segmenter.stream(files, batch_size, output_dir=out_dir, alpha=alpha,
                                      labels=bool(cfg.get("save_labels", True)), overwrite=force)
        ]  # fmt: skip
    index = write_json(out_dir / "predictions.json", {"checkpoint": ckpt, "images": records})
    print(f"Wrote {len(records)} prediction(s) to {out_dir.resolve()} (index: {index.name})")
    return records


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    """Console entry point ``isnet-predict`` / ``scripts/predict.py``."""
    predict(cfg)


if __name__ == "__main__":
    main()
