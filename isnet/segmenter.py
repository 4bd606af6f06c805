"""One inference API for images, folders and video: ``Segmenter(model)(inputs)``.

In the style of mmsegmentation's ``MMSegInferencer`` and Hugging Face pipelines: give a model (an ``ISNet``, a
model-zoo name or a checkpoint file) once, then images in any form; get class-id maps at each image's original
size, optionally probabilities, colour masks and overlays written to a folder, or an overlay video. The test
preprocessing is the model's: the recipe's dataset test resize (``isnet.meta``) where the model names a recipe,
then the ImageNet normalisation; inference runs on the fast copy (:func:`isnet.accel.optimize_for_inference`)
through :func:`isnet.inference.run_inference`, exactly as evaluation does. Neither Lightning nor Hydra is
imported.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isnet.accel import InferenceModel, optimize_for_inference
from isnet.checkpoint import load_checkpoint
from isnet.hub import from_pretrained
from isnet.inference import InferenceConfig, run_inference
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255, dataset_info
from isnet.meta.recipes import RECIPES, SINGLE_SCALE
from isnet.models import ISNet
from isnet.utils.image import IMAGE_SUFFIXES, normalize, read_image, rescaled_size
from isnet.utils.io import atomic_path
from isnet.viz import colorize, overlay, save_image

__all__ = [
    "MODES",
    "VIDEO_SUFFIXES",
    "Prediction",
    "Segmenter",
    "VideoPrediction",
    "list_images",
    "load_model",
    "model_recipe",
]

MODES = ("whole", "slide", "ms_flip")
# container -> the OpenCV fourcc written into it (both ship with opencv-python-headless)
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
VIDEO_SUFFIXES = tuple(_FOURCC)

ImageInput = Any  # a path, glob, folder, PIL image or uint8 numpy array (see Segmenter.__call__)


def list_images(spec: str | os.PathLike) -> list[Path]:
    """Expand ``spec`` (an image file, a folder or a glob pattern) into a sorted list of image files.

    Raises:
        FileNotFoundError: nothing matches; the message names ``spec``.
    """
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


def load_model(source: ISNet | str | os.PathLike) -> ISNet:
    """An ``ISNet`` from an instance (returned as is), a checkpoint file (:func:`isnet.load_checkpoint`: ours, a
    Lightning ``.ckpt`` of this project, a released ``.pth``), a Hugging Face Hub folder or repository id, or a
    model-zoo name (both through :func:`isnet.from_pretrained`).

    Raises:
        FileNotFoundError: neither an existing file or folder, a model-zoo name nor a repository id (the message
            names it).
        ValueError: not a model, a path or a name.
    """
    if isinstance(source, ISNet):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            f"model must be an ISNet, a checkpoint file, a folder or a model-zoo name, got {type(source)!r}"
        )
    path = Path(source).expanduser()
    if path.is_file():
        return load_checkpoint(path)
    try:
        return from_pretrained(str(path) if path.is_dir() else str(source))
    except ValueError as err:  # none of the kinds from_pretrained knows
        raise FileNotFoundError(f"model {str(source)!r}: no such checkpoint file; {err}") from None


def model_recipe(model: ISNet | InferenceModel) -> str | None:
    """The model-zoo experiment a model was trained or released with (its ``meta``), or ``None``."""
    meta = model.meta or {}
    hparams = meta.get("hyper_parameters") if isinstance(meta.get("hyper_parameters"), dict) else {}
    for name in (meta.get("recipe"), meta.get("experiment"), hparams.get("experiment")):
        if isinstance(name, str) and name in RECIPES:
            return name
    return None


def _output_files(folder: str | os.PathLike, name: str, labels: bool, num_classes: int) -> dict[str, Path]:
    """The PNGs written for one image; the class-id PNG only with ``labels`` and at most 256 classes (8 bits)."""
    kinds = ["mask", "overlay"] + (["labels"] if labels and num_classes <= 256 else [])
    return {kind: Path(folder) / f"{name}_{kind}.png" for kind in kinds}


def _as_rgb(image: Any, what: str) -> np.ndarray:
    """A PIL image or a uint8 array (H x W grey, H x W x 1, x 3 RGB, x 4 RGBA) as a uint8 (H, W, 3) RGB array."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"{what}: expected a path, a glob, a folder, a PIL image or a uint8 numpy array, got {type(image)!r}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: a numpy image must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise ValueError(
            f"{what}: a numpy image must be (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, got {image.shape}"
        )
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])  # RGBA: the colour, without alpha (as cv2.imread reads it)


@dataclass
class Prediction:
    """The prediction for one image.

    Attributes:
        mask: class ids ``(H, W)`` int64 at the image's original size.
        probs: class probabilities ``(K, H, W)`` float32 (``return_probs=True``), else ``None``.
        path: the image file, or ``None`` for an in-memory image.
        name: the file stem (``image_<i>`` for the i-th in-memory input), used for written file names.
        image: the RGB input ``(H, W, 3)`` uint8.
        files: what :meth:`save` wrote, by kind (``mask``, ``overlay``, ``labels``).
    """

    mask: np.ndarray
    image: np.ndarray
    palette: list[Any]
    class_names: list[str]
    path: Path | None = None
    name: str = ""
    probs: np.ndarray | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Names of the classes present in :attr:`mask`."""
        return [self.class_names[k] for k in np.unique(self.mask).tolist()]

    def colorize(self) -> np.ndarray:
        """The mask in the model's palette, uint8 ``(H, W, 3)``."""
        return colorize(self.mask, self.palette)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The colour mask blended over the image (``alpha``: weight of the mask), uint8 ``(H, W, 3)``."""
        return overlay(self.image, self.mask, self.palette, alpha)

    def targets(self, folder: str | os.PathLike, labels: bool = True) -> dict[str, Path]:
        """The files :meth:`save` writes: ``<name>_mask.png`` (colours), ``<name>_overlay.png`` and, with
        ``labels`` and at most 256 classes, ``<name>_labels.png`` (class ids as grey values)."""
        return _output_files(folder, self.name, labels, len(self.class_names))

    def save(
        self, folder: str | os.PathLike, alpha: float = 0.5, labels: bool = True, overwrite: bool = False
    ) -> dict[str, Path]:
        """Write the files of :meth:`targets` atomically; an existing file raises FileExistsError unless
        ``overwrite``. Returns them (also kept in :attr:`files`)."""
        images = {"mask": self.colorize, "overlay": lambda: self.overlay(alpha),
                  "labels": lambda: self.mask.astype(np.uint8)}  # fmt: skip
        for kind, path in self.targets(folder, labels).items():
            self.files[kind] = save_image(path, images[kind](), overwrite=overwrite)
        return dict(self.files)

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path else f"name={self.name!r}"
        probs = "" if self.probs is None else f", probs={tuple(self.probs.shape)}"
        return f"Prediction({where}, size={tuple(self.mask.shape)}, classes={self.classes}{probs})"


@dataclass(frozen=True)
class VideoPrediction:
    """What :meth:`Segmenter.predict_video` wrote: the overlay video, its frame count and size ``(H, W)``, and
    the measured throughput (frames per second, reading, inference, overlay and writing included)."""

    path: Path
    frames: int
    size: tuple[int, int]
    seconds: float
    fps: float


class Segmenter:
    """Segment images, folders and videos with an ISNet, as evaluation does.

    Args:
        model: an ``ISNet``, a model-zoo name (:func:`isnet.from_pretrained`) or a checkpoint file (ours, a
            Lightning ``.ckpt`` of this project, a released sssegmentation ``.pth``). An ``ISNet`` is moved to
            ``device``; the segmenter runs a snapshot of it (changing the model afterwards raises
            ``StaleSnapshotError``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when available.
        mode: ``"whole"`` (the single-scale test of every recipe), ``"slide"`` (sliding windows of
            ``crop_size``, default the recipe's training crop, stride ``stride``, default two thirds of it) or
            ``"ms_flip"`` (the recipe's multi-scale + flip settings; needs a model with a recipe).
        inference: explicit test-time settings; replace ``mode``.
        crop_size: slide window ``(h, w)`` or one int.
        stride: slide stride ``(h, w)`` or one int.
        preprocess: RGB uint8 ``(H, W, 3)`` -> normalised ``(3, h, w)`` float tensor; default: the recipe's test
            resize (none without a recipe), then the ImageNet mean/std.
        flip_pairs: class pairs swapped by a horizontal flip; default the recipe's dataset's (LIP).
        palette: K RGB triples for colour masks; default the model's.
        class_names: K names; default the model's.
        compile: ``torch.compile`` the fast copy (``True`` or ``torch.compile`` arguments).

    Raises:
        ValueError: an unknown ``mode`` or one the model has no settings for (the message says what to give).
    """

    def __init__(
        self,
        model: ISNet | str | os.PathLike,
        device: str | torch.device | None = None,
        mode: str = "whole",
        *,
        inference: InferenceConfig | None = None,
        crop_size: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        preprocess: Callable[[np.ndarray], torch.Tensor] | None = None,
        flip_pairs: Sequence[Sequence[int]] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        class_names: Sequence[str] | None = None,
        compile: bool | dict[str, Any] = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        network = load_model(model)
        self.recipe = model_recipe(network)
        info = dataset_info(RECIPES[self.recipe].dataset) if self.recipe else None
        self.config = inference or self._settings(mode, crop_size, stride)
        self.test_pipeline: dict[str, Any] = dict(info.test_pipeline) if info else {"scale": None}
        self.flip_pairs = [
            tuple(p) for p in (info.flip_pairs if flip_pairs is None and info else flip_pairs or ())
        ]
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = optimize_for_inference(network.to(self.device), compile=compile)
        self.palette = [list(c) for c in (palette if palette is not None else self.model.palette)]
        self.class_names = list(class_names if class_names is not None else self.model.class_names)
        self.preprocess = preprocess or self.default_preprocess

    def _settings(
        self, mode: str, crop_size: int | Sequence[int] | None, stride: int | Sequence[int] | None
    ) -> InferenceConfig:
        entry = RECIPES[self.recipe] if self.recipe else None
        if mode == "whole":
            return entry.single_scale if entry else SINGLE_SCALE
        if mode == "ms_flip":
            if entry is None:
                raise ValueError(
                    "mode='ms_flip' uses the recipe's multi-scale + flip settings, and this model names no "
                    "recipe; pass inference=InferenceConfig(scales=[...], flip=True) instead"
                )
            return entry.ms_flip
        crop = crop_size if crop_size is not None else (entry.crop_size if entry else None)
        if crop is None:
            raise ValueError(
                "mode='slide' needs crop_size (this model names no recipe to take its crop from)"
            )
        crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
        stride = stride if stride is not None else tuple(max(1, 2 * c // 3) for c in crop)
        return InferenceConfig("slide", crop_size=crop, stride=stride)

    def default_preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """The recipe's test resize (bilinear, as ``cv2.resize``; none without a recipe), then the ImageNet
        normalisation: ``(3, h, w)`` float32."""
        scale = self.test_pipeline.get("scale")
        if scale is not None:
            import cv2

            h, w = rescaled_size(*rgb.shape[:2], scale, bool(self.test_pipeline.get("keep_ratio", True)))
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        return normalize(rgb, IMAGENET_MEAN_255, IMAGENET_STD_255)

    def __repr__(self) -> str:
        return (f"Segmenter(backbone={self.model.backbone_name!r}, classes={len(self.class_names)}, "
                f"recipe={self.recipe!r}, device='{self.device}', inference={self.config})")  # fmt: skip

    # -- images ---------------------------------------------------------------------------------------------

    @staticmethod
    def _sources(inputs: ImageInput) -> list[tuple[Path | np.ndarray, str]]:
        """The inputs as (file or RGB array, name) pairs, in order; files are read later, batch by batch."""
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise ValueError("no input: give an image, a path, a glob, a folder or a list of them")
        sources: list[tuple[Path | np.ndarray, str]] = []
        for index, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                sources += [(path, path.stem) for path in list_images(item)]
            else:
                sources.append((_as_rgb(item, f"input {index}"), f"image_{index}"))
        return sources

    def stream(
        self,
        inputs: ImageInput,
        batch_size: int = 1,
        return_probs: bool = False,
        output_dir: str | os.PathLike | None = None,
        alpha: float = 0.5,
        labels: bool = True,
        overwrite: bool = False,
    ) -> Iterator[Prediction]:
        """:meth:`__call__` one prediction at a time (a folder of any size in constant memory)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        sources = self._sources(inputs)
        names: list[str] = []
        for _, stem in sources:  # the same file name in two folders of a glob gets a suffix
            names.append(f"{stem}_{len(names)}" if stem in names else stem)
        if output_dir is not None and not overwrite:  # refuse before anything is written
            for name in names:
                files = _output_files(output_dir, name, labels, len(self.class_names))
                taken = [p for p in files.values() if p.exists()]
                if taken:
                    raise FileExistsError(
                        f"{taken[0]} already exists; choose another output folder or overwrite"
                    )
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            images = [read_image(s) if isinstance(s, Path) else s for s, _ in chunk]
            for offset, prediction in enumerate(self._predict(images, return_probs)):
                source = chunk[offset][0]
                prediction.path = source if isinstance(source, Path) else None
                prediction.name = names[start + offset]
                if output_dir is not None:
                    prediction.save(output_dir, alpha, labels, overwrite)
                yield prediction

    def __call__(
        self,
        inputs: ImageInput,
        batch_size: int = 1,
        return_probs: bool = False,
        output_dir: str | os.PathLike | None = None,
        alpha: float = 0.5,
        labels: bool = True,
        overwrite: bool = False,
    ) -> list[Prediction]:
        """Segment ``inputs``.

        Args:
            inputs: an image file, a folder, a glob pattern, a PIL image, a uint8 numpy array (H x W grey,
                H x W x 3 RGB, H x W x 4 RGBA), or a list of them.
            batch_size: images per network call; images of equal size within each run of ``batch_size`` inputs
                go through together (the result equals one-by-one prediction up to float rounding).
            return_probs: also return class probabilities (the averaged probabilities of a ``use_probs``
                setting, else the soft-max of the averaged logits) at the original size.
            output_dir: write ``<name>_mask.png`` (colours), ``<name>_overlay.png`` and ``<name>_labels.png``
                (class ids) per image there (see :meth:`Prediction.save`).
            alpha: overlay opacity of the mask colours.
            labels: also write the class-id PNG (at most 256 classes).
            overwrite: replace existing files in ``output_dir``; without it an existing file raises
                FileExistsError before anything is written.

        Returns:
            One :class:`Prediction` per image, in input order (a folder or glob in sorted order).

        Raises:
            FileNotFoundError: a path, folder or pattern with no image (the message names it).
            ValueError: an input that is not an image (the message says which and why).
            OSError: an unreadable image file (named).
        """
        return list(self.stream(inputs, batch_size, return_probs, output_dir, alpha, labels, overwrite))

    def _predict(self, images: list[np.ndarray], return_probs: bool = False) -> list[Prediction]:
        """Predictions for RGB arrays; images of equal original and input size share one network call."""
        inputs = [self.preprocess(rgb) for rgb in images]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, (rgb, x) in enumerate(zip(images, inputs)):
            groups.setdefault((rgb.shape[:2], tuple(x.shape)), []).append(index)
        results: list[Prediction | None] = [None] * len(images)
        for (out_size, _), indices in groups.items():
            batch = torch.stack([inputs[i] for i in indices]).to(self.device)
            scores = run_inference(self.model.predict_logits, batch, out_size, self.config, self.flip_pairs)
            masks = scores.argmax(dim=1).cpu().numpy()
            probs = None
            if return_probs:
                probs = (scores if self.config.use_probs else scores.softmax(dim=1)).float().cpu().numpy()
            for row, i in enumerate(indices):
                results[i] = Prediction(masks[row], images[i], self.palette, self.class_names,
                                        probs=None if probs is None else probs[row])  # fmt: skip
        return results  # type: ignore[return-value]

    # -- video ----------------------------------------------------------------------------------------------

    def predict_video(
        self,
        path_in: str | os.PathLike,
        path_out: str | os.PathLike,
        batch_size: int = 8,
        alpha: float = 0.5,
        overwrite: bool = False,
        progress: bool = True,
    ) -> VideoPrediction:
        """Segment every frame of a video and write the overlay video (same frame rate and size).

        Args:
            path_in: a video OpenCV can read.
            path_out: the overlay video, ``.mp4``/``.m4v``/``.mov`` (mp4v) or ``.avi``/``.mkv`` (MJPG); written
                to a temporary file and renamed into place.
            batch_size: frames per network call.
            alpha: overlay opacity of the mask colours.
            overwrite: replace an existing ``path_out`` (otherwise FileExistsError).
            progress: show a progress bar and print the measured frames per second (stderr).

        Returns:
            A :class:`VideoPrediction` with the frame count and the measured frames per second.
        """
        import cv2

        src, out = Path(path_in).expanduser(), Path(path_out).expanduser()
        if not src.is_file():
            raise FileNotFoundError(f"video {src}: no such file")
        if out.suffix.lower() not in _FOURCC:
            raise ValueError(f"video output {out}: the suffix must be one of {list(VIDEO_SUFFIXES)}")
        if out.exists() and out.resolve() == src.resolve():
            raise ValueError(f"video output {out} is the input video")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        capture = cv2.VideoCapture(str(src))
        if not capture.isOpened():
            raise OSError(f"Cannot read video {src}: OpenCV could not open it")
        rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        bar = _progress(progress)
        task = bar.add_task(f"{src.name}", total=total if total > 0 else None) if bar else None
        frames, size, writer, start = 0, (0, 0), None, time.perf_counter()
        try:
            with atomic_path(out, overwrite) as tmp:
                if bar:
                    bar.start()
                while True:
                    batch = []
                    while len(batch) < batch_size:
                        ok, frame = capture.read()
                        if not ok:
                            break
                        batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    if not batch:
                        break
                    if writer is None:
                        size = batch[0].shape[:2]
                        fourcc = cv2.VideoWriter_fourcc(*_FOURCC[out.suffix.lower()])
                        writer = cv2.VideoWriter(str(tmp), fourcc, rate, (size[1], size[0]))
                        if not writer.isOpened():
                            raise OSError(f"Cannot write video {out}: OpenCV could not open a writer")
                    for prediction in self._predict(batch):
                        writer.write(cv2.cvtColor(prediction.overlay(alpha), cv2.COLOR_RGB2BGR))
                    frames += len(batch)
                    if bar:
                        bar.update(task, advance=len(batch))
                if writer is None:
                    raise OSError(f"Cannot read video {src}: no frame could be decoded")
                writer.release()
        finally:
            capture.release()
            if writer is not None:
                writer.release()
            if bar:
                bar.stop()
        seconds = time.perf_counter() - start
        result = VideoPrediction(
            out, frames, (int(size[0]), int(size[1])), seconds, frames / max(seconds, 1e-9)
        )
        if progress:
            print(f"{frames} frames in {seconds:.1f} s ({result.fps:.2f} frames/s) -> {out}")
        return result


def _progress(enabled: bool) -> Any:
    """A rich progress bar on stderr, or ``None``."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)  # fmt: skip
