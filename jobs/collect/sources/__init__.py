"""The collectors, one module per source behind the interface in ``base.py`` (like pydicom's decoder plugins).

Each module defines ``SOURCE`` (its ``Source``) and the source's option group. ``load_source(name)`` checks the
source's optional dependencies (``kagglesdk``…) only when that source is used, and a missing one is a usage error
that says what to install; the modules themselves import no optional dependency at import time.
"""

from __future__ import annotations

import importlib

from jobs.collect.sources.base import Source, SourceOptions
from jobs.core.errors import UsageError

MODULES: dict[str, str] = {
    "demo": "demo",
    "local": "local",
    "url": "url",
    "tcia": "tcia",
    "kaggle": "kaggle",
    "nih": "nih",
    "idc": "idc",
    "dicomweb": "dicomweb",
}
"""Source name -> module under ``jobs.collect.sources`` that defines ``SOURCE``."""
SOURCES: tuple[str, ...] = tuple(MODULES)


def source_plugin(name: str) -> Source:
    """The ``Source`` called ``name`` (without checking its dependencies); ``UsageError`` if unknown."""
    if name not in MODULES:
        raise UsageError(f"--source {name!r}: use one of {', '.join(MODULES)}")
    source: Source = importlib.import_module(f"jobs.collect.sources.{MODULES[name]}").SOURCE
    return source


def options_types() -> dict[str, type[SourceOptions]]:
    """Every source's option group, by source name (for the parser, the DAG and the docs)."""
    return {name: source_plugin(name).options_type for name in MODULES}


def load_source(name: str) -> Source:
    """The source plugin called ``name``; ``UsageError`` if unknown or its dependencies are not installed."""
    source = source_plugin(name)
    if not source.is_available():
        missing = ", ".join(source.missing_dependencies())
        raise UsageError(f"--source {name} needs {missing}: install it with pip install 'irmsia-pipeline[collect]'")
    return source
