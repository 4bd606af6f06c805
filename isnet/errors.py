"""The errors the package raises on purpose.

Every ``isnet-*`` command ends one of these (and ``OSError``) with one line ``error: <message>`` on stderr and
exit code 1 (see :func:`isnet.cli.one_line_errors`). Each class also derives from ``ValueError``, which callers
caught before these existed.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "IsnetError"]


class IsnetError(Exception):
    """A known problem with a checkpoint, a setting or the data; the message names the file or setting."""


class CheckpointError(IsnetError, ValueError):
    """A checkpoint file cannot be used; the message names the file and the reason."""


class ConfigError(IsnetError, ValueError):
    """A setting has a value the package cannot use; the message names the setting and the value."""


class DataError(IsnetError, ValueError):
    """The data on disk does not fit the config (labels, sizes, class count, empty folder); names the file."""
