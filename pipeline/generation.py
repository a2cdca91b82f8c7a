"""The registry of generated files: which repo-relative path each generator function writes.

Modules that generate files register them here (``@register(path)``); ``pipeline.generated`` imports those modules,
writes the files (``make generate``) and checks them for drift. This module imports nothing of the project, so any
layer may register a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
Generator = Callable[[], str]

GENERATED: dict[str, Generator] = {}
"""Repo-relative path -> the function returning the file's whole text."""
OWNED_DIRS: list[str] = []
"""Folders (repo-relative) in which every file must be in ``GENERATED``."""


def register(path: str) -> Callable[[Generator], Generator]:
    """Decorator: ``@register("docker/images.txt")`` on a function returning that file's text."""

    def add(generator: Generator) -> Generator:
        if path in GENERATED:
            raise ValueError(f"{path} is generated twice")
        GENERATED[path] = generator
        return generator

    return add
