"""ISNet in the Hugging Face Hub format: a folder (or a Hub repository) holding three files.

* ``model.safetensors``: the weights (read with ``safetensors``: no pickle, nothing in the file runs);
* ``config.json``: ``{"format": "isnet", "version": 1, "model": ISNet.config, "preprocessing": ...,
  "test_settings": ...}``: the architecture, class names, palette and ``meta`` (``ISNet.from_config`` rebuilds
  the network), the input normalisation and, for a model-zoo recipe, its test resize and its two
  :class:`~isnet.meta.InferenceConfig` (single scale, multi-scale + flip);
* ``README.md``: a model card generated from the same facts (published mIoU and evaluation command of a zoo
  recipe, parity tolerance, license, citation).

:func:`save_pretrained` writes a folder, :func:`load_pretrained` reads a folder or a Hub repository id
(``user/repo``, downloaded into the Hugging Face cache; ``HF_HUB_OFFLINE=1`` uses the cache only),
:func:`push_to_hub` uploads. ``isnet.from_pretrained`` accepts all three kinds of names (zoo, folder, repo id).
Only downloading and uploading import ``huggingface_hub``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from isnet.errors import CheckpointError, ConfigError
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255, Recipe, dataset_info, recipe
from isnet.meta.recipes import CITATION, LICENSE, PARITY_ATOL
from isnet.models import ISNet
from isnet.models.pretrained import DownloadError
from isnet.utils.io import atomic_path, atomic_write
from isnet.utils.state_dict import mismatch_report

__all__ = [
    "CONFIG_NAME",
    "MODEL_CARD_NAME",
    "WEIGHTS_NAME",
    "download",
    "hub_config",
    "is_hub_folder",
    "is_repo_id",
    "load_pretrained",
    "model_card",
    "push_to_hub",
    "save_pretrained",
    "zoo_recipe",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
FORMAT_VERSION = 1
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".json")


def is_hub_folder(path: str | os.PathLike) -> bool:
    """``path`` is a folder holding ``config.json`` (a folder written by :func:`save_pretrained`)."""
    return (Path(path) / CONFIG_NAME).is_file()


def is_repo_id(name: str) -> bool:
    """``name`` reads as a Hub repository id ``user/repo`` and not as a checkpoint file (``.pth``, ``.ckpt`` ...)."""
    return bool(_REPO_ID.match(name)) and not name.endswith(_FILE_SUFFIXES)


def zoo_recipe(model: ISNet) -> Recipe | None:
    """The model-zoo recipe of ``model``: ``meta["recipe"]`` when the network is that recipe's (backbone, classes,
    LIP variant); ``None`` otherwise (e.g. a recipe's network fine-tuned on other classes)."""
    try:
        entry = recipe(str(model.meta.get("recipe", "")))
    except KeyError:
        return None
    mine = {k: model.config[k] for k in ("backbone", "num_classes", "shortcut", "class_names")}
    theirs = {k: entry.model_kwargs()[k] for k in mine}
    return entry if mine == theirs else None


def hub_config(model: ISNet) -> dict[str, Any]:
    """The content of ``config.json`` for ``model`` (plain JSON values)."""
    preprocessing: dict[str, Any] = {
        "input": "RGB, 0-255, normalised as (image - mean) / std",
        "mean": list(IMAGENET_MEAN_255),
        "std": list(IMAGENET_STD_255),
    }
    test_settings = None
    if (entry := zoo_recipe(model)) is not None:
        preprocessing["test_resize"] = dataset_info(entry.dataset).test_pipeline
        test_settings = {"single_scale": asdict(entry.single_scale), "ms_flip": asdict(entry.ms_flip)}
    config = {"format": "isnet", "version": FORMAT_VERSION, "model": model.config,
              "preprocessing": preprocessing, "test_settings": test_settings}  # fmt: skip
    try:  # tuples become lists; anything else that JSON cannot hold is refused, not turned into a string
        return json.loads(json.dumps(config))
    except TypeError as err:
        raise ConfigError(
            f"model.meta must hold plain JSON values to be saved in {CONFIG_NAME}: {err}"
        ) from None


def model_card(model: ISNet, repo_id: str | None = None) -> str:
    """The model card (``README.md``) of ``model``; ``repo_id`` names it in the usage lines (default: the folder
    placeholder ``<folder or user/repo>``)."""
    name = repo_id or "<folder or user/repo>"
    arch = model.config
    entry = zoo_recipe(model)
    front = ["---", "library_name: isnet", f"license: {LICENSE}", "pipeline_tag: image-segmentation",
             "tags:", "- semantic-segmentation", "- isnet"]  # fmt: skip
    if entry is not None:
        info = dataset_info(entry.dataset)
        front += ["model-index:", f"- name: {entry.experiment}", "  results:",
                  "  - task: {type: image-segmentation}",
                  f"    dataset: {{name: {info.title}, type: {entry.dataset}, split: {info.eval_split}}}",
                  "    metrics:", f"    - {{type: mean_iou, value: {entry.miou}, name: mIoU (single scale)}}",
                  f"    - {{type: mean_iou, value: {entry.miou_ms_flip}, name: mIoU (multi-scale + flip)}}"]  # fmt: skip
    lines = [*front, "---", "", f"# ISNet {arch['backbone']}, {arch['num_classes']} classes", ""]
    lines += ["ISNet (Jin et al., ICCV 2021: image-level and semantic-level context for semantic segmentation) in the "
              "`isnet` package. Weights in `model.safetensors`; architecture, class names, palette, normalisation "
              "and test settings in `config.json`.", "",
              "```python", "import isnet", "", f'model = isnet.from_pretrained("{name}")  # eval mode',
              "logits = model(images)  # (N, 3, H, W) normalised with config.json's mean/std -> (N, K, H, W)",
              "```", ""]  # fmt: skip
    lines += ["## Model", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | `{json.dumps(v)}` |" for k, v in model.architecture.items()]
    lines += [
        f"| classes | {', '.join(model.class_names[:20])}{' ...' if model.num_classes > 20 else ''} |",
        "",
    ]
    if entry is not None:
        info = dataset_info(entry.dataset)
        origin = model.meta.get("converted_from")
        lines += ["## Evaluation", "",
                  f"Recipe `{entry.experiment}`: {info.title} ({info.eval_split} split), crop "
                  f"{'x'.join(map(str, entry.crop_size))}, global batch {entry.batch_size}, {entry.epochs} epochs. "
                  f"mIoU published with the released checkpoint `{entry.release_name}.pth`: "
                  f"**{entry.miou:.2f}** single scale, **{entry.miou_ms_flip:.2f}** multi-scale + flip"
                  f"{' (flip only)' if entry.lip_variant else ''}, measured by the authors of the reference "
                  "(sssegmentation).", ""]  # fmt: skip
        if origin:
            lines += [f"These weights are that checkpoint (`{origin}`), converted tensor for tensor. On the plain "
                      f"fp32 path the network's logits agree with the reference's within {PARITY_ATOL:g} "
                      "(max abs; docs/parity.md of the package).", ""]  # fmt: skip
        lines += ["Evaluate (the dataset prepared as in docs/datasets.md; `data.root=` points elsewhere):", "",
                  "```bash", f"python scripts/eval.py experiment={entry.experiment} ckpt={name}",
                  f"python scripts/eval.py experiment={entry.experiment} ckpt={name} ms_flip=true", "```", ""]  # fmt: skip
    lines += ["## License and citation", "", f"License: {LICENSE} (as the reference implementation).", "",
              "```bibtex", CITATION.strip(), "```", ""]  # fmt: skip
    return "\n".join(lines)


def save_pretrained(
    model: ISNet, save_directory: str | os.PathLike, overwrite: bool = False, repo_id: str | None = None
) -> Path:
    """Write ``model`` as ``model.safetensors``, ``config.json`` and ``README.md`` into ``save_directory``.

    Each file is written atomically. An existing folder that holds any of the three is refused unless
    ``overwrite`` (other files in it are kept). ``repo_id`` names the model in the card's usage lines.
    Returns the folder.

    Raises:
        FileExistsError: a file would be replaced and ``overwrite`` is False.
        ConfigError: ``model.meta`` holds values JSON cannot store.
    """
    folder = Path(save_directory)
    taken = [n for n in (WEIGHTS_NAME, CONFIG_NAME, MODEL_CARD_NAME) if (folder / n).exists()]
    if taken and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(taken)}; pass overwrite=True (CLI: --force)"
        )
    config = hub_config(model)  # checked before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    atomic_write(folder / MODEL_CARD_NAME, model_card(model, repo_id))
    return folder


def download(
    repo_id: str,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> Path:
    """The local snapshot of a Hub repository (the three files only; the Hugging Face cache, ``cache_dir`` if
    given; ``HF_HUB_OFFLINE=1``: the cache only).

    Raises:
        DownloadError: the repository or a file cannot be had (the message gives the reason).
    """
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, token=token,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME],
        )  # fmt: skip
    except Exception as err:  # huggingface_hub raises many types (HTTP, offline, not found)
        raise DownloadError(
            f"cannot get {repo_id!r} from the Hugging Face Hub: {type(err).__name__}: {err}"
        ) from err
    return Path(path)


def load_pretrained(
    name: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> ISNet:
    """An ISNet from a folder written by :func:`save_pretrained` or a Hub repository id, in eval mode.

    The weights are read with ``safetensors`` (never ``torch.load``) and loaded strictly.

    Raises:
        CheckpointError: a file is missing or unreadable, or ``config.json`` does not describe the tensors of
            ``model.safetensors`` (the message names the folder and lists the mismatching keys).
        DownloadError: a repository id that cannot be downloaded.
        ValueError: ``name`` is neither a folder nor a repository id.
    """
    folder = Path(name)
    if not folder.is_dir():
        if not is_repo_id(str(name)):
            raise ValueError(
                f"{str(name)!r} is neither a folder nor a Hugging Face Hub repository id (user/repo)"
            )
        folder = download(str(name), cache_dir, revision, token)
    for file in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / file).is_file():
            raise CheckpointError(f"{folder}: no {file}; not a folder written by isnet's save_pretrained")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        state = load_file(str(folder / WEIGHTS_NAME), device="cpu")
    except (OSError, ValueError, SafetensorError) as err:
        raise CheckpointError(f"{folder}: unreadable {CONFIG_NAME} or {WEIGHTS_NAME}: {err}") from err
    if (
        not isinstance(config, dict)
        or config.get("format") != "isnet"
        or not isinstance(config.get("model"), dict)
    ):
        raise CheckpointError(
            f"{folder / CONFIG_NAME}: not an isnet config (no 'format': 'isnet' and 'model')"
        )
    try:
        model = ISNet.from_config(config["model"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{folder / CONFIG_NAME}: invalid model config: {err}") from err
    report = mismatch_report(
        state, [], model.state_dict(), source_label=WEIGHTS_NAME, target_label=CONFIG_NAME
    )
    if report:
        described = ", ".join(
            f"{k}={config['model'].get(k)!r}" for k in ("backbone", "num_classes", "shortcut")
        )
        raise CheckpointError(
            f"{folder}: {WEIGHTS_NAME} does not match {CONFIG_NAME} ({described}):\n{report}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def push_to_hub(
    model: ISNet | str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload ISNet",
    revision: str | None = None,
) -> str:
    """Upload ``model`` (an ISNet, written by :func:`save_pretrained` into a temporary folder, or a folder
    written before) to the Hub repository ``repo_id``, creating it if needed. Returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, ISNet):
            folder = save_pretrained(model, tmp, repo_id=repo_id)
        elif is_hub_folder(model):
            folder = Path(model)
        else:
            raise CheckpointError(
                f"{model}: not a folder written by isnet's save_pretrained (no {CONFIG_NAME})"
            )
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision,
            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME],
        )  # fmt: skip
    return str(getattr(commit, "commit_url", commit))
