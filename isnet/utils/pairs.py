"""The one parser for ``int`` or ``(h, w)`` settings (crop size, stride, scale, image size)."""

from __future__ import annotations

import numbers
from typing import Any

from isnet.errors import ConfigError

__all__ = ["as_pair"]


def as_pair(value: Any, name: str) -> tuple[int, int]:
    """Return ``value`` (an int, or any two-item sequence of ints) as a ``(h, w)`` tuple of positive ints.

    Raises:
        ConfigError: ``value`` is not a positive int or a pair of positive ints; the message names ``name``.
    """
    items = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        items = () if isinstance(items, str | bytes) else tuple(items)
    except TypeError:
        items = ()
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in items
    ):
        raise ConfigError(f"{name} must be a positive int or a pair (h, w) of positive ints, got {value!r}")
    return int(items[0]), int(items[1])
