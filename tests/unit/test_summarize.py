"""scripts/summarize_runs.py on run folders written by hand: exact statistics, labels, the PNG, one-line errors."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from PIL import Image

from isnet.cli.summarize import find_runs, main

#: Final metrics of three runs; "test/mIoU" is missing from run 2 and NaN in run 1.
FINAL = [
    {"val/mIoU": 0.25, "train/loss": 1.5, "test/mIoU": 0.5, "best_checkpoint": "a.ckpt", "flag": True},
    {"val/mIoU": 0.5, "train/loss": 1.0, "test/mIoU": float("nan"), "best_checkpoint": None, "flag": False},
    {"val/mIoU": 0.75, "train/loss": 0.75, "best_checkpoint": None},
]


def _write_run(folder: Path, final: dict, seed: int, history: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(final))
    (folder / "config.yaml").write_text(
        f"seed: {seed}\nschedule:\n  lr: 0.01\npaths:\n  output_dir: {folder}\n"
    )
    (folder / "run.json").write_text("{}")
    if history:
        history_data = {"epoch": [0, 1], "train_loss": [2.0, final["train/loss"]], "val_epoch": [0, 1],
                        "val_mIoU": [0.1, final["val/mIoU"]], "steps_per_epoch": 2}  # fmt: skip
        (folder / "metrics_history.json").write_text(json.dumps(history_data))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun folder: jobs 0, 1, 2 (seeds 0..2) and an unfinished job 3 (no metrics.json)."""
    root = tmp_path / "multirun" / "2025-01-01_00-00-00"
    for job, final in enumerate(FINAL):
        _write_run(root / str(job), final, seed=job)
    (root / "3").mkdir()
    (root / "3" / "run.json").write_text("{}")
    return root


def test_statistics_over_the_runs_are_exact(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    summary = main([str(sweep), "--json"])
    rows = summary["metrics"]
    assert set(rows) == {"val/mIoU", "train/loss", "test/mIoU"}  # numbers only: no paths, no booleans
    assert rows["val/mIoU"] == {"mean": 0.5, "std": 0.25, "n": 3, "min": 0.25, "max": 0.75}
    loss = [1.5, 1.0, 0.75]
    assert rows["train/loss"]["mean"] == pytest.approx(statistics.fmean(loss))
    assert rows["train/loss"]["std"] == pytest.approx(statistics.stdev(loss))  # sample std (n - 1)
    assert rows["test/mIoU"] == {
        "mean": 0.5,
        "std": None,
        "n": 1,
        "min": 0.5,
        "max": 0.5,
    }  # NaN/missing left out
    assert [run["label"] for run in summary["runs"]] == ["0 (seed=0)", "1 (seed=1)", "2 (seed=2)"]
    assert summary["differing_settings"] == ["seed"]  # not paths.output_dir, nor its copy in callbacks
    assert summary["unfinished"] == [str(sweep / "3")]
    captured = capsys.readouterr()
    assert json.loads(captured.out) == json.loads(json.dumps(summary))
    assert captured.err == f"note: left out 1 unfinished run(s) (no metrics.json): {sweep / '3'}\n"


def test_curves_png_and_json_file_are_written(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "summary.json"
    summary = main([str(sweep), "--out", str(out)])
    png = sweep / "summary.png"
    assert summary["plot"] == str(png) and png.stat().st_size > 0
    width, height = Image.open(png).size
    assert width > 500 and height > 200
    assert json.loads(out.read_text())["metrics"]["val/mIoU"]["std"] == 0.25
    table = capsys.readouterr().out
    assert "val/mIoU" in table and "0.25" in table and f"Curves: {png}" in table


def test_run_folders_globs_and_metrics_files_are_accepted(sweep: Path) -> None:
    runs, unfinished = find_runs([str(sweep / "0"), str(sweep / "[12]"), str(sweep / "0" / "metrics.json")])
    assert runs == [sweep / "0", sweep / "1", sweep / "2"] and unfinished == []  # each run once, in order
    assert find_runs([str(sweep.parent)]) == ([sweep / "0", sweep / "1", sweep / "2"], [sweep / "3"])


def test_jobs_sort_by_number(tmp_path: Path) -> None:
    for job in (10, 2, 1):
        _write_run(tmp_path / str(job), FINAL[0], seed=job, history=False)
    assert [p.name for p in find_runs([str(tmp_path)])[0]] == ["1", "2", "10"]


def test_existing_png_is_kept_unless_forced(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    png = sweep / "summary.png"
    png.write_bytes(b"mine")
    with pytest.raises(SystemExit) as info:
        main([str(sweep)])
    assert info.value.code == 1 and png.read_bytes() == b"mine"
    assert (
        capsys.readouterr().err
        == f"error: {png} exists; pass --force to replace it, or --plot <another path>\n"
    )
    main([str(sweep), "--force"])
    assert png.read_bytes()[:4] == b"\x89PNG"


def _bad_input(root: Path, kind: str) -> Path:
    if kind == "no-runs":
        return root
    if kind == "missing":
        return root / "missing"
    if kind == "corrupt-json":
        (_write_run(root / "bad", {}, 0, history=False) / "metrics.json").write_text("{")
        return root / "bad"
    (root / "notes.txt").write_text("x")
    return root / "notes.txt"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no-runs", "no finished run in it (metrics.json is written when a run ends)"),
        ("missing", "no such file or folder"),
        ("corrupt-json", "metrics.json: not valid JSON"),
        ("other-file", "not a run folder nor its metrics.json"),
    ],
)
def test_bad_input_ends_with_one_error_line(tmp_path: Path, capsys, kind: str, message: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(_bad_input(tmp_path, kind)), "--no-plot"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
