"""Plain-dict records of the objects that Hydra builds as partials (``_target_`` + ``_partial_: true``).

The optimizer and loss configs (``conf/optimizer/*.yaml``, ``conf/loss/*.yaml``) reach :class:`ISNetModule` as
``functools.partial`` objects when Hydra instantiates the ``model`` config, and as dicts when
``ISNetModule.load_from_checkpoint`` passes the saved hyperparameters back. Both become the same dict of plain
values, e.g. ``{"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 6e-05}``, so the checkpoint's
hyperparameters load with ``weights_only=True``. A ``_target_`` is looked up in one trusted namespace
(``torch.optim`` or :mod:`isnet.models.losses`), never imported from a name a checkpoint supplies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from isnet.errors import ConfigError

__all__ = ["as_spec", "check_number", "resolve_target"]


def check_number(name: str, value: Any, allow_zero: bool = False) -> None:
    """ConfigError unless ``value`` is a finite number > 0 (``>= 0`` with ``allow_zero``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")


def _plain(value: Any) -> Any:
    """Lists for sequences (tuples, OmegaConf lists), dicts for mappings: what a checkpoint stores safely."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def as_spec(value: Mapping[str, Any] | functools.partial, setting: str) -> dict[str, Any]:
    """The ``{"_target_", "_partial_": True, **arguments}`` dict of a Hydra partial or of such a dict.

    Args:
        value: ``functools.partial(cls, **arguments)`` or a mapping with a ``_target_``.
        setting: The setting's name for error messages (``optimizer``, ``loss``).
    """
    if isinstance(value, functools.partial):
        if value.args:
            raise ConfigError(f"{setting}: give the arguments by name, got positional {value.args!r}")
        func = value.func
        spec = {"_target_": f"{func.__module__}.{func.__qualname__}", "_partial_": True, **value.keywords}
    elif isinstance(value, Mapping):
        spec = dict(value)
        if not isinstance(spec.get("_target_"), str):
            raise ConfigError(f"{setting} needs a _target_ (a class name), got {value!r}")
        if spec.get("_partial_", True) is not True:
            raise ConfigError(
                f"{setting} is completed by the module: it needs _partial_: true, got {value!r}"
            )
        spec["_partial_"] = True
    else:
        raise ConfigError(f"{setting} must be a config with _target_ (or a functools.partial), got {value!r}")
    return _plain(spec)


def resolve_target(
    spec: Mapping[str, Any], setting: str, namespace: ModuleType, base: type
) -> tuple[str, type]:
    """The public name ``<namespace>.<Class>`` and the class that ``spec["_target_"]`` names.

    The class must be an attribute of ``namespace`` and a subclass of ``base``; ``torch.optim.sgd.SGD`` (a
    class's defining module, as a partial records it) is accepted and named ``torch.optim.SGD``.
    """
    target = spec["_target_"]
    prefix = namespace.__name__ + "."
    name = target.rsplit(".", 1)[-1]
    found = getattr(namespace, name, None) if target.startswith(prefix) else None
    if not (isinstance(found, type) and issubclass(found, base) and found is not base):
        allowed = sorted(
            prefix + n
            for n in getattr(namespace, "__all__", dir(namespace))
            if isinstance(getattr(namespace, n, None), type)
            and issubclass(getattr(namespace, n), base)
            and getattr(namespace, n) is not base
        )
        raise ConfigError(f"{setting}._target_={target!r} is not one of {allowed}")
    return prefix + name, found
