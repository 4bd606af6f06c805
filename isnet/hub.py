"""The model zoo from Python: download a released ISNet checkpoint and get a ready model.

:func:`from_pretrained` takes one of the 12 model-zoo names (our experiment name ``isnet_r50_d8_ade20k`` or the
released file name ``isnet_resnet50os8_ade20k``), downloads the released sssegmentation checkpoint into torch's hub
cache (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``), loads it strictly with
:func:`isnet.from_sssegmentation` (read with ``weights_only=True``) and attaches the dataset's class names and
palette. A file already in the cache is used without downloading, so a checkpoint fetched by hand works offline.

``$ISNET_ZOO_URL`` replaces the release URL with a template (``{name}``: ``isnet_resnet50os8_ade20k``, ``{file}``:
``isnet_resnet50os8_ade20k.pth``), e.g. a mirror or a local server.
"""

from __future__ import annotations

import os
from pathlib import Path

from isnet.convert import ConversionError, from_sssegmentation
from isnet.errors import CheckpointError
from isnet.models import ISNet
from isnet.models.pretrained import DownloadError, download_cached
from isnet.zoo import ZOO, ZooEntry, zoo_entry

__all__ = [
    "ZOO_URL_ENV",
    "DownloadError",
    "dataset_metadata",
    "download_checkpoint",
    "from_pretrained",
    "list_pretrained",
    "resolve_checkpoint",
    "resolve_entry",
    "zoo_urls",
]

#: Environment variable with a URL template (``{name}``, ``{file}``) replacing the release URL.
ZOO_URL_ENV = "ISNET_ZOO_URL"

# Older model-zoo pages link "<release name>_train.pth"; the current ones "<release name>.pth".
_LEGACY_SUFFIX = "_train"


def list_pretrained() -> list[str]:
    """The 12 model-zoo experiment names, sorted (each also accepted by its released file name)."""
    return sorted(ZOO)


def resolve_entry(name: str) -> ZooEntry:
    """The model-zoo entry of an experiment name or released file name (``.pth`` and ``_train`` optional).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"model-zoo name must be a non-empty string, got {name!r}; choose one of {list_pretrained()}"
        )
    stem = Path(name).name
    stem = stem[:-4] if stem.endswith(".pth") else stem
    stem = stem[: -len(_LEGACY_SUFFIX)] if stem.endswith(_LEGACY_SUFFIX) else stem
    try:
        return zoo_entry(stem)
    except KeyError:
        releases = sorted(e.release_name for e in ZOO.values())
        raise ValueError(
            f"unknown model-zoo name {name!r}; choose an experiment name {list_pretrained()} "
            f"or a released file name {releases}"
        ) from None


def zoo_urls(name: str) -> list[str]:
    """URLs to try for a released checkpoint: ``$ISNET_ZOO_URL`` if set, else the release URL and its older
    ``_train`` spelling."""
    entry = resolve_entry(name)
    template = os.environ.get(ZOO_URL_ENV)
    if template:
        return [template.format(name=entry.release_name, file=f"{entry.release_name}.pth")]
    legacy = entry.url[: -len(".pth")] + f"{_LEGACY_SUFFIX}.pth"
    return [entry.url, legacy]


def download_checkpoint(name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download a released checkpoint (unless cached) and return its path.

    Args:
        name: experiment name (``isnet_r50_d8_ade20k``) or released file name (``isnet_resnet50os8_ade20k``).
        cache_dir: folder for the file; default ``torch.hub.get_dir()/checkpoints``.
        progress: show a progress bar on stderr.

    Returns:
        ``<cache folder>/<released name>.pth``.

    Raises:
        ValueError: unknown name.
        DownloadError: the download failed; the message gives the URL, a command to download it by hand and the
            exact path to save it as.
    """
    entry = resolve_entry(name)
    return download_cached(zoo_urls(name), cache_dir, progress, file_name=f"{entry.release_name}.pth")


def resolve_checkpoint(
    ckpt: str | os.PathLike, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """A checkpoint argument as a file: an existing path as is, a model-zoo name downloaded (or cached).

    Raises:
        FileNotFoundError: ``ckpt`` is neither an existing file nor a model-zoo name.
        DownloadError: a model-zoo download failed.
    """
    path = Path(ckpt)
    if path.is_file():
        return path
    try:
        resolve_entry(str(ckpt))
    except ValueError:
        raise FileNotFoundError(
            f"checkpoint {str(ckpt)!r} is neither a file nor a model-zoo name ({list_pretrained()})"
        ) from None
    return download_checkpoint(str(ckpt), cache_dir, progress)


def dataset_metadata(dataset: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and RGB palette of a model-zoo dataset, read from its DataModule class (nothing is built).

    Raises:
        ValueError: unknown dataset, or metadata that disagrees with the model zoo's class count.
    """
    from isnet.data import DATAMODULES  # the data stack is imported only when metadata is asked for

    cls = DATAMODULES.get(dataset)
    names = getattr(cls, "class_names", None)
    palette = getattr(cls, "palette", None)
    if cls is None or not isinstance(names, list) or not isinstance(palette, list) or not names:
        raise ValueError(f"no class metadata for dataset {dataset!r}; known: {sorted(DATAMODULES)}")
    if len(palette) != len(names):
        raise ValueError(f"{dataset}: {len(names)} class names but {len(palette)} palette colours")
    return [str(n) for n in names], [tuple(int(c) for c in rgb) for rgb in palette]


def from_pretrained(name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> ISNet:
    """A released ISNet, downloaded through torch's hub cache and loaded strictly.

    Args:
        name: one of the 12 model-zoo names, as our experiment name (``isnet_r50_d8_ade20k``) or the released
            file name (``isnet_resnet50os8_ade20k``); see :func:`list_pretrained`.
        cache_dir: folder for the file; default ``torch.hub.get_dir()/checkpoints``.
        progress: show a download progress bar on stderr.

    Returns:
        The model in eval mode, with ``class_names`` (list of K str), ``palette`` (list of K RGB tuples) and
        ``zoo_entry`` (the experiment settings and published mIoU) attached.

    Raises:
        ValueError: unknown name.
        DownloadError: the download failed (the message says where to put a file downloaded by hand).
        ConversionError: the file does not hold that released model (lists the keys).
        CheckpointError: the cached file is unreadable (e.g. truncated); delete it to download it again.

    Example::

        model = isnet.from_pretrained("isnet_r50_d8_ade20k")
        logits = model(images)  # (N, 150, H, W)
        names = model.class_names
    """
    entry = resolve_entry(name)
    path = download_checkpoint(name, cache_dir, progress)
    try:
        model = from_sssegmentation(path)
    except ConversionError:
        raise
    except CheckpointError as err:  # unreadable (e.g. truncated) file: say how to get a fresh copy
        raise CheckpointError(f"{err}\nDelete {path} to download it again.") from err
    if (model.backbone_name, model.num_classes) != (entry.backbone, entry.num_classes):
        raise ConversionError(
            f"{path} holds {model.backbone_name} with {model.num_classes} classes, not the released "
            f"{entry.release_name} ({entry.backbone}, {entry.num_classes} classes); delete it to download it again"
        )
    class_names, palette = dataset_metadata(entry.dataset)
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"{entry.dataset} metadata lists {len(class_names)} classes but {entry.release_name} predicts "
            f"{model.num_classes}"
        )
    model.zoo_entry = entry
    model.class_names = class_names
    model.palette = palette
    return model.eval()
