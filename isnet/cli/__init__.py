"""Command-line entry points (``isnet-train``, ``isnet-eval``, ``isnet-predict``, ``isnet-convert``, ...).

The Hydra configs live in ``conf/`` at the repository root; :func:`compose` builds the same configuration in
Python. Every ``main`` is wrapped in :func:`one_line_errors`.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from isnet.errors import IsnetError

__all__ = ["CONFIG_DIR", "compose", "doc_parser", "error_line", "one_line_errors", "unique_dir"]

#: Known errors end a command with one line: the package's own, a missing/unreadable/corrupt file (named in the
#: message), and a config key that is missing or mistyped. Anything else is a bug and keeps its traceback.
KNOWN_ERRORS = (IsnetError, OSError, OmegaConfBaseException)
#: Environment switch that shows the traceback of known errors too.
DEBUG_ENV = "ISNET_DEBUG"

F = TypeVar("F", bound=Callable[..., Any])


def _known_name(name: str) -> bool:
    """Whether a type name printed by another process (``module.Type``) is a known error."""
    builtin = getattr(builtins, name, None)
    known_builtin = isinstance(builtin, type) and issubclass(builtin, OSError)
    return known_builtin or name.startswith(("isnet.errors.", "omegaconf.errors."))


def error_line(err: BaseException) -> str | None:
    """The one-line message of the known error ``err`` is or wraps, else ``None`` (a bug).

    Hydra's ``instantiate`` wraps constructor errors; a DataLoader worker or a spawned DDP process re-raises
    its error with the original traceback in the message: the line is then the original message.
    """
    cause: BaseException | None = err
    for _ in range(10):
        if cause is None:
            return None
        text = str(cause)
        if "Traceback (most recent call last):" in text:
            name, _, last = text.strip().splitlines()[-1].partition(": ")
            if isinstance(cause, KNOWN_ERRORS) or _known_name(name):
                return last
        elif isinstance(cause, OmegaConfBaseException):  # the first line; the rest repeats the key
            return text.splitlines()[0] if text else type(cause).__name__
        elif isinstance(cause, KNOWN_ERRORS):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            return " ".join(lines) or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return None


def doc_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser described by a command module's docstring: its first line, and the rest as the epilog."""
    description = doc.splitlines()[0].replace(" (``--help``)", "")
    epilog = "\n".join(doc.splitlines()[2:])
    formatter = argparse.RawDescriptionHelpFormatter
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=formatter, epilog=epilog
    )


def one_line_errors(main: F) -> F:
    """End a known error of ``main`` with one line ``error: <message>`` on stderr and exit code 1.

    With ``ISNET_DEBUG=1`` the error propagates with its traceback. Goes under ``@hydra.main``.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except Exception as err:
            line = error_line(err)
            if line is None or os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
                raise
            print(f"error: {line}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]


#: Absolute path of the Hydra config folder (``<repo>/conf``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

# Run folders handed out in this process: base path -> chosen free path.
_RUN_DIRS: dict[str, str] = {}


def unique_dir(base: str) -> str:
    """``base`` if no such folder exists yet, else the first free ``base_1``, ``base_2``, ...

    Remembered per process: Hydra and Lightning's DDP launcher re-resolve ``hydra.run.dir`` after creating it.
    """
    if base not in _RUN_DIRS:
        names = (f"{base}_{n}" if n else base for n in itertools.count())
        _RUN_DIRS[base] = next(name for name in names if not Path(name).exists())
    return _RUN_DIRS[base]


if not OmegaConf.has_resolver("unique_dir"):  # used by conf/hydra/default.yaml
    OmegaConf.register_new_resolver("unique_dir", unique_dir)


def compose(
    config_name: str = "train", overrides: Sequence[str] = (), output_dir: str | None = None
) -> DictConfig:
    """Compose a config from ``conf/`` as the command line would, without running anything.

    Args:
        config_name: ``train``, ``eval`` or ``predict``.
        overrides: Hydra overrides, e.g. ``["experiment=demo", "trainer.max_epochs=1"]``.
        output_dir: Value for ``paths.output_dir`` (the command line takes Hydra's run folder).

    Returns:
        The composed config (``hydra`` node removed, interpolations unresolved).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        HydraConfig().set_config(cfg)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg
