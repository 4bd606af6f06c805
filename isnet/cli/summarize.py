"""Compare training runs: mean ± std of every final metric over the runs, and their curves in one PNG (``--help``).

Examples::

    python scripts/train.py -m experiment=demo seed=0,1,2              # runs/demo/multirun/<time>/{0,1,2}
    python scripts/summarize_runs.py runs/demo/multirun/<time>          # every run below a multirun folder
    python scripts/summarize_runs.py runs/demo/2025-*/ --json           # run folders (a glob), JSON on stdout
    python scripts/summarize_runs.py 'runs/demo/multirun/*' --plot seeds.png --out seeds.json

A run is a folder holding the ``metrics.json`` that ``scripts/train.py`` writes when it ends (a folder without one
is searched for runs below it); its curves come from its ``metrics_history.json``. For every numeric metric: the
mean, the sample standard deviation (n - 1; none for a single run), min and max over the n runs that logged a
finite value. Runs are labelled by their folder and by the settings of their ``config.yaml`` that differ between
them (e.g. ``seed=1``). The curves go to ``summary.png`` beside the runs unless ``--plot`` says otherwise; an
existing file is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isnet.cli import doc_parser, one_line_errors
from isnet.cli.utils import RUN_MARKER
from isnet.errors import ConfigError, DataError
from isnet.utils.io import write_json

__all__ = ["build_parser", "find_runs", "load_run", "main", "summarize"]

METRICS_FILE = "metrics.json"
HISTORY_FILE = "metrics_history.json"
CONFIG_FILE = "config.yaml"
#: Stands for a run's own folder in its config values (``paths.output_dir`` and every path below it), so that
#: these never count as a setting that tells runs apart.
_OWN_FOLDER = "<run>"


def _natural_key(path: Path) -> list[Any]:
    """Sort ``.../2`` before ``.../10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_runs(paths: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The run folders named by ``paths``: run folders, folders holding runs (a multirun folder), ``metrics.json``
    files or glob patterns of these; in the given order, each once.

    Returns:
        ``(runs, unfinished)``: the finished runs, and the folders found below a searched folder that hold a
        ``run.json`` but no ``metrics.json`` (a run still going, or one that died before its end).

    Raises:
        FileNotFoundError: A path or pattern that matches nothing.
        DataError: A folder with no finished run (no ``metrics.json``) in or below it.
    """
    runs: list[Path] = []
    unfinished: list[Path] = []
    for given in paths:
        literal = Path(given)
        pattern = sorted(glob.glob(given), key=lambda p: _natural_key(Path(p)))
        matches = [literal] if literal.exists() else [Path(p) for p in pattern]
        if not matches:
            raise FileNotFoundError(f"{given}: no such file or folder")
        found: list[Path] = []
        for path in matches:
            if path.is_file():
                if path.name != METRICS_FILE:
                    raise DataError(f"{path}: not a run folder nor its {METRICS_FILE}")
                found.append(path.parent)
            elif (path / METRICS_FILE).is_file():
                found.append(path)
            else:
                found += sorted((m.parent for m in path.rglob(METRICS_FILE)), key=_natural_key)
                markers = (m.parent for m in path.rglob(RUN_MARKER))
                unfinished += sorted(
                    (p for p in markers if not (p / METRICS_FILE).is_file()), key=_natural_key
                )
        if not found:
            raise DataError(f"{given}: no finished run in it ({METRICS_FILE} is written when a run ends)")
        runs += found
    return _unique(runs), _unique(unfinished)


def _unique(paths: Sequence[Path]) -> list[Path]:
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_run(folder: Path) -> dict[str, Any]:
    """``{"path", "metrics"}`` (the numeric entries of ``metrics.json``), ``"history"`` (``metrics_history.json``,
    ``None`` when absent) and ``"config"`` (``config.yaml`` flattened to dotted keys, the run's own folder written
    ``<run>``; ``{}`` when absent)."""
    metrics = _read_json(folder / METRICS_FILE)
    if not isinstance(metrics, dict):
        raise DataError(f"{folder / METRICS_FILE}: expected a JSON object of metrics")
    history_path = folder / HISTORY_FILE
    history = _read_json(history_path) if history_path.is_file() else None
    return {
        "path": folder,
        "metrics": {k: float(v) for k, v in metrics.items() if _is_number(v)},
        "history": history if isinstance(history, dict) else None,
        "config": _flat_config(folder / CONFIG_FILE),
    }


def _flat_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}  # the labels are a convenience: a config that does not parse only loses them
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(config if isinstance(config, dict) else {}, "")
    own = flat.get("paths.output_dir")
    if isinstance(own, str) and own:
        flat = {k: v.replace(own, _OWN_FOLDER) if isinstance(v, str) else v for k, v in flat.items()}
    return flat


def _differing_settings(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The config keys whose value is not the same in every run; of keys with the same values in every run (an
    interpolated copy, e.g. ``callbacks.epoch_seed.seed`` of ``seed``), only the shortest."""
    by_values: dict[tuple[str, ...], str] = {}
    for key in sorted({k for run in runs for k in run["config"]}, key=lambda k: (k.count("."), len(k), k)):
        values = tuple(json.dumps(run["config"].get(key, "<absent>"), default=str) for run in runs)
        if len(set(values)) > 1:
            by_values.setdefault(values, key)
    return sorted(by_values.values())


def _labels(runs: Sequence[dict[str, Any]]) -> list[str]:
    paths = [run["path"].resolve() for run in runs]
    root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    differing = _differing_settings(runs)[:3]
    labels = []
    for run, path in zip(runs, paths):
        name = str(path.relative_to(root)) if path != root else path.name
        settings = ", ".join(f"{k.split('.')[-1]}={run['config'].get(k)}" for k in differing)
        labels.append(f"{name} ({settings})" if settings else name)
    return labels


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of every numeric metric over ``runs`` (as :func:`load_run` returns them).

    Returns:
        ``{"runs": [{"label", "path"}], "differing_settings": [...], "metrics": {name: {"mean", "std", "n", "min",
        "max"}}}``; ``std`` is the sample standard deviation (``None`` for n = 1); non-finite values are left out
        of n.
    """
    names = sorted({name for run in runs for name in run["metrics"]})
    stats: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [run["metrics"][name] for run in runs if math.isfinite(run["metrics"].get(name, math.nan))]
        if not values:
            continue
        stats[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values),
            "min": min(values),
            "max": max(values),
        }
    labels = _labels(runs)
    return {
        "runs": [{"label": label, "path": str(run["path"])} for label, run in zip(labels, runs)],
        "differing_settings": _differing_settings(runs),
        "metrics": stats,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = doc_parser("scripts/summarize_runs.py", __doc__)
    parser.add_argument("runs", nargs="+", help="run folders, multirun folders, metrics.json files or globs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG of the overlaid curves (default: summary.png beside the runs)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--force", action="store_true", help="replace an existing --plot / --out file")
    return parser


def _check_free(path: Path | None, force: bool, option: str) -> None:
    if path is not None and path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it, or {option} <another path>")


@one_line_errors
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print (and with ``--out`` write) the summary and draw the curves.

    Returns:
        :func:`summarize`'s dict, with ``unfinished`` (run folders left out: no ``metrics.json``) and ``plot``
        (the PNG, when drawn).
    """
    args = build_parser().parse_args(argv)
    if args.no_plot and args.plot:
        raise ConfigError("--plot and --no-plot contradict each other")
    folders, unfinished = find_runs(args.runs)
    runs = [load_run(folder) for folder in folders]
    summary = summarize(runs)
    summary["unfinished"] = [str(path) for path in unfinished]
    plot = None
    if not args.no_plot:
        paths = [run["path"].resolve() for run in runs]
        beside = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
        plot = args.plot or beside / "summary.png"
    _check_free(plot, args.force, "--plot")
    _check_free(args.out, args.force, "--out")
    if unfinished:
        names = ", ".join(str(path) for path in unfinished)
        print(
            f"note: left out {len(unfinished)} unfinished run(s) (no {METRICS_FILE}): {names}",
            file=sys.stderr,
        )
    histories = {run["label"]: r["history"] for run, r in zip(summary["runs"], runs) if r["history"]}
    if plot is not None and histories:
        from isnet.viz import plot_run_curves

        differing = ", ".join(summary["differing_settings"][:3])
        title = f"{len(runs)} runs" + (f" differing in {differing}" if differing else "")
        summary["plot"] = str(plot_run_curves(histories, plot, title=title))
    if args.out:
        write_json(args.out, summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary, skipped_plot=plot is not None and not histories)
    return summary


def _print_table(summary: dict[str, Any], skipped_plot: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    console = Console(file=sys.stdout)
    for run in summary["runs"]:
        print(f"{run['label']}: {run['path']}")
    differing = ", ".join(summary["differing_settings"])
    table = Table(title=f"{len(summary['runs'])} runs" + (f" differing in {differing}" if differing else ""))
    for column in ("metric", "mean", "± std", "n", "min", "max"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, row in summary["metrics"].items():
        table.add_row(
            name, fmt(row["mean"]), fmt(row["std"]), str(row["n"]), fmt(row["min"]), fmt(row["max"])
        )
    console.print(table)
    if "plot" in summary:
        print(f"Curves: {summary['plot']}", flush=True)
    elif skipped_plot:
        print(f"No curves: no run has a {HISTORY_FILE}", flush=True)


if __name__ == "__main__":
    main()
