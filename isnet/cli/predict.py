"""Segment images with a checkpoint and write colour masks, overlays and class-id maps.

Examples::

    python scripts/predict.py ckpt=model.pth input=photo.jpg
    python scripts/predict.py experiment=isnet_r50_d8_ade20k ckpt=model.pth input=photos/ ms_flip=true
    python scripts/predict.py ckpt=runs/demo/<run>/checkpoints/last.ckpt data=synthetic input="imgs/*.png"

With an experiment (or ``data=<dataset>``) the dataset's test resize, palette and flip pairs are used;
otherwise the image is only normalised and a generated palette is used. Predictions are made at the image's
original size, exactly as in evaluation.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

import isnet
import isnet.hub
from isnet.accel import InferenceModel, optimize_for_inference
from isnet.cli import CONFIG_DIR, one_line_errors
from isnet.cli.eval import check_compatible, compile_setting, inference_settings
from isnet.data.datasets.listing import IMAGE_SUFFIXES
from isnet.inference import run_inference
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.utils.io import write_json
from isnet.viz import colorize, default_palette, overlay, save_image

__all__ = ["IMAGE_SUFFIXES", "list_images", "main", "predict"]


def list_images(spec: str) -> list[Path]:
    """Expand ``spec`` (an image file, a folder or a glob pattern) into a sorted list of image files."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    candidates = path.iterdir() if path.is_dir() else map(Path, glob.glob(str(path), recursive=True))
    files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files and path.is_dir():
        raise FileNotFoundError(f"input={spec}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
    if not files:
        raise FileNotFoundError(
            f"input={spec}: no such image file or folder, and the pattern matches no image"
        )
    return files


def _data_settings(cfg: DictConfig, model: InferenceModel) -> dict[str, Any]:
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
    from isnet.data.datasets.base import normalize

    return normalize(rgb, settings["mean"], settings["std"])


def predict(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run the prediction described by ``cfg`` (a ``predict`` config).

    Returns:
        One record per image: input path, written files and the classes present.
    """
    from isnet.data.datasets.base import read_image

    files = list_images(str(cfg.input))
    # a file, or one of the 12 model-zoo names (downloaded once into torch's hub cache)
    ckpt = str(isnet.hub.resolve_checkpoint(str(cfg.ckpt)))
    device = str(cfg.get("device", "auto"))
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model = optimize_for_inference(isnet.load_checkpoint(ckpt).to(device), compile=compile_setting(cfg))
    settings = _data_settings(cfg, model)
    config = inference_settings(cfg)
    out_dir = Path(cfg.output_dir)  # created by the first file written
    records: list[dict[str, Any]] = []
    used: set[str] = set()
    for path in files:
        stem = path.stem
        if stem in used:  # the same file name in two folders of a glob
            stem = f"{stem}_{len(used)}"
        used.add(stem)
        rgb = read_image(path)
        image = _to_input(rgb, settings).unsqueeze(0).to(device)
        scores = run_inference(model.predict_logits, image, rgb.shape[:2], config, settings["flip_pairs"])
        pred = scores.argmax(dim=1)[0].cpu().numpy()
        written = {
            "mask": str(save_image(out_dir / f"{stem}_mask.png", colorize(pred, settings["palette"]))),
            "overlay": str(save_image(out_dir / f"{stem}_overlay.png",
                                      overlay(rgb, pred, settings["palette"], float(cfg.get("alpha", 0.5))))),
        }  # fmt: skip
        if cfg.get("save_labels", True) and model.num_classes <= 256:
            written["labels"] = str(save_image(out_dir / f"{stem}_labels.png", pred.astype(np.uint8)))
        present = [settings["class_names"][k] for k in np.unique(pred).tolist()]
        records.append({"input": str(path), **written, "classes": present})
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
