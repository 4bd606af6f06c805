"""Backbone ImageNet initialisation: the reference's open-mmlab checkpoints (hub cache, strict key mapping),
timm-layout files, hash checks, failures and the choice of ``pretrained`` values."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from isnet.models import ISNet, build_backbone
from isnet.models.pretrained import (
    OPENMMLAB_URLS,
    DownloadError,
    PretrainedError,
    resolve_pretrained,
)
from tests.helpers import reference_state_dict
from tests.unit.conftest import FileServer


def openmmlab_state(backbone: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint in open-mmlab's layout: the reference backbone keys without ``backbone_net.``, plus ``fc``."""
    ref = reference_state_dict(backbone, seed=seed)
    state = {k[len("backbone_net.") :]: v for k, v in ref.items() if k.startswith("backbone_net.")}
    gen = torch.Generator().manual_seed(seed + 100)
    state["fc.weight"] = torch.randn(1000, 2048, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    return state


def timm_key(openmmlab_key: str) -> str:
    """Where an open-mmlab key lands in timm: the deep stem's slots 0-6 are ``conv1``, slot 7 is ``bn1``."""
    if openmmlab_key.startswith("stem.7."):
        return "bn1." + openmmlab_key[len("stem.7.") :]
    if openmmlab_key.startswith("stem."):
        return "conv1." + openmmlab_key[len("stem.") :]
    return openmmlab_key


def assert_loaded(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    ours = backbone.state_dict()
    expected = {timm_key(k): v for k, v in state.items() if not k.startswith("fc.")}
    assert set(ours) == set(expected) | {k for k in ours if k.endswith("num_batches_tracked")}
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key


def test_openmmlab_init_downloads_into_hub_cache_and_maps_every_key(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = openmmlab_state("resnet50_d8", seed=1)
    torch.save({"state_dict": state, "meta": {"epoch": 100}}, server.root / "resnet50_v1c.pth")  # type: ignore[attr-defined]
    monkeypatch.setenv("ISNET_PRETRAINED_URL", server.url + "/{name}.pth")

    model = ISNet("resnet50_d8", num_classes=19, pretrained="openmmlab")

    assert (hub_dir / "checkpoints" / "resnet50_v1c.pth").is_file()
    assert server.requests == ["/resnet50_v1c.pth"]
    assert_loaded(model.backbone, state)
    assert torch.equal(model.backbone.conv1[6].weight, state["stem.6.weight"])
    assert torch.equal(model.backbone.bn1.running_mean, state["stem.7.running_mean"])
    # the open-mmlab name is accepted too, and the cached file is reused without a request
    again = build_backbone("resnet50_d8", pretrained="resnet50_v1c")
    assert server.requests == ["/resnet50_v1c.pth"]
    assert torch.equal(again.layer3[5].conv2.weight, state["layer3.5.conv2.weight"])


def test_resnest_from_local_file_without_batch_counters(tmp_path: Path) -> None:
    state = openmmlab_state("resnest101_d8", seed=2)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert any(".conv2.fc1." in k for k in state)  # split-attention keys keep their names in timm
    path = tmp_path / "resnest101_d2-local.pth"
    torch.save({"state_dict": state}, path)
    backbone = build_backbone("resnest101_d8", pretrained=str(path))
    assert_loaded(backbone, state)
    assert int(backbone.bn1.num_batches_tracked) == 0  # counters absent from the file keep the model's value


def test_official_file_names_are_hash_checked(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a mirror that keeps the official name "resnet50_v1c-2cccc1ad.pth" is checked against that sha256 prefix
    torch.save({"state_dict": openmmlab_state("resnet50_d8")}, server.root / "resnet50_v1c-2cccc1ad.pth")  # type: ignore[attr-defined]
    monkeypatch.setenv("ISNET_PRETRAINED_URL", server.url + "/{file}")
    with pytest.raises(DownloadError, match='invalid hash value \\(expected "2cccc1ad"'):
        build_backbone("resnet50_d8", pretrained="openmmlab")
    assert not (hub_dir / "checkpoints" / "resnet50_v1c-2cccc1ad.pth").exists()


def test_failed_download_names_url_and_cache_path(
    server: FileServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISNET_PRETRAINED_URL", server.url + "/{file}")
    target = hub_dir / "checkpoints" / "resnest101_d2-f3b931b2.pth"
    url = f"{server.url}/resnest101_d2-f3b931b2.pth"
    with pytest.raises(DownloadError) as info:
        build_backbone("resnest101_d8", pretrained="openmmlab")
    assert f"{url}: HTTP 404" in str(info.value)
    assert f"save it as\n  {target}\n" in str(info.value)


def test_mismatched_file_lists_the_keys(tmp_path: Path) -> None:
    state = openmmlab_state("resnet50_d8")
    del state["layer2.1.bn2.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    state["layer1.0.conv3.weight"] = torch.zeros(7, 64, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(PretrainedError) as info:
        build_backbone("resnet50_d8", pretrained=str(path))
    message = str(info.value)
    assert f"{path} does not match the backbone" in message
    assert "unmapped (1):\n    layer5.0.conv1.weight" in message
    assert "missing (1):\n    layer2.1.bn2.weight" in message
    assert (
        "shape mismatch (1):\n    layer1.0.conv3.weight: file (7, 64, 1, 1) vs backbone (256, 64, 1, 1)"
        in message
    )


def test_timm_layout_file_loads_strictly(tmp_path: Path) -> None:
    source = build_backbone("resnet18d")
    gen = torch.Generator().manual_seed(5)
    state = {
        k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v)
        for k, v in source.state_dict().items()
    }
    path = tmp_path / "timm.pth"
    torch.save(
        {"state_dict": {**state, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}}, path
    )
    loaded = build_backbone("resnet18d", pretrained=path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    del state["layer4.1.bn2.bias"]
    torch.save(state, path)
    with pytest.raises(PretrainedError, match=r"missing \(1\):\n    layer4.1.bn2.bias"):
        build_backbone("resnet18d", pretrained=path)


def test_unsafe_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(PretrainedError, match="refusing to load .*pickled.pth"):
        build_backbone("resnet18d", pretrained=path)


@pytest.mark.parametrize(
    ("backbone", "pretrained", "message"),
    [
        ("resnet18d", "openmmlab", r"pretrained='openmmlab' is not available for backbone 'resnet18d'"),
        (
            "resnet50_d8",
            "resnet101_v1c",
            r"resnet101_v1c is the initialisation of the timm architecture resnet101c",
        ),
        ("resnet50_d8", "resnest101e.in1k", r"pretrained tag 'resnest101e.in1k' does not belong to backbone"),
        ("resnet50_d8", "missing/weights.pth", r"pretrained='missing/weights.pth' .*no such file"),
        ("resnet50_d8", 3, r"pretrained must be one of"),
    ],
)
def test_bad_pretrained_values(backbone: str, pretrained: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_backbone(backbone, pretrained=pretrained)  # type: ignore[arg-type]


def test_resolve_pretrained_without_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISNET_PRETRAINED_URL", raising=False)
    spec = resolve_pretrained("resnet50_d8", "resnet50c", True, default_tag="resnet50c.gluon_in1k")
    assert (spec.timm_name, spec.timm_weights, spec.needs_loading) == ("resnet50c.gluon_in1k", True, False)
    spec = resolve_pretrained("resnest101_d8", "resnest101e", "openmmlab")
    assert spec.urls == (OPENMMLAB_URLS["resnest101"],) and not spec.timm_weights
    assert spec.urls[0] == "https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth"
    spec = resolve_pretrained("resnet18d", "resnet18d", "resnet18d.ra2_in1k")
    assert (spec.timm_name, spec.timm_weights) == ("resnet18d.ra2_in1k", True)
    spec = resolve_pretrained("resnet18d", "resnet18d", "https://example.invalid/w.pth")
    assert spec.urls == ("https://example.invalid/w.pth",)
    assert not resolve_pretrained("resnet18d", "resnet18d", False).needs_loading
