"""The interface every collector implements, and the sink it writes ``raw/<dataset>/`` files through.

A source declares its dependencies (importable module names) and answers ``is_available()``; it turns settings
into the parameters that define its result (the cache key) and then writes files through a ``RawSink``. The
stage (``jobs.collect.stage``) owns the manifest: a source never seals anything itself.
"""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from jobs.core.errors import IrmsiaError
from jobs.core.manifest import OutputRecord, StageWriter

if TYPE_CHECKING:
    from jobs.collect.settings import CollectSettings

log = logging.getLogger("irmsia.collect")


@dataclass
class CollectReport:
    """What a source tells the stage about its result, beyond the files themselves."""

    license: str | None = None
    """The dataset's licence (SPDX id, name or the text's first line), when the source states one."""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra summary fields (series, archives, origin URL…) for the manifest's summary."""


class RawSink:
    """Where a source puts files: keys relative to ``raw/<dataset>/``, each recorded for the manifest."""

    def __init__(self, writer: StageWriter, workdir: Path, workers: int) -> None:
        self.writer = writer
        self.store = writer.store
        self.prefix = writer.prefix
        self.workdir = workdir
        """A private scratch folder for downloads and generated files; removed when the stage ends."""
        self.workers = workers
        self.bytes_written = 0
        self.files_reused = 0

    def _count(self, rec: OutputRecord) -> OutputRecord:
        self.bytes_written += rec.size
        return rec

    def put_file(self, name: str, path: str | Path, sha256: str | None = None) -> OutputRecord:
        """Upload one local file as ``raw/<dataset>/<name>``."""
        return self._count(self.writer.put_file(name, path, sha256=sha256))

    def put_bytes(self, name: str, data: bytes) -> OutputRecord:
        """Write a small object (a licence, a label CSV) as ``raw/<dataset>/<name>``."""
        return self._count(self.writer.put_bytes(name, data))

    def put_many(self, items: Iterable[tuple[str, str | Path]]) -> list[OutputRecord]:
        """Upload many ``(name, local path)`` pairs in parallel with the ``--workers`` pool."""
        return [self._count(r) for r in self.writer.put_many(items, workers=self.workers)]

    def reuse(self, name: str, sha256: str, size: int | None = None) -> bool:
        """Keep ``name`` from an earlier (maybe interrupted) run if the store holds it with this checksum.

        Only an object whose recorded SHA-256 matches counts, so a partial upload is never taken for complete.
        """
        key = self.prefix + name
        try:
            info = self.store.head(key)
        except IrmsiaError:
            return False
        if info.sha256 != sha256 or (size is not None and info.size != size):
            return False
        self.writer.record(info)
        self.files_reused += 1
        return True


class Source(ABC):
    """One collector. Subclasses set ``name`` and ``dependencies`` and implement the two methods."""

    name: ClassVar[str]
    dependencies: ClassVar[tuple[str, ...]] = ()
    """Importable top-level modules the source needs beyond the core (``("kaggle",)``)."""

    def missing_dependencies(self) -> list[str]:
        return [m for m in self.dependencies if importlib.util.find_spec(m) is None]

    def is_available(self) -> bool:
        """Whether every dependency is installed."""
        return not self.missing_dependencies()

    @abstractmethod
    def params(self, settings: CollectSettings) -> dict[str, Any]:
        """The parameters that define the result (they go into the cache key and the manifest; never secrets).

        Validates the source's inputs: raise ``UsageError`` naming the flag when they are wrong.
        """

    @abstractmethod
    def collect(self, settings: CollectSettings, sink: RawSink) -> CollectReport:
        """Write the dataset's files through ``sink``."""
