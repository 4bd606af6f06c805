"""The Hugging Face Hub format (isnet.hf): folder round trip, offline loading without pickle, clear mismatch errors,
the model card, the converter's --hub-dir, and push_to_hub without the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import isnet
from isnet import hf
from isnet.cli.convert import main as convert_main
from isnet.errors import CheckpointError
from isnet.meta import IMAGENET_MEAN_255, recipe
from isnet.meta.recipes import CITATION
from tests.helpers import reference_state_dict

ROOT = Path(__file__).resolve().parents[2]


def tiny(num_classes: int = 4, **kwargs) -> isnet.ISNet:
    torch.manual_seed(0)
    model = isnet.ISNet("resnet18d", num_classes, feats_channels=32, transform_channels=16, **kwargs)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a wrong buffer would show in the logits
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(autouse=True)
def no_torch_load(monkeypatch):
    """Nothing here may unpickle: loading a Hub folder reads safetensors and JSON only."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)


def test_round_trip_through_a_folder_offline(tmp_path, monkeypatch) -> None:
    model = tiny(class_names=["sky", "road", "car", "tree"], palette=[[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 0]],
                 meta={"note": "trained here"})  # fmt: skip
    folder = hf.save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = isnet.from_pretrained(str(folder))
    assert not loaded.training and loaded.config == model.config  # architecture, classes, palette, meta
    assert hf.hub_config(loaded) == hf.hub_config(model)  # preprocessing and test settings too
    config = json.loads((folder / "config.json").read_text())
    assert config["preprocessing"]["mean"] == list(IMAGENET_MEAN_255) and config["test_settings"] is None
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k1 == k2 and v1.dtype == v2.dtype and torch.equal(v1, v2)
    x = torch.randn(1, 3, 40, 48)
    assert torch.equal(model(x), loaded(x))
    # the checkpoint loader of the commands (eval, predict, export, init_from) takes the folder too
    assert isnet.hub.resolve_checkpoint(folder) == folder
    assert torch.equal(isnet.load_checkpoint(folder)(x), model(x))


def test_existing_files_are_not_overwritten(tmp_path) -> None:
    folder = hf.save_pretrained(tiny(), tmp_path / "m")
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        hf.save_pretrained(tiny(5), folder)
    assert (folder / "model.safetensors").read_bytes() == before
    hf.save_pretrained(tiny(5), folder, overwrite=True)
    assert isnet.from_pretrained(folder).num_classes == 5


def test_config_that_disagrees_with_weights_names_folder_and_mismatch(tmp_path) -> None:
    folder = hf.save_pretrained(tiny(4), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model"].update(num_classes=7, class_names=None, palette=None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as info:
        isnet.from_pretrained(folder)
    msg = str(info.value)
    assert str(folder) in msg and "num_classes=7" in msg
    assert "head.decoder_stage2.1.weight: model.safetensors (4, 32, 1, 1) vs config.json (7, 32, 1, 1)" in msg
    config["model"].update(num_classes=4, backbone="resnet34d")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"backbone='resnet34d'[\s\S]*missing \(\d+\):\n    backbone.layer1.2"
    ):
        isnet.from_pretrained(folder)


def test_weights_without_config_and_unknown_names(tmp_path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_file({"x": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="no config.json"):
        isnet.from_pretrained(folder)
    with pytest.raises(ValueError, match="neither a model-zoo name"):
        isnet.from_pretrained("no_such_model")


def test_repo_id_is_downloaded_through_the_hf_cache(tmp_path, monkeypatch) -> None:
    folder = hf.save_pretrained(tiny(), tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    model = isnet.from_pretrained("someone/isnet-tiny", revision="v1", num_classes=3)
    assert model.num_classes == 3 and model.class_names == ["class_0", "class_1", "class_2"]
    assert "head.decoder_stage2.1.weight" in model.meta["init_from"]["reinitialized"]
    assert model.meta["init_from"]["source"] == "someone/isnet-tiny"
    assert calls[0][0] == "someone/isnet-tiny" and calls[0][1]["revision"] == "v1"
    assert set(calls[0][1]["allow_patterns"]) == {"config.json", "model.safetensors", "README.md"}


def test_repo_id_from_the_hf_cache_with_HF_HUB_OFFLINE(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_OFFLINE", True
    )  # read when the library is imported
    repo = tmp_path / "cache" / "models--someone--isnet-tiny"  # the cache layout snapshot_download leaves
    model = tiny()
    hf.save_pretrained(model, repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    loaded = isnet.from_pretrained("someone/isnet-tiny", cache_dir=tmp_path / "cache")
    x = torch.randn(1, 3, 32, 32)
    assert loaded.config == model.config and torch.equal(loaded(x), model(x))
    with pytest.raises(isnet.hub.DownloadError, match="'someone/other' from the Hugging Face Hub"):
        isnet.from_pretrained("someone/other", cache_dir=tmp_path / "cache")


def test_push_to_hub_uploads_the_three_files(tmp_path, monkeypatch) -> None:
    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            uploaded["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            uploaded["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()
            return "https://huggingface.co/someone/isnet-tiny/commit/0"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    url = hf.push_to_hub(tiny(), "someone/isnet-tiny", private=True, token="t")
    assert url.endswith("/commit/0") and uploaded["repo"] == ("someone/isnet-tiny", True, True)
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"]
    assert 'isnet.from_pretrained("someone/isnet-tiny")' in uploaded["card"]


def test_card_of_a_non_zoo_model_claims_no_published_mIoU() -> None:
    card = hf.model_card(tiny(meta={"recipe": "isnet_r50_d8_ade20k"}))  # recipe name, other network
    assert "mIoU" not in card and "scripts/eval.py" not in card
    assert CITATION.strip() in card and "license: apache-2.0" in card


def test_citation_is_the_readme_one() -> None:
    assert CITATION.strip() in (ROOT / "README.md").read_text()


def test_hub_dir_from_a_released_file(tmp_path, capsys, monkeypatch) -> None:
    src = tmp_path / "isnet_resnet50os8_ade20k.pth"
    monkeypatch.undo()  # writing the released-format file needs the real torch.save/load
    torch.save({"model": reference_state_dict("resnet50_d8")}, src)
    assert convert_main([str(src), "--hub-dir", str(tmp_path / "hub")]) == 0
    out = tmp_path / "hub"
    assert f"Wrote {out}" in capsys.readouterr().out
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    model = isnet.from_pretrained(out)
    entry = recipe("isnet_r50_d8_ade20k")
    assert {k: model.config[k] for k in entry.model_kwargs() if k != "meta"} == {
        k: v for k, v in entry.model_kwargs().items() if k != "meta"
    }
    assert model.meta == {
        "recipe": entry.experiment,
        "converted_from": src.name,
        "source_format": "sssegmentation",
    }
    weights = load_file(str(out / "model.safetensors"))
    assert torch.equal(
        weights["backbone.conv1.6.weight"], reference_state_dict("resnet50_d8")["backbone_net.stem.6.weight"]
    )
    config = json.loads((out / "config.json").read_text())
    assert config["test_settings"]["ms_flip"]["scales"] == list(entry.ms_flip.scales)
    assert config["preprocessing"]["test_resize"] == {"scale": [2048, 512], "keep_ratio": True}
    card = (out / "README.md").read_text()
    assert f"**{entry.miou:.2f}** single scale, **{entry.miou_ms_flip:.2f}** multi-scale + flip" in card
    assert f"python scripts/eval.py experiment=isnet_r50_d8_ade20k ckpt={out}" not in card  # repo id unknown
    assert (
        "python scripts/eval.py experiment=isnet_r50_d8_ade20k ckpt=<folder or user/repo> ms_flip=true"
        in card
    )
    assert "value: 44.22" in card and "within 0.0001" in card
    with pytest.raises(SystemExit):  # neither DST nor --hub-dir
        convert_main([str(src)])


def test_hub_dir_from_our_checkpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.undo()  # reading our .pth format uses torch.load(weights_only=True)
    model = tiny()
    src = isnet.save_checkpoint(model, tmp_path / "ours.pth", meta={"run": "r1"})
    assert convert_main([str(src), "--hub-dir", str(tmp_path / "hub")]) == 0
    loaded = isnet.from_pretrained(tmp_path / "hub")
    x = torch.randn(1, 3, 32, 32)
    assert loaded.meta == {"run": "r1"} and torch.equal(loaded(x), model(x))
    with pytest.raises(SystemExit):  # the folder's files are not replaced without --force
        convert_main([str(src), "--hub-dir", str(tmp_path / "hub")])
    assert convert_main([str(src), "--hub-dir", str(tmp_path / "hub"), "--force"]) == 0
