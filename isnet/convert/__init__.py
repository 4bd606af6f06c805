"""Checkpoint formats of other codebases. Only the public API and the CLI import this package."""

from isnet.convert.sssegmentation import (
    ConversionError,
    from_sssegmentation,
    infer_config,
    sssegmentation_to_isnet,
)

__all__ = ["ConversionError", "from_sssegmentation", "infer_config", "sssegmentation_to_isnet"]
