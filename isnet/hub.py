"""The model zoo from Python: build a recipe's network, or download a released ISNet checkpoint and get a ready model.

Model-zoo names are our experiment names (``isnet_r50_d8_ade20k``) or the released file names
(``isnet_resnet50os8_ade20k``). Released checkpoints are downloaded into torch's hub cache
(``$TORCH_HOME/hub/checkpoints``; a file already there is used offline) and loaded strictly with
:func:`isnet.from_sssegmentation` (``weights_only=True``). ``$ISNET_ZOO_URL`` replaces the release URL with
a template (``{name}``: ``isnet_resnet50os8_ade20k``, ``{file}``: ``isnet_resnet50os8_ade20k.pth``).
Besides zoo names, :func:`from_pretrained` takes a folder written by :func:`isnet.hf.save_pretrained` or a Hugging
Face Hub repository id (``user/repo``; :mod:`isnet.hf`). Nothing here imports the data stack.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isnet.convert import from_sssegmentation
from isnet.errors import CheckpointError
from isnet.hf import CONFIG_NAME, download, is_hub_folder, is_repo_id, load_pretrained
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
    """A checkpoint argument as a path for :func:`isnet.load_checkpoint`: an existing file or Hub-format folder
    as is, a model-zoo name downloaded (or cached), a Hub repository id (``user/repo``) downloaded into the
    Hugging Face cache.

    Raises:
        FileNotFoundError: ``ckpt`` is none of these.
        DownloadError: a download failed.
    """
    path = Path(ckpt)
    if path.is_file() or is_hub_folder(path):
        return path
    try:
        resolve_entry(str(ckpt))
    except ValueError:
        if is_repo_id(str(ckpt)):
            return download(str(ckpt))
        raise FileNotFoundError(
            f"checkpoint {str(ckpt)!r} is neither a file nor a model-zoo name ({list_pretrained()}), nor a folder "
            f"with {CONFIG_NAME} or a Hugging Face Hub repository id (user/repo)"
        ) from None
    return download_checkpoint(str(ckpt), cache_dir, progress)


def from_pretrained(
    name: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> ISNet:
    """A released or shared ISNet, loaded strictly; or, for fine-tuning, the same network with another number of
    classes and every tensor but the classifiers loaded.

    Args:
        name: one of the 12 model-zoo names (:func:`list_pretrained`), downloaded through torch's hub cache; a
            folder written by :func:`isnet.hf.save_pretrained` (an existing folder wins over a zoo name); or a
            Hugging Face Hub repository id ``user/repo`` holding such a folder (``HF_HUB_OFFLINE=1``: from the
            Hugging Face cache only).
        cache_dir: folder for the download; default ``torch.hub.get_dir()/checkpoints`` (zoo), the Hugging Face
            cache (Hub).
        progress: show a download progress bar on stderr (zoo downloads).
        num_classes: number of classes K of the returned network (default: the source's, or ``len(class_names)``).
            When it differs from the source's, the three classifiers (stage 1, stage 2, auxiliary) keep their
            fresh initialisation and everything else loads strictly (:func:`isnet.models.load_transfer`).
        class_names: K class names (default: the source's for its K, else ``class_0 ...``).
        palette: K RGB triples (default: the source's for its K, else :func:`isnet.meta.default_palette`).
        revision, token: Hub revision (branch, tag or commit) and access token, for a repository id.

    Returns:
        The model in eval mode, with its ``class_names`` and ``palette``; a zoo model has ``meta["recipe"]`` = the
        experiment name (:func:`isnet.meta.recipe` gives its settings and published mIoU). With ``num_classes``,
        ``class_names`` or ``palette`` given, ``meta["init_from"]`` holds the load report
        (:meth:`isnet.models.TransferReport.summary`: the re-initialised keys), also logged at INFO level.

    Raises:
        ValueError: a name that is none of the three kinds, or class names/palette whose length is not K.
        DownloadError: the download failed (for a zoo name, the message says where to put a file downloaded by
            hand).
        CheckpointError: the file does not hold that released model or is unreadable (delete it to download it
            again), or a folder whose ``config.json`` does not match its weights.
    """
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    given = dict(num_classes=num_classes, class_names=class_names, palette=palette)
    custom = {k: v for k, v in given.items() if v is not None}
    try:
        entry = None if Path(name).is_dir() else resolve_entry(str(name))
    except ValueError:
        if not is_repo_id(str(name)):
            raise ValueError(
                f"{str(name)!r} is neither a model-zoo name ({list_pretrained()}), a folder nor a Hugging Face Hub "
                "repository id (user/repo)"
            ) from None
        entry = None
    if entry is None:
        source = load_pretrained(name, cache_dir=cache_dir, revision=revision, token=token)
        if not custom:
            return source
        target = _with_overrides(source.config, custom)
    else:
        # build the target first: a wrong class count or name list fails before any download
        target = create_model(entry.experiment, **custom) if custom else None
        # saved as <release name>.pth, so from_sssegmentation recognises the recipe
        path = download_checkpoint(name, cache_dir, progress)
        try:
            source = from_sssegmentation(path)
        except CheckpointError as err:  # a truncated or wrong cached file: say how to get a fresh copy
            raise type(err)(f"{err}\nDelete {path} to download it again.") from err
        if target is None:
            return source
    report = load_transfer(target, source.state_dict(), source=str(entry.experiment if entry else name))
    target.meta["init_from"] = report.summary()
    return target.eval()


def _with_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> ISNet:
    """``ISNet(**config)`` with ``overrides``; another ``num_classes`` drops the config's class names and palette."""
    config = dict(config)
    if overrides.get("num_classes", config["num_classes"]) != config["num_classes"]:
        config.pop("class_names", None), config.pop("palette", None)
    return ISNet.from_config({**config, **overrides})


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
    return _with_overrides(entry.model_kwargs(), kwargs)
