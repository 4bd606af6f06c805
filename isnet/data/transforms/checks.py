"""Argument checks of the transforms' constructors (a ``ConfigError`` naming the setting and the value)."""

from __future__ import annotations

import numbers
from typing import Any

from isnet.errors import ConfigError

__all__ = ["check_label", "check_mean_std", "check_probability", "check_range"]


def _reals(name: str, value: Any, length: int, what: str, low: float = float("-inf")) -> tuple[float, ...]:
    """``value`` as ``length`` floats, each a real number > ``low``, else a ``ConfigError`` saying ``what``."""
    try:
        items = () if isinstance(value, str | bytes) else tuple(value)
    except TypeError:
        items = ()
    if len(items) != length or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and v > low for v in items
    ):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return tuple(float(v) for v in items)


def check_range(name: str, value: Any) -> tuple[float, float]:
    """A ``(low, high)`` pair with ``0 < low <= high``, as floats."""
    low, high = _reals(name, value, 2, "a (low, high) pair with 0 < low <= high", low=0.0)
    if low > high:
        raise ConfigError(f"{name} must be a (low, high) pair with 0 < low <= high, got {value!r}")
    return low, high


def check_probability(name: str, value: Any) -> float:
    """A probability in ``[0, 1]``, as a float."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1):
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_label(name: str, value: Any) -> int:
    """A label value that fits a uint8 mask (``0..255``), e.g. the ignore index."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= 255):
        raise ConfigError(f"{name} must be an int in [0, 255], got {value!r}")
    return int(value)


def check_mean_std(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (RGB) normalisation statistics in 0-255 units, as two tuples of three floats."""
    return (
        _reals("mean", mean, 3, "three numbers (R, G, B) in 0-255 units"),
        _reals("std", std, 3, "three positive numbers (R, G, B) in 0-255 units", low=0.0),
    )
