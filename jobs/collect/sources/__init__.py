"""The collectors, one module per source behind the interface in ``base.py`` (like pydicom's decoder plugins).

``load_source(name)`` imports only the module asked for, so a source's optional dependencies (``kaggle``…) are
needed only when that source is used, and a missing one is a usage error that says what to install.
"""

from __future__ import annotations

import importlib

from jobs.collect.sources.base import Source
from jobs.core.errors import UsageError

# source name -> module under jobs.collect.sources that defines SOURCE
MODULES: dict[str, str] = {
    "demo": "demo",
    "local": "local",
    "url": "url",
    "tcia": "tcia",
    "kaggle": "kaggle",
    "nih": "nih",
}


def load_source(name: str) -> Source:
    """The source plugin called ``name``; ``UsageError`` if unknown or its dependencies are not installed."""
    if name not in MODULES:
        raise UsageError(f"--source {name!r}: use one of {', '.join(MODULES)}")
    try:
        module = importlib.import_module(f"jobs.collect.sources.{MODULES[name]}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("jobs.collect.sources."):
            raise UsageError(f"--source {name}: not implemented in this version") from exc
        raise
    source: Source = module.SOURCE
    if not source.is_available():
        missing = ", ".join(source.missing_dependencies())
        raise UsageError(f"--source {name} needs {missing}: install it with pip install 'irmsia-pipeline[collect]'")
    return source
