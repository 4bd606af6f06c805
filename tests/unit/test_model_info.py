"""Model info: parameters per group against the reference key lists, FLOPs per group against hand counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isnet.cli.model_info import count_params, main, model_info
from isnet.models import ISNet
from tests.helpers import KEY_FILES, read_key_list

_STATS = ("running_mean", "running_var", "num_batches_tracked")


def reference_params(backbone: str) -> dict[str, int]:
    """Parameter counts of the reference checkpoint per component, from its key list (buffers left out)."""
    counts = {"backbone": 0, "head": 0, "aux": 0}
    for key, shape in read_key_list(KEY_FILES[backbone]).items():
        if key.endswith(_STATS):
            continue
        numel = 1
        for dim in shape:
            numel *= dim
        group = (
            "backbone"
            if key.startswith("backbone_net.")
            else "aux"
            if key.startswith("auxiliary_")
            else "head"
        )
        counts[group] += numel
    return counts


@pytest.mark.parametrize("backbone", ["resnet50_d8", "resnest101_d8"])
def test_params_per_group_equal_the_reference_checkpoint(backbone: str) -> None:
    counts = count_params(ISNet(backbone, num_classes=150))
    ref = reference_params(backbone)
    assert counts["backbone"] == ref["backbone"]
    assert counts["aux"] == ref["aux"]
    assert counts["bottleneck"] + counts["ILC"] + counts["SLC"] + counts["decoders"] == ref["head"]
    assert counts["other"] == 0


def test_flops_per_group_equal_hand_counts() -> None:
    n_cls, c, t = 5, 32, 16
    model = ISNet("resnet18d", num_classes=n_cls, feats_channels=c, transform_channels=t)
    info = model_info(model, (64, 96), batch=2)
    gflops = {row["name"]: row["gflops"] * 1e9 for row in info["groups"]}
    b, n = 2, (64 // 8) * (96 // 8)  # batch, positions at 1/8

    def conv(cin: int, cout: int, k: int = 1) -> float:  # 2 FLOPs per multiply-add, bias not counted
        return 2 * b * n * cin * cout * k * k

    attention = 2 * 2 * b * n * n * t  # QK^T and AV
    # the key/value projections of [global, x] run on x (N positions) and on the global average (1 position)
    global_part = 2 * b * 1 * c * t
    ilc = conv(c, t) + conv(t, t) + conv(c, t) + global_part + conv(t, t) + conv(c, t) + global_part
    ilc += conv(t, c) + attention + conv(2 * c, c, 3)
    # the class centres are a scatter-add (no FLOPs counted), not a matmul
    slc = conv(c, t) + conv(t, t) + conv(c, t) + conv(t, t) + conv(c, t) + conv(t, c) + attention
    slc += conv(2 * c, c, 3)
    assert gflops["bottleneck"] == pytest.approx(conv(512, c, 3), rel=1e-9)
    assert gflops["ILC"] == pytest.approx(ilc, rel=1e-9)
    assert gflops["SLC"] == pytest.approx(slc, rel=1e-9)
    assert gflops["decoders"] == pytest.approx(conv(c, c) + conv(c, n_cls) + conv(c, n_cls), rel=1e-9)
    assert gflops["aux"] == pytest.approx(
        conv(256, c, 3) + conv(c, n_cls), rel=1e-9
    )  # layer3 of resnet18: 256
    total = info["total"]
    assert total["gflops_train_forward"] == pytest.approx(sum(gflops.values()) / 1e9, rel=1e-9)
    assert total["gflops_inference"] == pytest.approx((sum(gflops.values()) - gflops["aux"]) / 1e9, rel=1e-9)
    assert info["input"] == [2, 3, 64, 96] and "other" not in gflops


def test_cli_for_a_zoo_experiment_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "info.json"
    info = main(["isnet_r50_d8_lip", "--size", "64", "64", "--json", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(capsys.readouterr().out) == json.loads(json.dumps(info))
    assert info["model"]["backbone"] == "resnet50_d8" and info["model"]["num_classes"] == 20
    assert info["model"]["shortcut"] is True and info["model"]["act"] == "leaky_relu"
    decoders = next(r for r in info["groups"] if r["name"] == "decoders")
    assert decoders["modules"] == ["head.decoder_stage1", "head.decoder_stage2", "head.shortcut"]
    aux = next(r for r in info["groups"] if r["name"] == "aux")
    assert info["total"]["params_inference"] == info["total"]["params"] - aux["params"]
    main(["isnet_r50_d8_lip", "--size", "64", "64"])  # the rich table
    table = capsys.readouterr().out
    assert "total (inference)" in table and "decoders" in table


def test_cli_rejects_contradicting_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["isnet_r50_d8_ade20k", "--num-classes", "19"])
    assert "--num-classes=19 contradicts isnet_r50_d8_ade20k (150)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["isnet_r18_d8_ade20k"])
    assert "unknown model-zoo name 'isnet_r18_d8_ade20k'" in capsys.readouterr().err


def test_cli_unknown_zoo_name_ends_with_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["isnet_r18_d8_ade20k"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "isnet_r18_d8_ade20k" in err
    assert "usage:" not in err
