"""sssegmentation checkpoints: every reference key maps exactly once, shapes match, loading is strict."""

from __future__ import annotations

import pytest
import torch

from isnet import ISNet, from_sssegmentation, load_checkpoint, save_checkpoint
from isnet.convert.sssegmentation import KEY_RULES, ConversionError, infer_config, sssegmentation_to_isnet
from isnet.errors import CheckpointError
from tests.helpers import KEY_FILES, read_key_list, reference_state_dict

PARAMS_M = {"resnet50_d8": 49.20, "resnet101_d8": 68.19, "resnest101_d8": 71.90}  # spec section 1.2


@pytest.mark.parametrize("backbone", list(KEY_FILES))
def test_every_reference_key_maps_once_with_its_shape(backbone: str) -> None:
    shapes = read_key_list(KEY_FILES[backbone])
    model = ISNet(backbone, num_classes=150)
    ours = model.state_dict()
    targets = []
    for key, shape in shapes.items():
        hits = [rule.sub(repl, key) for rule, repl in KEY_RULES if rule.match(key)]
        assert len(hits) == 1, key
        assert tuple(ours[hits[0]].shape) == shape, key
        targets.append(hits[0])
    assert len(set(targets)) == len(targets) == len(ours)  # a bijection onto our state dict
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 2) == PARAMS_M[backbone]


@pytest.mark.parametrize("backbone", ["resnet50_d8", "resnest101_d8"])
def test_from_sssegmentation_loads_exact_tensors(backbone: str, tmp_path) -> None:
    state = reference_state_dict(backbone)
    path = tmp_path / "released.pth"
    torch.save(
        {"model": state, "optimizer": {"state": {}, "param_groups": []}, "cur_epoch": 130, "cur_iter": 9},
        path,
    )
    model = from_sssegmentation(path)
    assert not model.training
    assert model.config["backbone"] == backbone and model.num_classes == 150
    ours = model.state_dict()
    assert torch.equal(ours["head.slc_net.correlate_net.key_project.1.0.weight"],
                       state["slc_net.correlate_net.key_project.1.0.weight"])  # fmt: skip
    assert torch.equal(ours["backbone.bn1.running_var"], state["backbone_net.stem.7.running_var"])
    assert torch.equal(ours["backbone.conv1.6.weight"], state["backbone_net.stem.6.weight"])


def test_bare_and_ddp_prefixed_state_dicts() -> None:
    state = reference_state_dict("resnet50_d8")
    a = from_sssegmentation(state)
    b = from_sssegmentation({"model": {f"module.{k}": v for k, v in state.items()}})
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def _with_num_classes(state: dict, num_classes: int, shortcut: bool = False) -> dict:
    state = dict(state)
    gen = torch.Generator().manual_seed(1)
    for prefix in ("decoder_stage1.4", "auxiliary_decoder.4", "decoder_stage2.1"):
        state[f"{prefix}.weight"] = torch.randn(num_classes, 512, 1, 1, generator=gen)
        state[f"{prefix}.bias"] = torch.randn(num_classes, generator=gen)
    if shortcut:  # the LIP layout: shortcut branch and a 560->512->K stage-2 decoder
        del state["decoder_stage2.1.weight"], state["decoder_stage2.1.bias"]
        state["shortcut.0.weight"] = torch.randn(48, 256, 1, 1, generator=gen)
        state["shortcut.0.bias"] = torch.randn(48, generator=gen)
        for name, shape in (("weight", (48,)), ("bias", (48,)), ("running_mean", (48,))):
            state[f"shortcut.1.{name}"] = torch.randn(shape, generator=gen)
        state["shortcut.1.running_var"] = torch.rand(48, generator=gen) + 0.5
        state["shortcut.1.num_batches_tracked"] = torch.tensor(0)
        state["decoder_stage2.0.weight"] = torch.randn(512, 560, 1, 1, generator=gen)
        for name in ("weight", "bias", "running_mean"):
            state[f"decoder_stage2.1.{name}"] = torch.randn(512, generator=gen)
        state["decoder_stage2.1.running_var"] = torch.rand(512, generator=gen) + 0.5
        state["decoder_stage2.1.num_batches_tracked"] = torch.tensor(0)
        state["decoder_stage2.4.weight"] = torch.randn(num_classes, 512, 1, 1, generator=gen)
        state["decoder_stage2.4.bias"] = torch.randn(num_classes, generator=gen)
    return state


def test_infers_cocostuff_and_lip_variants() -> None:
    base = reference_state_dict("resnet50_d8")
    coco = infer_config(_with_num_classes(base, 182))
    assert (coco["num_classes"], coco["shortcut"], coco["act"]) == (182, False, "relu")
    lip_state = _with_num_classes(base, 20, shortcut=True)
    lip = from_sssegmentation(lip_state)
    assert (lip.num_classes, lip.config["shortcut"], lip.config["act"]) == (20, True, "leaky_relu")


def test_mismatches_are_listed() -> None:
    state = reference_state_dict("resnet50_d8")
    state.pop("slc_net.bottleneck.1.running_mean")
    state["ilc_net.extra.weight"] = torch.zeros(3)
    state["bottleneck.1.weight"] = torch.zeros(7)
    with pytest.raises(ConversionError) as info:
        from_sssegmentation(state)
    msg = str(info.value)
    assert "missing (1)" in msg and "head.slc_net.bottleneck.1.running_mean" in msg
    assert "unexpected (1)" in msg and "head.ilc_net.extra.weight" in msg
    assert "shape mismatch (1)" in msg and "head.bottleneck.1.weight: checkpoint (7,) vs model (512,)" in msg
    with pytest.raises(ConversionError, match="unmapped"):
        sssegmentation_to_isnet({"something.else": torch.zeros(1)}, {}, "x")


def test_unknown_architecture_and_non_isnet_files(tmp_path) -> None:
    state = {
        k: v
        for k, v in reference_state_dict("resnet50_d8").items()
        if not k.startswith("backbone_net.layer3.5.")
    }
    with pytest.raises(ConversionError, match="cannot identify the backbone"):
        from_sssegmentation(state)
    with pytest.raises(CheckpointError, match="not found"):
        from_sssegmentation(tmp_path / "nope.pth")
    path = tmp_path / "notes.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth"):
        from_sssegmentation(path)


def test_released_name_is_checked_against_tensors(tmp_path) -> None:
    state = reference_state_dict("resnet50_d8")
    good = tmp_path / "isnet_resnet50os8_ade20k.pth"
    torch.save({"model": state}, good)
    model = from_sssegmentation(good)
    assert model.meta == {"recipe": "isnet_r50_d8_ade20k"} and model.class_names[0] == "wall"
    bad = tmp_path / "isnet_resnet101os8_ade20k.pth"
    torch.save({"model": state}, bad)
    with pytest.raises(ConversionError, match="named like the released isnet_resnet101os8_ade20k"):
        from_sssegmentation(bad)


def test_unsafe_pickle_is_refused_and_not_executed(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"model": reference_state_dict("resnet50_d8"), "payload": Exploit()}, path)
    assert not marker.exists()  # saving does not call the callable; only unpickling would
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pth"):
        from_sssegmentation(path)
    assert not marker.exists()


def test_own_format_round_trip_and_no_silent_overwrite(tmp_path) -> None:
    model = from_sssegmentation(reference_state_dict("resnet50_d8"))
    path = save_checkpoint(model, tmp_path / "isnet_r50.pth", meta={"source": "test"})
    loaded = load_checkpoint(path)
    assert loaded.meta == {"source": "test"} and not loaded.training
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isnet_r50.pth"]  # no temp files left behind
