"""Model-zoo access: names, URLs, download through the hub cache (local HTTP server), failures, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import isnet.meta.recipes
from isnet.hub import (
    DownloadError,
    create_model,
    download_checkpoint,
    from_pretrained,
    list_models,
    list_pretrained,
    resolve_checkpoint,
    resolve_entry,
    zoo_urls,
)
from isnet.meta import RECIPES as ZOO
from isnet.meta import dataset_info
from tests.helpers import reference_state_dict
from tests.unit.conftest import FileServer


@pytest.mark.parametrize("experiment", sorted(ZOO))
def test_every_zoo_name_resolves_both_spellings(experiment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISNET_ZOO_URL", raising=False)
    entry = ZOO[experiment]
    for name in (
        experiment,
        entry.release_name,
        f"{entry.release_name}.pth",
        f"{entry.release_name}_train.pth",
    ):
        assert resolve_entry(name) is entry
    base = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_isnet"
    assert zoo_urls(experiment) == [
        f"{base}/{entry.release_name}.pth",
        f"{base}/{entry.release_name}_train.pth",
    ]


def test_list_and_unknown_name() -> None:
    assert list_pretrained() == sorted(ZOO) and len(list_pretrained()) == 12
    with pytest.raises(
        ValueError, match=r"unknown model-zoo name 'isnet_r18_d8_ade20k'.*isnet_r50_d8_ade20k"
    ):
        resolve_entry("isnet_r18_d8_ade20k")


def test_url_template_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISNET_ZOO_URL", "http://mirror.invalid/zoo/{name}/{file}")
    assert zoo_urls("isnet_s101_d8_lip") == [
        "http://mirror.invalid/zoo/isnet_resnest101os8_lip/isnet_resnest101os8_lip.pth"
    ]


def test_from_pretrained_downloads_once_and_loads_strictly(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = reference_state_dict("resnet50_d8", seed=3)
    release = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "cur_epoch": 130}
    torch.save(release, server.root / "isnet_resnet50os8_ade20k.pth")  # type: ignore[attr-defined]
    monkeypatch.setenv("ISNET_ZOO_URL", server.url + "/{file}")

    model = from_pretrained("isnet_r50_d8_ade20k", progress=False)

    cached = hub_dir / "checkpoints" / "isnet_resnet50os8_ade20k.pth"
    assert cached.is_file() and server.requests == ["/isnet_resnet50os8_ade20k.pth"]
    assert not model.training and model.num_classes == 150 and model.backbone_name == "resnet50_d8"
    assert model.meta == {"recipe": "isnet_r50_d8_ade20k"}
    ours = model.state_dict()
    for ref_key, our_key in [
        ("backbone_net.stem.7.running_var", "backbone.bn1.running_var"),
        ("backbone_net.layer4.2.conv3.weight", "backbone.layer4.2.conv3.weight"),
        (
            "ilc_net.correlate_net.query_project.0.0.weight",
            "head.ilc_net.correlate_net.query_project.0.0.weight",
        ),
        ("decoder_stage2.1.bias", "head.decoder_stage2.1.bias"),
        ("auxiliary_decoder.4.weight", "auxiliary_decoder.4.weight"),
    ]:
        assert torch.equal(ours[our_key], state[ref_key]), ref_key

    ade20k = dataset_info("ade20k")
    assert model.class_names == list(ade20k.class_names) and model.class_names[0] == "wall"
    assert model.palette == list(ade20k.palette) and len(model.palette) == 150

    # create_model(pretrained=True) is the same model, from the cache
    same = create_model("isnet_r50_d8_ade20k", pretrained=True, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), ours.values(), strict=True))

    # a second request, by the released name, is answered from the cache without contacting the server
    assert download_checkpoint("isnet_resnet50os8_ade20k", progress=False) == cached
    assert server.requests == ["/isnet_resnet50os8_ade20k.pth"]


def test_failed_download_says_where_to_put_the_file(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISNET_ZOO_URL", server.url + "/{file}")
    url = f"{server.url}/isnet_resnet101os8_cityscapes.pth"
    target = hub_dir / "checkpoints" / "isnet_resnet101os8_cityscapes.pth"
    with pytest.raises(DownloadError) as info:
        from_pretrained("isnet_r101_d8_cityscapes", progress=False)
    message = str(info.value)
    assert f"{url}: HTTP 404" in message
    assert f"curl -L -o {target} {url}" in message
    assert f"save it as\n  {target}\n" in message
    assert not target.exists()
    assert list((hub_dir / "checkpoints").iterdir()) == []  # no partial file left behind


def test_release_url_falls_back_to_older_train_name(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ISNET_ZOO_URL", raising=False)
    monkeypatch.setattr(isnet.meta.recipes, "RELEASE_URL", server.url + "/{name}.pth")
    (server.root / "isnet_resnet50os8_lip_train.pth").write_bytes(b"released bytes")  # type: ignore[attr-defined]
    path = download_checkpoint("isnet_r50_d8_lip", cache_dir=tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "isnet_resnet50os8_lip.pth"
    assert path.read_bytes() == b"released bytes"
    assert server.requests == ["/isnet_resnet50os8_lip.pth", "/isnet_resnet50os8_lip_train.pth"]


def test_resolve_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "mine.pth"
    local.write_bytes(b"x")
    assert resolve_checkpoint(local) == local
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "isnet_resnest101os8_ade20k.pth").write_bytes(b"cached")  # downloaded by hand: used as is
    monkeypatch.setenv("ISNET_ZOO_URL", "http://127.0.0.1:9/{file}")  # would fail if it were contacted
    assert (
        resolve_checkpoint("isnet_s101_d8_ade20k", cache_dir=cache)
        == cache / "isnet_resnest101os8_ade20k.pth"
    )
    with pytest.raises(FileNotFoundError, match="'nope.pth' is neither a file nor a model-zoo name"):
        resolve_checkpoint("nope.pth")


@pytest.mark.parametrize(
    ("dataset", "first", "last"),
    [("ade20k", "wall", "flag"), ("cityscapes", "road", "bicycle"), ("cocostuff10k", "person", "wood"),
     ("lip", "background", "rightShoe")],
)  # fmt: skip
def test_dataset_facts_match_zoo_class_counts(dataset: str, first: str, last: str) -> None:
    info = dataset_info(dataset)
    names, palette = info.class_names, info.palette
    expected = {e.num_classes for e in ZOO.values() if e.dataset == dataset}
    assert expected == {len(names)} and len(palette) == len(names)
    assert (names[0], names[-1]) == (first, last)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette)


def test_list_models_and_create_model() -> None:
    assert list_models() == list_pretrained()
    assert list_models("*_lip") == ["isnet_r101_d8_lip", "isnet_r50_d8_lip", "isnet_s101_d8_lip"]
    model = create_model("isnet_r50_d8_lip")  # random init, the recipe's architecture and classes
    lip = dataset_info("lip")
    assert (model.backbone_name, model.num_classes, model.training) == ("resnet50_d8", 20, True)
    assert model.class_names == list(lip.class_names) and model.palette == list(lip.palette)
    assert model.meta == {"recipe": "isnet_r50_d8_lip"}
    assert model.config["shortcut"] is True and model.config["act"] == "leaky_relu"
    assert create_model("isnet_resnet50os8_lip").config == model.config  # the released file name works too
    tuned = create_model(
        "isnet_r50_d8_ade20k", num_classes=3, aux=False
    )  # fine-tuning: the dataset's names go
    assert tuned.num_classes == 3 and tuned.class_names == ["class_0", "class_1", "class_2"]
    assert tuned.auxiliary_decoder is None
    small = create_model("resnet18d", num_classes=4)  # not a recipe: a backbone name
    assert (small.backbone_name, small.num_classes) == ("resnet18d", 4)
    with pytest.raises(ValueError, match="isnet_r18_d8_ade20k"):
        create_model("isnet_r18_d8_ade20k", pretrained=True, num_classes=4)
