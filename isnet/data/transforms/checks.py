"""Argument checks shared by the transforms (clear ``ValueError`` naming the setting)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

from isnet.errors import ConfigError

__all__ = ["check_label", "check_mean_std", "check_probability", "check_range"]


def _as_tuple(name: str, value: Any, length: int, what: str) -> tuple[Any, ...]:
    """Turn a list/tuple/ListConfig into a tuple of ``length`` items or raise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    items = tuple(value)
    if len(items) != length:
        raise ConfigError(f"{name} must be {what}, got {value!r} ({len(items)} values)")
    return items


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(name: str, value: Any) -> tuple[float, float]:
    """Check a ``(low, high)`` range with ``0 < low <= high``.

    Args:
        name: Setting name used in the error message.
        value: The user value.

    Returns:
        The range as a tuple of Python floats.
    """
    items = _as_tuple(name, value, 2, "a (low, high) pair with 0 < low <= high")
    if not all(_is_real(v) for v in items) or not 0 < items[0] <= items[1]:
        raise ConfigError(f"{name} must be a (low, high) pair with 0 < low <= high, got {value!r}")
    return float(items[0]), float(items[1])


def check_probability(name: str, value: Any) -> float:
    """Check a probability in ``[0, 1]``."""
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_label(name: str, value: Any) -> int:
    """Check a label value that must fit a uint8 mask (``0..255``), e.g. the ignore index."""
    if not _is_int(value) or not 0 <= value <= 255:
        raise ConfigError(f"{name} must be an int in [0, 255], got {value!r}")
    return int(value)


def check_mean_std(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Check per-channel (RGB) normalisation statistics in 0-255 units.

    Returns:
        ``(mean, std)`` as tuples of three floats.
    """
    mean_t = _as_tuple("mean", mean, 3, "three numbers (R, G, B) in 0-255 units")
    std_t = _as_tuple("std", std, 3, "three positive numbers (R, G, B) in 0-255 units")
    if not all(_is_real(v) for v in mean_t):
        raise ConfigError(f"mean must be three numbers (R, G, B) in 0-255 units, got {mean!r}")
    if not all(_is_real(v) and v > 0 for v in std_t):
        raise ConfigError(f"std must be three positive numbers (R, G, B) in 0-255 units, got {std!r}")
    return tuple(float(v) for v in mean_t), tuple(float(v) for v in std_t)
