"""Model-zoo access: names, URLs, download through the hub cache (local HTTP server), failures, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import isnet.zoo
from isnet.hub import (
    DownloadError,
    dataset_metadata,
    download_checkpoint,
    from_pretrained,
    list_pretrained,
    resolve_checkpoint,
    resolve_entry,
    zoo_urls,
)
from isnet.zoo import ZOO
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
    assert model.zoo_entry is ZOO["isnet_r50_d8_ade20k"]
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

    from isnet.data.datasets.ade20k import ADE20K_CLASSES, ADE20K_PALETTE

    assert model.class_names == list(ADE20K_CLASSES) and model.class_names[0] == "wall"
    assert model.palette == [tuple(c) for c in ADE20K_PALETTE] and len(model.palette) == 150

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
    monkeypatch.setattr(isnet.zoo, "RELEASE_URL", server.url + "/{name}.pth")
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
def test_dataset_metadata_matches_zoo_class_counts(dataset: str, first: str, last: str) -> None:
    names, palette = dataset_metadata(dataset)
    expected = {e.num_classes for e in ZOO.values() if e.dataset == dataset}
    assert expected == {len(names)} and len(palette) == len(names)
    assert (names[0], names[-1]) == (first, last)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette)
