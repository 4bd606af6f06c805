"""Parity of ``isnet`` with the reference ISNet (sssegmentation) on randomly initialised weights.

Needs a checkout of the reference: ``ISNET_REFERENCE_SRC`` names the folder that contains ``ssseg/`` and
``ISNET_REFERENCE_PYTHON`` (default: this interpreter) an interpreter that can import it (torch, timm, cv2,
...). Without ``ISNET_REFERENCE_SRC`` every test here is skipped. ``reference_dump.py`` runs once per config
in a subprocess, into a temporary folder shared by the whole module; ``pytest -s`` prints the measured
diffs of every intermediate tensor, which tells where a mismatch starts.

The plain eval path (``ISNet``) must match to 1e-4, the inference copy (``optimize_for_inference``: BN folded,
``channels_last``) to the reference's own rounding sensitivity, and train-mode losses to 1e-5 relative.

Cases: ResNet-50/101 and ResNeSt-101 on ADE20k (150 classes), ResNet-50 on COCO-Stuff-10k (182) and on LIP
(20 classes, layer1 shortcut, LeakyReLU head); input 97x129, batch 2.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _load_sibling(name: str):
    # by file path, so it works whether or not tests/ is a package
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"isnet_parity_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


report = _load_sibling("report")

pytestmark = [
    pytest.mark.parity,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        report.reference_src() is None,
        reason="set ISNET_REFERENCE_SRC to a sssegmentation checkout (and ISNET_REFERENCE_PYTHON to its python)",
    ),
]

CASES = [pytest.param(case, id=case.name) for case in report.CASES]


@pytest.fixture(scope="module")
def reference_dump(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Path of the reference dump for a config, made on first use and reused by every test of the module.

    The dumps (230-320 MB each) are deleted when the module is done; pytest keeps old temp folders.
    """
    folder = tmp_path_factory.mktemp("reference_dumps")
    src, python = report.reference_src(), report.reference_python()
    made: dict[str, Path] = {}

    def get(config: str) -> Path:
        if config not in made:
            path = folder / f"{config}.pth"
            summary = report.make_reference_dump(config, path, src, python)
            print(f"\nreference dump {config}: {summary}")
            made[config] = path
        return made[config]

    yield get
    for path in made.values():
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("case", CASES)
def test_eval_logits_match_reference(case: report.ParityCase, reference_dump: Callable[[str], Path]) -> None:
    """On the plain eval path, feature-resolution and resized logits equal the reference's to 1e-4."""
    result = report.compare_eval(reference_dump(case.config), plain=True)
    detail = report.format_eval(case.name, result)
    print("\n" + detail)

    assert result["num_classes"] == case.num_classes
    assert result["logits_shape"] == result["ref_logits_shape"]
    # the semantic-level context sees the same class regions on both sides
    assert result["stage1_argmax_agreement"] == 1.0, detail
    for key in ("logits_max_abs", "logits_resized_max_abs"):
        assert result[key] is not None, detail
        assert result[key] <= report.EVAL_ATOL, f"{key}: {detail}"


@pytest.mark.parametrize("case", CASES)
def test_default_eval_path_within_reference_rounding(
    case: report.ParityCase, reference_dump: Callable[[str], Path]
) -> None:
    """The default (fused, channels_last) eval path agrees with the reference as well as the reference agrees
    with itself under a rounding-level change (twice its measured sensitivity, at least 1e-4)."""
    result = report.compare_eval(reference_dump(case.config), plain=False)
    detail = report.format_eval(case.name, result)
    print("\n" + detail)

    tolerance = report.fast_path_tolerance(result["rounding_sensitivity"])
    assert result["logits_shape"] == result["ref_logits_shape"]
    assert result["stage1_argmax_agreement"] == 1.0, detail
    for key in ("logits_max_abs", "logits_resized_max_abs"):
        assert result[key] is not None, detail
        assert result[key] <= tolerance, f"{key}: {detail}"


@pytest.mark.parametrize("case", CASES)
def test_train_losses_match_reference(case: report.ParityCase, reference_dump: Callable[[str], Path]) -> None:
    """With dropout off on both sides, the three weighted losses equal the reference's to 1e-5 relative."""
    result = report.compare_train(reference_dump(case.config))
    print("\n" + report.format_train(case.name, result))

    detail = report.format_train(case.name, result)
    assert set(result["losses"]) == {"loss", "loss_stage1", "loss_stage2", "loss_aux"}
    for key in ("loss_stage1", "loss_stage2", "loss_aux"):
        rel = result["losses"][key]["rel_diff"]
        assert rel is not None and rel <= report.LOSS_RTOL, f"{key}: {detail}"
