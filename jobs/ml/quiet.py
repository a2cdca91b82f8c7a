"""Silence the decoders' own warnings and log records while one file is inspected.

pydicom, pylibjpeg and Pillow warn (``warnings``) and log (``logging``) about every oddity they meet, some at
error level with tracebacks. For the index and for train's decoding those are per-file findings: the reason a
file is refused says what is wrong, and the stage logs one line per reason. Nothing the decoders say reaches stderr.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

DECODER_LOGGERS = ("pydicom", "pylibjpeg", "libjpeg", "openjpeg", "rle", "PIL", "nibabel", "tifffile")
"""The loggers of the libraries the index parses and decodes with."""


@functools.cache
def _loggers() -> tuple[logging.Logger, ...]:
    return tuple(logging.getLogger(name) for name in DECODER_LOGGERS)


@contextmanager
def quiet_decoders() -> Iterator[None]:
    """Within the block, warnings are ignored and the decoders' loggers (and their children, such as
    ``pydicom.pixels.decoders.base``, which logs every decode failure with its traceback) drop their records."""
    loggers = _loggers()
    before = [(logger.disabled, logger.propagate) for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.disabled, logger.propagate = True, False  # children's records stop here, unhandled
        try:
            yield
        finally:
            for logger, (disabled, propagate) in zip(loggers, before, strict=True):
                logger.disabled, logger.propagate = disabled, propagate
