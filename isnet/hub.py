"""The model zoo from Python: build a recipe's network, or download a released ISNet checkpoint and get a ready model.

Model-zoo names are our experiment names (``isnet_r50_d8_ade20k``) or the released file names
(``isnet_resnet50os8_ade20k``). Released checkpoints are downloaded into torch's hub cache
(``$TORCH_HOME/hub/checkpoints``; a file already there is used offline) and loaded strictly with
:func:`isnet.from_sssegmentation` (``weights_only=True``). ``$ISNET_ZOO_URL`` replaces the release URL with
a template (``{name}``: ``isnet_resnet50os8_ade20k``, ``{file}``: ``isnet_resnet50os8_ade20k.pth``).
Nothing here imports the data stack.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isnet.convert import from_sssegmentation
from isnet.errors import CheckpointError
from isnet.meta.recipes import RECIPES, Recipe, recipe
from isnet.models import ISNet, load_transfer
from isnet.models.pretrained import DownloadError, download_cached

__all__ = [
    "ZOO_URL_ENV",
    "DownloadError",
    "create_model",
    "download_checkpoint",
    "from_pretrained",
    "list_models",
    "list_pretrained",
    "resolve_checkpoint",
    "resolve_entry",
    "zoo_urls",
]

ZOO_URL_ENV = "ISNET_ZOO_URL"


def list_pretrained() -> list[str]:
    """The 12 model-zoo experiment names, sorted (each also accepted by its released file name)."""
    return list_models()


def list_models(pattern: str | None = None) -> list[str]:
    """Recipe names for :func:`create_model`, sorted, optionally filtered by a shell pattern (``"*_ade20k"``)."""
    return sorted(n for n in RECIPES if pattern is None or fnmatch.fnmatch(n, pattern))


def resolve_entry(name: str) -> Recipe:
    """The recipe of an experiment name or released file name (``.pth`` and ``_train`` optional).

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    try:
        return recipe(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


def zoo_urls(name: str) -> list[str]:
    """URLs to try for a released checkpoint: ``$ISNET_ZOO_URL`` if set, else the release URL and its older
    ``_train`` spelling."""
    entry = resolve_entry(name)
    if template := os.environ.get(ZOO_URL_ENV):
        return [template.format(name=entry.release_name, file=f"{entry.release_name}.pth")]
    return [entry.url, entry.url.removesuffix(".pth") + "_train.pth"]


def download_checkpoint(name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download a released checkpoint (unless cached); returns ``<cache folder>/<released name>.pth``.

    Args:
        name: model-zoo name.
        cache_dir: folder for the file; default ``torch.hub.get_dir()/checkpoints``.
        progress: show a progress bar on stderr.

    Raises:
        ValueError: unknown name.
        DownloadError: the download failed; the message says how to download it by hand and where to save it.
    """
    file_name = f"{resolve_entry(name).release_name}.pth"
    return download_cached(zoo_urls(name), cache_dir, progress, file_name=file_name)


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


def from_pretrained(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> ISNet:
    """A released ISNet, downloaded through torch's hub cache and loaded strictly; or, for fine-tuning, the same
    network with another number of classes and every tensor but the classifiers loaded.

    Args:
        name: one of the 12 model-zoo names (:func:`list_pretrained`).
        cache_dir: folder for the file; default ``torch.hub.get_dir()/checkpoints``.
        progress: show a download progress bar on stderr.
        num_classes: number of classes K of the returned network (default: the recipe's, or ``len(class_names)``).
            When it differs from the recipe's, the three classifiers (stage 1, stage 2, auxiliary) keep their
            fresh initialisation and everything else loads strictly (:func:`isnet.models.load_transfer`).
        class_names: K class names (default: the dataset's for the recipe's K, else ``class_0 ...``).
        palette: K RGB triples (default: the dataset's for the recipe's K, else
            :func:`isnet.meta.default_palette`).

    Returns:
        The model in eval mode, with its ``class_names`` and ``palette`` and ``meta["recipe"]`` = the experiment
        name (:func:`isnet.meta.recipe` gives its settings and published mIoU). With ``num_classes``,
        ``class_names`` or ``palette`` given, ``meta["init_from"]`` holds the load report
        (:meth:`isnet.models.TransferReport.summary`: the re-initialised keys), also logged at INFO level.

    Raises:
        ValueError: unknown name, or class names/palette whose length is not K.
        DownloadError: the download failed (the message says where to put a file downloaded by hand).
        CheckpointError: the file does not hold that released model or is unreadable (delete it to download it
            again).
    """
    entry = resolve_entry(name)
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    # build the target first: a wrong class count or name list fails before any download
    given = dict(num_classes=num_classes, class_names=class_names, palette=palette)
    custom = {k: v for k, v in given.items() if v is not None}
    target = create_model(entry.experiment, **custom) if custom else None
    # saved as <release name>.pth, so from_sssegmentation recognises the recipe
    path = download_checkpoint(name, cache_dir, progress)
    try:
        released = from_sssegmentation(path)
    except CheckpointError as err:  # a truncated or wrong cached file: say how to get a fresh copy
        raise type(err)(f"{err}\nDelete {path} to download it again.") from err
    if target is None:
        return released
    report = load_transfer(target, released.state_dict(), source=entry.experiment)
    target.meta["init_from"] = report.summary()
    return target.eval()


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> ISNet:
    """An ISNet by name, in the style of ``timm.create_model``.

    Args:
        name: a recipe name (:func:`list_models`, or its released file name): that recipe's network with its
            dataset's class names and palette; otherwise a backbone name for ``ISNet(name, **kwargs)``.
        pretrained: recipe: the released weights (:func:`from_pretrained`, ``kwargs`` may give ``cache_dir``,
            ``progress``, and ``num_classes``, ``class_names``, ``palette`` for fine-tuning); backbone: ImageNet
            weights for the backbone.
        **kwargs: ``ISNet`` arguments overriding the recipe's (a different ``num_classes`` drops the dataset's
            class names and palette, e.g. for fine-tuning).
    """
    try:
        entry = recipe(name)
    except KeyError:
        return ISNet(name, pretrained=pretrained, **kwargs)
    if pretrained:
        return from_pretrained(entry.experiment, **kwargs)
    config = entry.model_kwargs()
    if kwargs.get("num_classes", entry.num_classes) != entry.num_classes:
        del config["class_names"], config["palette"]
    return ISNet(**{**config, **kwargs})
