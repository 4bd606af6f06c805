"""The layering of docs/architecture.md, checked on the source: who may import whom inside ``isnet``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "isnet"

# layer -> the layers it may import (itself always allowed). Mirrors the table in docs/architecture.md.
ALLOWED = {
    "errors": set(),
    "meta": set(),
    "utils": {"errors"},
    "viz": {"meta", "utils"},
    "models": {"errors", "meta", "utils"},
    "convert": {"errors", "meta", "models", "utils"},
    "checkpoint": {"convert", "errors", "hf", "models", "utils"},
    "hf": {"errors", "meta", "models", "utils"},
    "hub": {"convert", "errors", "hf", "meta", "models"},
    "export": {"meta", "models", "utils"},
    "accel": {"models"},
    "inference": {"meta", "models", "utils"},
    "inside": {"data", "meta", "models"},
    "metrics": set(),
    "segmenter": {"accel", "checkpoint", "errors", "hub", "inference", "meta", "models", "utils", "viz"},
    "data": {"errors", "meta", "utils"},
    "lit": {"accel", "errors", "inference", "meta", "metrics", "models", "utils", "viz"},
    "cli": {
        "accel", "checkpoint", "convert", "data", "errors", "export", "hf", "hub", "inference", "isnet", "lit",
        "meta", "metrics", "models", "segmenter", "utils", "viz",
    },
}  # fmt: skip


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "isnet":
                layers.add(parts[1] if len(parts) > 1 else "isnet")
    return layers


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"{path}: layer {layer!r} is not in docs/architecture.md"
    wrong = _imports(path) - ALLOWED[layer] - {layer}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(wrong)}"


def test_no_private_names_imported_across_modules() -> None:
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("isnet"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_models_and_meta_import_without_the_data_stack() -> None:
    code = (
        "import sys, isnet.models, isnet.meta, isnet.hub\n"
        "heavy = [m for m in ('pytorch_lightning', 'lightning', 'albumentations', 'cv2', 'isnet.accel',"
        " 'isnet.data') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
