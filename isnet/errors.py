"""The errors the package raises on purpose.

Every ``isnet-*`` command and ``scripts/*.py`` ends one of these (and ``OSError``: a missing, unreadable or
corrupt file, named in the message) with one line ``error: <message>`` on stderr and exit code 1; any other
exception is a bug and keeps its traceback. ``ISNET_DEBUG=1`` shows the traceback of known errors too.
Each class also derives from the builtin type callers caught before it existed (``ValueError``).
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
