"""Export: ONNX (onnxruntime vs PyTorch on several sizes), TorchScript, torch.export; atomic, no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import isnet.export
from isnet.cli.export import main as export_main
from isnet.export import ExportVerificationError, export_model, format_from_suffix
from isnet.models import ISNet

SAMPLE = (32, 40)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


def tiny_model(backbone: str = "resnet18d", seed: int = 0) -> ISNet:
    """A small ISNet with randomised BatchNorm statistics, so logits are far from zero and vary by pixel."""
    torch.manual_seed(seed)
    model = ISNet(backbone, num_classes=5, feats_channels=32, transform_channels=16)
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    classifier = model.head.decoder_stage2[-1]
    classifier.weight.data.copy_(torch.randn(classifier.weight.shape, generator=gen))
    model.class_names = ["sky", "road", "car", "person", "tree"]
    return model.eval()


@pytest.fixture(scope="module")
def model() -> ISNet:
    return tiny_model()


@pytest.fixture(scope="module")
def onnx_export(
    model: ISNet, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, isnet.export.ExportResult]:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return path, export_model(model, path, sample_size=SAMPLE)


def test_onnx_checks_pass_on_two_sizes(onnx_export: tuple[Path, isnet.export.ExportResult]) -> None:
    path, result = onnx_export
    assert path.is_file() and result.format == "onnx"
    assert [c.input_shape for c in result.checks] == [[1, 3, 32, 40], [2, 3, 25, 53]]
    assert [c.output_shape for c in result.checks] == [[1, 5, 32, 40], [2, 5, 25, 53]]
    for check in result.checks:
        assert check.passed and check.max_abs_torch > 0.5
        assert check.max_abs_diff <= 1e-4 * check.max_abs_torch + 1e-5
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]  # the temporary file was renamed


def test_onnx_runtime_matches_isnet_forward_at_a_third_size(
    model: ISNet, onnx_export: tuple[Path, isnet.export.ExportResult]
) -> None:
    path, _ = onnx_export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 41, 29, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(images).numpy()  # the plain ISNet in eval mode
    got = session.run(None, {"images": images.numpy()})[0]
    assert got.shape == (3, 5, 41, 29)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max() + 1e-5
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999


def test_onnx_graph_is_dynamic_and_carries_metadata(
    onnx_export: tuple[Path, isnet.export.ExportResult],
) -> None:
    path, _ = onnx_export
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["isnet.class_names"]) == ["sky", "road", "car", "person", "tree"]
    assert json.loads(meta["isnet.mean"]) == [123.675, 116.28, 103.53]
    assert json.loads(meta["isnet.config"])["backbone"] == "resnet18d"


def test_existing_file_is_never_overwritten_without_force(
    model: ISNet, onnx_export: tuple[Path, isnet.export.ExportResult]
) -> None:
    path, _ = onnx_export
    before = path.read_bytes()
    with pytest.raises(
        FileExistsError, match=r"tiny.onnx already exists; pass overwrite=True \(CLI: --force\)"
    ):
        export_model(model, path, sample_size=SAMPLE)
    assert path.read_bytes() == before


def test_torchscript_replaces_only_with_overwrite(model: ISNet, tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    path.write_bytes(b"old")
    result = export_model(model, path, sample_size=SAMPLE, resolution="feature", overwrite=True)
    assert all(c.passed for c in result.checks)
    loaded = torch.jit.load(str(path))
    images = torch.randn(2, 3, 57, 33)
    with torch.no_grad():
        expected = model.predict_logits(images)
        got = loaded(images)
    assert got.shape == expected.shape == (2, 5, 8, 5)  # feature resolution: ceil(57/8), ceil(33/8)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_exported_program_with_dynamic_shapes(tmp_path: Path) -> None:
    # resnet18 (no avg_down shortcut): torch's serialiser cannot save timm's AvgPool2dSame under dynamic shapes
    model = tiny_model("resnet18")
    path = tmp_path / "tiny.pt2"
    result = export_model(model, path, sample_size=SAMPLE)
    assert [c.passed for c in result.checks] == [True, True]
    program = torch.export.load(str(path)).module()
    images = torch.randn(3, 3, 35, 47)
    with torch.no_grad():
        torch.testing.assert_close(program(images), model(images), rtol=1e-4, atol=1e-5)


def test_failed_check_writes_nothing(model: ISNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_load = torch.jit.load

    def drifting_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - an exporter that changed the numbers
        module = real_load(*args, **kwargs)
        return lambda x: module(x) + 1e-2

    monkeypatch.setattr(torch.jit, "load", drifting_load)
    path = tmp_path / "drift.pt"
    with pytest.raises(
        ExportVerificationError, match=r"torchscript export of drift.pt disagrees with PyTorch"
    ):
        export_model(model, path, sample_size=SAMPLE, verify_sizes=[(1, 17, 19)])
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(model: ISNet, tmp_path: Path) -> None:
    assert format_from_suffix("a/b.ONNX") == "onnx" and format_from_suffix("m.pt2") == "exported_program"
    with pytest.raises(ValueError, match=r"cannot tell the export format of model.bin"):
        format_from_suffix("model.bin")
    with pytest.raises(ValueError, match=r"resolution must be one of \('input', 'feature'\), got 'full'"):
        export_model(model, tmp_path / "m.onnx", resolution="full")
    with pytest.raises(ValueError, match=r"opset must be >= 14"):
        export_model(model, tmp_path / "m.onnx", opset=13)
    with pytest.raises(ValueError, match=r"sample_size must be \(H, W\) with both >= 16"):
        export_model(model, tmp_path / "m.onnx", sample_size=(8, 8))
    with pytest.raises(
        ValueError, match=r"dynamo=True applies to the onnx format only, got format 'torchscript'"
    ):
        export_model(model, tmp_path / "m.pt", dynamo=True)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_existing_output_and_writes_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.pt"
    out.write_bytes(b"keep me")
    args = ["--backbone", "resnet18d", "--num-classes", "3", "--feats-channels", "16", "--transform-channels", "8",
            "--out", str(out), "--size", "32", "32"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        export_main(args)
    assert info.value.code == 1
    assert f"error: {out} already exists; pass overwrite=True (CLI: --force)" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    report = export_main([*args, "--force", "--json"])
    assert report["format"] == "torchscript" and report["path"] == str(out)
    assert [c["input_shape"] for c in report["checks"]] == [[1, 3, 32, 32], [2, 3, 25, 43]]
    assert json.loads(capsys.readouterr().out)["checks"][1]["passed"] is True
    assert torch.jit.load(str(out))(torch.randn(1, 3, 24, 24)).shape == (1, 3, 24, 24)


def test_onnx_through_the_dynamo_exporter(model: ISNet, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    path = tmp_path / "dynamo.onnx"
    result = export_model(model, path, sample_size=SAMPLE, dynamo=True)
    assert [c.passed for c in result.checks] == [True, True]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 41, 29, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = model(images).numpy()
    got = session.run(None, {"images": images.numpy()})[0]
    assert got.shape == (3, 5, 41, 29)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max() + 1e-5
