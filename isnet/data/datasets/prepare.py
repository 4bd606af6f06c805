"""File helpers for the ``scripts/prepare_<dataset>.py`` tools: safe unzip, write-once outputs, progress.

Every helper is idempotent and never replaces an existing file unless ``force`` is set: a second run
does nothing, and a file a user edited (or produced with another tool) is kept and reported.
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from isnet.errors import DataError
from isnet.utils.io import atomic_path

__all__ = [
    "PrepareReport",
    "extract_zip",
    "prepare_parser",
    "progress",
    "unzip_requested",
    "write_id_list",
    "write_label_png",
]

T = TypeVar("T")
console = Console(stderr=True, soft_wrap=True)


@dataclass
class PrepareReport:
    """Counts of what a preparation step did, and the user files it kept."""

    written: int = 0
    unchanged: int = 0
    kept: list[Path] = field(default_factory=list)

    def merge(self, other: PrepareReport) -> PrepareReport:
        """Add another report's counts to this one."""
        self.written += other.written
        self.unchanged += other.unchanged
        self.kept += other.kept
        return self

    def summary(self, what: str) -> str:
        """One line for the console; mentions ``--force`` when files were kept."""
        text = f"{what}: {self.written} written, {self.unchanged} already up to date"
        if self.kept:
            shown = ", ".join(str(p) for p in self.kept[:3]) + (" ..." if len(self.kept) > 3 else "")
            text += f", {len(self.kept)} existing file(s) differ and were kept ({shown}); use --force to overwrite"
        return text


def prepare_parser(doc: str | None, root: str, archive: str | None = None) -> argparse.ArgumentParser:
    """The options of the prepare scripts: ``--root``, ``--force`` and, given the ``archive`` name, ``--zip``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(root), help="output / dataset folder")
    parser.add_argument("--force", action="store_true", help="overwrite existing files that differ")
    if archive is not None:
        parser.add_argument("--zip", type=Path, default=None, help=f"{archive} (skip if already unzipped)")
    return parser


def unzip_requested(args: argparse.Namespace) -> PrepareReport:
    """Unpack ``args.zip`` into ``args.root`` when given (see :func:`prepare_parser`)."""
    return PrepareReport() if args.zip is None else extract_zip(args.zip, args.root, force=args.force)


def progress(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr."""
    description_column = TextColumn("[progress.description]{task.description}")
    columns = (description_column, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def extract_zip(
    zip_path: Path,
    dest: Path,
    force: bool = False,
    rename: Callable[[str], str | None] | None = None,
) -> PrepareReport:
    """Unpack ``zip_path`` into ``dest``; an existing file of the member's size counts as unchanged.

    Args:
        zip_path: The archive.
        dest: Output folder.
        force: Overwrite existing files whose size differs.
        rename: Maps a member name to its output path relative to ``dest`` (``None`` skips the member).

    Raises:
        DataError: A member would be written outside ``dest``.
    """
    report = PrepareReport()
    dest = dest.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        for member in progress(members, len(members), f"unzip {zip_path.name}"):
            name = rename(member.filename) if rename is not None else member.filename
            if name is None:
                continue
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise DataError(f"{zip_path}: member {member.filename!r} would be written outside {dest}.")
            report.merge(
                _write_once(
                    dest.joinpath(*rel.parts),
                    lambda target, size=member.file_size: target.stat().st_size == size,
                    partial(_copy_member, zf, member),
                    force,
                )
            )
    return report


def _copy_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path) -> None:
    with zf.open(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _write_once(
    path: Path, same: Callable[[Path], bool], write: Callable[[Path], None], force: bool
) -> PrepareReport:
    """Write ``path`` unless it exists and ``same(path)``; keep an existing, differing file unless ``force``."""
    report = PrepareReport()
    if path.exists() and same(path):
        report.unchanged += 1
    elif path.exists() and not force:
        report.kept.append(path)
    else:
        with atomic_path(path) as tmp:
            write(tmp)
        report.written += 1
    return report


def write_id_list(path: Path, ids: Sequence[str], force: bool = False) -> PrepareReport:
    """Write a split list, one id per line (what ``isnet.data.datasets.listing.read_id_list`` reads)."""
    text = "".join(f"{i}\n" for i in ids)
    return _write_once(path, lambda p: p.read_text() == text, lambda p: p.write_text(text), force)


def write_label_png(path: Path, label: np.ndarray, force: bool = False) -> PrepareReport:
    """Write a uint8 label PNG unless an identical one exists; keep a differing one unless ``force``."""

    def same(existing: Path) -> bool:
        try:
            with Image.open(existing) as img:
                return np.array_equal(np.array(img), label)
        except OSError:
            return False

    return _write_once(path, same, lambda p: Image.fromarray(label.astype(np.uint8)).save(p), force)
