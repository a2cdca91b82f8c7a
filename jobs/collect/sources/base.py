"""The interface every collector implements, and the sink it writes ``raw/<dataset>/`` files through.

A source declares its dependencies (importable module names) and answers ``is_available()``; it turns settings
into the parameters that define its result (the cache key) and then writes files through a ``RawSink``. The
stage (``jobs.collect.stage``) owns the manifest: a source never seals anything itself.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from jobs.core.errors import IrmsiaError
from jobs.core.filestore import FileStore
from jobs.core.hashing import pretty_json, sha256_bytes
from jobs.core.manifest import OutputRecord, StageWriter

if TYPE_CHECKING:
    from jobs.collect.settings import CollectSettings

log = logging.getLogger("irmsia.collect")

UNIT_FOLDER = "_collect/"
"""Under ``raw/<dataset>/``: one JSON record per completed unit (series, archive), a sidecar the index skips."""


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
        self.units_reused = 0
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _count(self, rec: OutputRecord) -> OutputRecord:
        self.bytes_written += rec.size
        return rec

    def put_file(self, name: str, path: str | Path, sha256: str | None = None) -> OutputRecord:
        """Upload one local file as ``raw/<dataset>/<name>``."""
        return self._count(self.writer.put_file(name, path, sha256=sha256))

    def move_file(self, name: str, path: str | Path, sha256: str | None = None,
                  size: int | None = None) -> OutputRecord:  # fmt: skip
        """Store a scratch file as ``raw/<dataset>/<name>`` and let it go (renamed, not copied, where possible)."""
        return self._count(self.writer.move_file(name, path, sha256=sha256, size=size))

    def put_bytes(self, name: str, data: bytes) -> OutputRecord:
        """Write a small object (a licence, a label CSV) as ``raw/<dataset>/<name>``."""
        return self._count(self.writer.put_bytes(name, data))

    def put_many(self, items: Iterable[tuple], workers: int | None = None, move: bool = False) -> list[OutputRecord]:
        """Upload ``(name, local path[, sha256[, size]])`` items in parallel (``--workers`` threads unless told
        otherwise).

        A known SHA-256 and size (computed while unpacking) spare the store a second read of the file; ``move``
        hands scratch files over to the store (renamed into a file store instead of copied).
        """
        padded = [(*i, None, None)[:4] for i in items]

        def put(i: tuple) -> OutputRecord:
            if move:
                return self.move_file(i[0], i[1], sha256=i[2], size=i[3])
            return self.put_file(i[0], i[1], sha256=i[2])

        if len(padded) <= 1 or (move and isinstance(self.store, FileStore)):
            # a move into a file store is a rename: threads would only add lock contention
            return [put(i) for i in padded]
        if workers is not None:
            with ThreadPoolExecutor(max_workers=max(1, min(workers, len(padded)))) as pool:
                return list(pool.map(put, padded))
        # one long-lived pool for the whole run: sources call this once per series or archive, and starting
        # threads for each call costs more than uploading a small series
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="upload")
        futures = [self._pool.submit(put, i) for i in padded]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the upload pool (the stage calls this when the source is done)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

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

    # -- units: idempotence across interrupted runs -----------------------------------------------------------
    @staticmethod
    def unit_name(unit_id: str) -> str:
        """The record's name for a unit id (a series UID, an archive name…), always a safe key."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", unit_id)[:120]
        return f"{UNIT_FOLDER}{safe}-{sha256_bytes(unit_id.encode())[:12]}.json"

    def reuse_unit(self, unit_id: str, validator: dict[str, Any]) -> dict[str, Any] | None:
        """Keep a unit an earlier run finished, if its record matches ``validator`` and every file is intact.

        A unit is recorded only after all its files are stored, and each file must still have the recorded
        size and SHA-256, so a partially stored unit is never taken for complete. Returns the record.
        """
        name = self.unit_name(unit_id)
        try:
            record = json.loads(self.store.get_bytes(self.prefix + name))
            if record.get("unit") != unit_id or record.get("validator") != validator:
                return None
            infos = [self.store.head(self.prefix + f["name"]) for f in record["files"]]
        except (IrmsiaError, ValueError, KeyError, TypeError):
            return None
        for info, f in zip(infos, record["files"], strict=True):
            if info.sha256 != f["sha256"] or info.size != f["size"]:
                return None
        for info in infos:
            self.writer.record(info)
        self.writer.record(self.store.head(self.prefix + name))
        self.units_reused += 1
        return record

    def seal_unit(self, unit_id: str, validator: dict[str, Any], records: Iterable[OutputRecord],
                  **extra: Any) -> None:  # fmt: skip
        """Record a unit as complete, after all its files are stored."""
        files = [
            {"name": r.key.removeprefix(self.prefix), "size": r.size, "sha256": r.sha256}
            for r in sorted(records, key=lambda r: r.key)
        ]
        record = {"unit": unit_id, "validator": validator, "files": files, **extra}
        self.put_bytes(self.unit_name(unit_id), pretty_json(record))


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
