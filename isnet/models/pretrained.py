"""ImageNet initialisation of the backbones: the reference's open-mmlab checkpoints, timm tags and local files.

sssegmentation initialises ISNet's backbones from open-mmlab's ImageNet checkpoints (``backbones/resnet.py``
``resnet50conv3x3stem`` / ``resnet101conv3x3stem``, ``resnest.py`` ``resnest101``) with ``strict=False``. This
module downloads them through torch's hub cache and renames mmcv's keys onto the timm backbone strictly (every
backbone tensor present with its shape; only the ImageNet classifier ``fc.*`` dropped).

Key mapping (open-mmlab -> timm), as in the backbone part of the sssegmentation converter: ``stem.{0,1,3,4,6}``
-> ``conv1.{0,1,3,4,6}`` (the deep 3x3 stem), ``stem.7`` -> ``bn1``, ``layer{1-4}.*`` unchanged (ResNeSt's
``conv2.{conv,bn0,fc1,bn1,fc2}`` included), ``fc.*`` dropped.

Downloads go to ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), like torchvision's and
timm's, and a file already there is used as is. ``$ISNET_PRETRAINED_URL`` (a template with ``{name}``, e.g.
``resnet50_v1c``, and ``{file}``, e.g. ``resnet50_v1c-2cccc1ad.pth``) points the downloads at a mirror.
"""

from __future__ import annotations

import os
import re
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch
from torch import nn

from isnet.errors import CheckpointError
from isnet.utils.io import safe_torch_load
from isnet.utils.state_dict import mismatch_report, plain_state_dict

__all__ = [
    "OPENMMLAB_URLS",
    "PRETRAINED_URL_ENV",
    "REFERENCE_INIT",
    "DownloadError",
    "PretrainedError",
    "PretrainedSpec",
    "download_cached",
    "load_pretrained",
    "load_weights_file",
    "openmmlab_to_timm",
    "resolve_pretrained",
]

#: The reference's ImageNet checkpoints (sssegmentation ``DEFAULT_MODEL_URLS``), by open-mmlab file name.
OPENMMLAB_URLS: dict[str, str] = {
    "resnet50_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "resnet101_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
    "resnest101": "https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth",
}

#: timm architecture of a reference backbone -> the open-mmlab checkpoint the reference starts it from.
REFERENCE_INIT: dict[str, str] = {
    "resnet50c": "resnet50_v1c",
    "resnet101c": "resnet101_v1c",
    "resnest101e": "resnest101",
}

#: Environment variable with a URL template (``{name}``, ``{file}``) replacing ``OPENMMLAB_URLS``.
PRETRAINED_URL_ENV = "ISNET_PRETRAINED_URL"

#: ``pretrained`` strings that mean "the reference's own initialisation for this backbone".
_REFERENCE_WORDS = ("openmmlab", "reference")
_URL_SCHEMES = ("http://", "https://", "file://")
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors")
# torch.hub's convention: "<name>-<first hex digits of the sha256>.<ext>"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")

#: (open-mmlab regex, timm replacement); each backbone key matches exactly one rule.
_OPENMMLAB_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^stem\.([01346])\.(.+)$"), r"conv1.\1.\2"),
    (re.compile(r"^stem\.7\.(.+)$"), r"bn1.\1"),
    (re.compile(r"^(layer[1-4]\..+)$"), r"\1"),
]
_DROPPED = re.compile(r"^fc\.")


class PretrainedError(CheckpointError):
    """Pretrained weights that cannot be used; the message names the source and what is wrong."""


class DownloadError(RuntimeError):
    """A download failed; the message gives the URL and where to put the file by hand."""


@dataclass(frozen=True)
class PretrainedSpec:
    """What ``pretrained`` asks for: the ``timm.create_model`` name (a tag for timm's weights), whether timm
    loads its own weights, URLs to try in order or a local file to load afterwards, and a description."""

    timm_name: str
    timm_weights: bool = False
    urls: tuple[str, ...] = ()
    file: Path | None = None
    description: str = ""

    @property
    def needs_loading(self) -> bool:
        return bool(self.urls) or self.file is not None


def download_cached(
    urls: str | Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    file_name: str | None = None,
) -> Path:
    """Return the cached copy of a file, downloading it first if it is not cached yet.

    torch.hub renames a complete download into place (checked against a sha256 prefix in the file name, as in
    ``resnet50_v1c-2cccc1ad.pth``), so an interrupted download never leaves a broken cached file.

    Args:
        urls: one URL or several to try in order (mirrors, older release names).
        cache_dir: folder for the file; default torch's hub cache ``torch.hub.get_dir()/checkpoints``.
        progress: show a progress bar on stderr.
        file_name: name of the cached file; default the last part of the first URL.

    Raises:
        DownloadError: every URL failed; the message lists the reasons and where to put a file by hand.
    """
    candidates = [urls] if isinstance(urls, str) else list(urls)
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / (file_name or Path(unquote(urlparse(candidates[0]).path)).name)
    if path.is_file():
        return path
    hash_match = _HASH_IN_NAME.search(path.name)
    failures = []
    for url in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                url, str(path), hash_prefix=hash_match[1] if hash_match else None, progress=progress
            )
            return path
        except urllib.error.HTTPError as err:
            failures.append(f"{url}: HTTP {err.code} {err.reason}")
        except (urllib.error.URLError, OSError, RuntimeError, ValueError) as err:
            # URLError: no network / DNS; RuntimeError: sha256 mismatch; ValueError: malformed URL
            reason = getattr(err, "reason", None) or err
            failures.append(f"{url}: {reason}")
    tried = "\n  ".join(failures)
    raise DownloadError(
        f"could not download {path.name}:\n  {tried}\n"
        f"Download it by hand (e.g. `curl -L -o {path} {candidates[0]}`, or with a browser) and save it as\n"
        f"  {path}\n"
        "It is then used without downloading. (Set $TORCH_HOME or pass cache_dir to use another folder.)"
    )


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (bare, or under ``'state_dict'``/``'model'``; ``module.`` prefix removed) with
    ``weights_only=True``; PretrainedError if the file is missing, unreadable, unsafe or holds no tensors."""
    try:
        data = safe_torch_load(path)
    except CheckpointError as err:
        raise PretrainedError(
            f"pretrained weights: {err} (a truncated download: delete it and retry)"
        ) from err
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data:
        raise PretrainedError(f"{path}: expected a state dict (optionally under 'state_dict' or 'model')")
    return plain_state_dict(data, str(path), PretrainedError)


def openmmlab_to_timm(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Rename an open-mmlab ResNet/ResNeSt state dict onto a timm backbone's keys, strictly.

    A state dict already in timm's layout (no ``stem.*`` keys) keeps its keys; the classifier ``fc.*`` is dropped.

    Args:
        state: open-mmlab keys (``stem.*``, ``layerN.*``, ``fc.*``) or timm keys.
        target: the timm backbone's ``state_dict()`` (keys and shapes to match).
        source: name of the file, for error messages.

    Returns:
        A state dict with exactly ``target``'s keys.

    Raises:
        PretrainedError: listing unmapped, missing, unexpected and mis-shaped keys.
    """
    openmmlab = any(k.startswith("stem.") for k in state)
    converted: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if _DROPPED.match(key):
            continue
        hits = (
            [rule.sub(repl, key) for rule, repl in _OPENMMLAB_RULES if rule.match(key)]
            if openmmlab
            else [key]
        )
        if len(hits) == 1:
            converted[hits[0]] = value
        else:
            unmapped.append(key)
    # BatchNorm's step counters are not weights: files without them (older exports) keep the model's own
    for key in target:
        if key.endswith("num_batches_tracked") and key not in converted:
            converted[key] = target[key]
    report = mismatch_report(
        converted, unmapped, target, source_label="file", target_label="backbone", limit=10
    )
    if report:
        raise PretrainedError(f"{source} does not match the backbone:\n{report}")
    return converted


def resolve_pretrained(
    backbone: str, arch: str, pretrained: bool | str | os.PathLike | None, default_tag: str | None = None
) -> PretrainedSpec:
    """Decide what ``pretrained`` means for a backbone, without any I/O.

    Args:
        backbone: the name the user gave (``resnet50_d8``), for messages.
        arch: its timm architecture (``resnet50c``).
        pretrained: ``False``/``None`` (random init); ``True`` (timm's ImageNet weights under ``default_tag``,
            or timm's default tag of ``arch``); ``"openmmlab"`` (the reference's own checkpoint for a
            reference backbone); an open-mmlab name (``resnet50_v1c``, ``resnet101_v1c``, ``resnest101``); a timm
            tag (``resnet50c.gluon_in1k``); an ``http(s)://`` or ``file://`` URL; or a local file. Files and URLs
            may be in timm's or open-mmlab's layout (detected from the keys).
        default_tag: the timm tag ``True`` stands for.

    Raises:
        ValueError: an open-mmlab checkpoint that is not this backbone's, a timm tag of another architecture, a
            missing file, or a value of another type; the message lists the accepted values.
    """
    accepted = (
        "False, True (timm's ImageNet weights), 'openmmlab' (the reference's ImageNet checkpoint; reference "
        f"backbones only), one of {sorted(OPENMMLAB_URLS)}, a timm tag such as 'resnet50c.gluon_in1k', an "
        "http(s):// URL or a local file"
    )
    if pretrained is None or pretrained is False or pretrained == "":
        return PretrainedSpec(timm_name=arch, description="random initialisation")
    if pretrained is True:
        tag = default_tag or arch
        return PretrainedSpec(timm_name=tag, timm_weights=True, description=f"timm {tag}")
    if not isinstance(pretrained, str | os.PathLike):
        raise ValueError(f"pretrained must be one of {accepted}; got {pretrained!r}")
    value = os.fspath(pretrained)
    if value.lower() in _REFERENCE_WORDS or value in OPENMMLAB_URLS:
        expected = REFERENCE_INIT.get(arch)
        name = expected if value.lower() in _REFERENCE_WORDS else value
        if expected is None or name != expected:
            owners = {v: k for k, v in REFERENCE_INIT.items()}
            hint = f" ({name} is the initialisation of the timm architecture {owners[name]})" if name else ""
            raise ValueError(
                f"pretrained={value!r} is not available for backbone {backbone!r} (timm {arch}){hint}: the "
                f"reference's open-mmlab checkpoints exist for {', '.join(f'{a}: {n}' for a, n in REFERENCE_INIT.items())}. "
                f"Accepted values: {accepted}"
            )
        url = OPENMMLAB_URLS[name]
        if os.environ.get(PRETRAINED_URL_ENV):  # a mirror
            url = os.environ[PRETRAINED_URL_ENV].format(name=name, file=url.rsplit("/", 1)[-1])
        return PretrainedSpec(timm_name=arch, urls=(url,), description=f"open-mmlab {name} ({url})")
    if value.startswith(_URL_SCHEMES):
        return PretrainedSpec(timm_name=arch, urls=(value,), description=value)
    if Path(value).is_file():
        return PretrainedSpec(timm_name=arch, file=Path(value), description=value)
    if "." in value and not value.lower().endswith(_FILE_SUFFIXES) and "/" not in value and "\\" not in value:
        if value.split(".")[0] != arch:
            raise ValueError(f"pretrained tag {value!r} does not belong to backbone {backbone!r} ({arch})")
        return PretrainedSpec(timm_name=value, timm_weights=True, description=f"timm {value}")
    raise ValueError(
        f"pretrained={value!r} for backbone {backbone!r}: no such file. Accepted values: {accepted}"
    )


def load_pretrained(
    model: nn.Module, spec: PretrainedSpec, cache_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path | None:
    """Download (if needed) and load the file ``spec`` names into ``model`` strictly; returns that file, or
    ``None`` when ``spec`` needs none. Raises DownloadError or PretrainedError (listing the keys)."""
    if not spec.needs_loading:
        return None
    path = spec.file if spec.file is not None else download_cached(spec.urls, cache_dir, progress)
    state = openmmlab_to_timm(load_weights_file(path), model.state_dict(), str(path))
    model.load_state_dict(state, strict=True)
    return path
