"""File helpers for the ``scripts/prepare_<dataset>.py`` tools: safe unzip, write-once outputs, progress.

Every helper is idempotent and never replaces an existing file unless ``force`` is set: a second run
does nothing, and a file a user edited (or produced with another tool) is kept and reported.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from isnet.errors import DataError
from isnet.utils.io import atomic_path, atomic_write

__all__ = ["PrepareReport", "extract_zip", "progress", "write_text", "write_label_png"]

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


def progress(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr."""
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
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
    """Unpack ``zip_path`` into ``dest`` without replacing differing files unless ``force``.

    A file that already exists with the member's size counts as unchanged (so re-running is cheap).

    Args:
        zip_path: The archive.
        dest: Output folder.
        force: Overwrite existing files whose size differs.
        rename: Maps a member name to its output path relative to ``dest`` (``None`` skips the member).

    Returns:
        What was written, left alone and kept.

    Raises:
        FileNotFoundError: The archive does not exist.
        ValueError: A member would be written outside ``dest``.
    """
    if not zip_path.is_file():
        raise FileNotFoundError(f"Archive not found: {zip_path}")
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
            target = dest.joinpath(*rel.parts)
            if target.exists():
                if target.stat().st_size == member.file_size:
                    report.unchanged += 1
                    continue
                if not force:
                    report.kept.append(target)
                    continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            report.written += 1
    return report


def write_text(path: Path, text: str, force: bool = False) -> PrepareReport:
    """Write ``text`` unless the file already holds it; keep a differing file unless ``force``."""
    report = PrepareReport()
    if path.exists():
        if path.read_text() == text:
            report.unchanged += 1
            return report
        if not force:
            report.kept.append(path)
            return report
    atomic_write(path, text)
    report.written += 1
    return report


def write_label_png(path: Path, label: np.ndarray, force: bool = False) -> PrepareReport:
    """Write a uint8 label PNG unless an identical one exists; keep a differing one unless ``force``."""
    report = PrepareReport()
    if path.exists():
        try:
            with Image.open(path) as img:
                same = np.array_equal(np.array(img), label)
        except OSError:
            same = False
        if same:
            report.unchanged += 1
            return report
        if not force:
            report.kept.append(path)
            return report
    with atomic_path(path) as tmp:
        Image.fromarray(label.astype(np.uint8)).save(tmp)
    report.written += 1
    return report
