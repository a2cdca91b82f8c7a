"""The interface every collector implements, its option groups, and the sink it writes ``raw/<dataset>/`` through.

A source declares its dependencies (importable module names) and answers ``is_available()``; it owns its options
(a ``SourceOptions`` dataclass: its flags, defaults, bounds and which of them are workflow parameters), turns them
into the parameters that define its result (the cache key) and then writes files through a ``RawSink``. The stage
(``jobs.collect.stage``) owns the manifest: a source never seals anything itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from jobs.core.errors import DataError, IrmsiaError
from jobs.core.hashing import canonical_json, pretty_json, sha256_bytes
from jobs.core.manifest import OutputRecord, StageWriter
from jobs.core.progress import track
from jobs.core.settings import Options, option

if TYPE_CHECKING:  # the filter (pydicom, the profile's tables) is loaded only with --deidentify, by the stage
    from jobs.collect.deid.filter import DeidFilter, Verdict

log = logging.getLogger("irmsia.collect")

UNIT_FOLDER = "_collect/"
"""Under ``raw/<dataset>/``: one JSON record per completed unit (series, archive), a sidecar the index skips."""


def key_segment(value: Any, fallback: str) -> str:
    """One safe key segment from a header value (PatientIDs may hold spaces, never '/')."""
    text = str(value or "").strip().replace("/", "_").replace("\\", "_")
    return text if text and text not in (".", "..") else fallback


def stored_records(futures: Iterable[Future[OutputRecord | None]]) -> list[OutputRecord]:
    """The records of a unit's files stored in parallel, in submission order; ``None`` (a file that
    de-identification leaves out) is dropped. The first failure cancels the files not yet started and is raised."""
    pending = list(futures)
    try:
        return [r for f in pending if (r := f.result()) is not None]
    except BaseException:
        for f in pending:
            f.cancel()
        raise


@dataclass
class CollectReport:
    """What a source tells the stage about its result, beyond the files themselves."""

    license: str | None = None
    """The dataset's licence (SPDX id, name or the text's first line), when the source states one."""
    details: dict[str, Any] = field(default_factory=dict)
    """Extra summary fields (series, archives, origin URL…) for the manifest's summary."""


class RawSink:
    """Where a source puts files: keys relative to ``raw/<dataset>/``, each recorded for the manifest.

    With ``deid`` (``--deidentify``) every file passes the de-identification filter first: a DICOM file is stored
    de-identified or not at all, whichever method the source stores it with (so every source gets it), and a
    unit's record names the de-identification it went through, so a unit stored without it is never reused.
    """

    def __init__(self, writer: StageWriter, workdir: Path, workers: int, deid: DeidFilter | None = None) -> None:
        self.writer = writer
        self.deid = deid
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
        self.transfers = threading.BoundedSemaphore(workers)
        """``--workers`` downloads at once: a source that fetches more units at a time than that (to store one while
        the next downloads) holds one of these around each download, so it never opens more connections."""
        self.reuse_only: Callable[[str], str] | None = None
        """Set by a sharded collect's gather, where every unit must be reused from the record its shard sealed: a
        unit that is not is then an error, never downloaded here; given the unit's record id, it says what to run."""

    def public_uid(self, uid: str) -> str:
        """``uid`` as the store may show it (an object name, a series list): with ``--deidentify`` the pseudonym
        the de-identified headers carry, so a study's files keep one folder and no original UID is stored."""
        return self.deid.pseudonyms.uid(uid) if self.deid is not None and uid.strip() else uid

    def public_id(self, value: str) -> str:
        """A patient ID or accession number as the store may show it: with ``--deidentify`` the pseudonym the
        de-identified headers carry for it."""
        return self.deid.pseudonyms.identifier(value) if self.deid is not None and value.strip() else value

    def _count(self, rec: OutputRecord) -> OutputRecord:
        self.bytes_written += rec.size
        return rec

    def _screened(self, name: str, data: bytes) -> Verdict | None:
        """The de-identification filter's verdict on a file (``None`` without ``--deidentify``)."""
        return self.deid.admit(name, data) if self.deid is not None else None

    def put_file(self, name: str, path: str | Path, sha256: str | None = None) -> OutputRecord | None:
        """Upload one local file as ``raw/<dataset>/<name>`` (``None``: de-identification left it out)."""
        if self.deid is not None:
            verdict = self._screened(name, Path(path).read_bytes())
            if verdict is not None and verdict.data is None:
                return None if verdict.left_out or verdict.findings else self._count(self.writer.put_file(name, path))
            if verdict is not None and verdict.data is not None:
                return self._count(self.writer.put_bytes(name, verdict.data))
        return self._count(self.writer.put_file(name, path, sha256=sha256))

    def move_file(self, name: str, path: str | Path, sha256: str | None = None,
                  size: int | None = None) -> OutputRecord | None:  # fmt: skip
        """Store a scratch file as ``raw/<dataset>/<name>`` and let it go (renamed, not copied, where possible)."""
        if self.deid is not None:
            record = self.put_file(name, path)
            Path(path).unlink(missing_ok=True)
            return record
        return self._count(self.writer.move_file(name, path, sha256=sha256, size=size))

    def put_bytes(self, name: str, data: bytes) -> OutputRecord | None:
        """Write a small object (a licence, a label CSV) as ``raw/<dataset>/<name>``."""
        verdict = self._screened(name, data)
        if verdict is not None and (verdict.left_out or verdict.findings):
            return None
        return self._count(self.writer.put_bytes(name, verdict.data if verdict and verdict.data else data))

    def put_record(self, name: str, data: bytes) -> OutputRecord:
        """Write one of the stage's own records (``_collect/``, ``_deid/``): never a source's file, never screened."""
        return self._count(self.writer.put_bytes(name, data))

    def put_many(self, items: Iterable[tuple], workers: int | None = None, move: bool = False) -> list[OutputRecord]:
        """Upload ``(name, local path[, sha256[, size]])`` items in parallel (``--workers`` threads unless told
        otherwise).

        A known SHA-256 and size (computed while unpacking) spare the store a second read of the file; ``move``
        hands scratch files over to the store (renamed into a file store instead of copied).
        """
        padded = [(*i, None, None)[:4] for i in items]
        with track(f"store {len(padded)} files in {self.prefix}", len(padded), unit="files") as task:

            def put(i: tuple) -> OutputRecord | None:
                if move:
                    rec = self.move_file(i[0], i[1], sha256=i[2], size=i[3])
                else:
                    rec = self.put_file(i[0], i[1], sha256=i[2])
                task.advance()
                return rec

            if len(padded) <= 1 or (move and self.store.is_local and self.deid is None):
                # a move into a file store is a rename: threads would only add lock contention
                stored = [put(i) for i in padded]
            elif workers is not None:
                with ThreadPoolExecutor(max_workers=max(1, min(workers, len(padded)))) as pool:
                    stored = [f.result() for f in [pool.submit(contextvars.copy_context().run, put, i)
                                                   for i in padded]]  # fmt: skip
            else:
                # one long-lived pool for the whole run: sources call this once per series or archive, and starting
                # threads for each call costs more than uploading a small series
                with self._lock:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="upload")
                # each upload in a copy of this thread's context: the unit being de-identified goes with it
                futures = [self._pool.submit(contextvars.copy_context().run, put, i) for i in padded]
                stored = [f.result() for f in futures]
        return [record for record in stored if record is not None]  # de-identification may leave some out

    def close(self) -> None:
        """Stop the upload pool (the stage calls this when the source is done)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- units: idempotence across interrupted runs -----------------------------------------------------------
    @staticmethod
    def unit_name(unit_id: str) -> str:
        """The record's name for a unit id (a series UID, an archive name…), always a safe key."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", unit_id)[:120]
        return f"{UNIT_FOLDER}{safe}-{sha256_bytes(unit_id.encode())[:12]}.json"

    def unit_scope(self) -> contextlib.AbstractContextManager[Any]:
        """Around the storing of one unit: with ``--deidentify`` the filter tallies its files apart, and
        ``seal_unit`` keeps the tally in the unit's record, so that a run reusing the unit reports the same.

        Every unit is stored inside one: ``UnitSource`` opens it per unit, ``store_download`` (url, kaggle) and
        the DICOMweb source per series. Inside an open scope it joins that one (a unit source's unit stored
        through ``store_download``), so a unit is always one tally."""
        if self.deid is None:
            return contextlib.nullcontext()
        from jobs.collect.deid.filter import current_unit

        return self.deid.unit() if current_unit() is None else contextlib.nullcontext()

    def reuse_unit(self, unit_id: str, validator: dict[str, Any]) -> dict[str, Any] | None:
        """Keep a unit an earlier run finished, if its record matches ``validator`` and every file is intact.

        A unit is recorded only after all its files are stored, and each file must still have the recorded
        size and SHA-256, so a partially stored unit is never taken for complete. Returns the record.
        """
        record = self._reuse(self.record_id(unit_id), self._validator(validator))
        if record is None and self.reuse_only is not None:
            unit = self.record_id(unit_id)
            raise DataError(f"{self.prefix}: unit {unit} is not stored complete; {self.reuse_only(unit)}")
        return record

    def _reuse(self, unit_id: str, validator: dict[str, Any]) -> dict[str, Any] | None:
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
        if self.deid is not None and isinstance(tally := record.get("deidentification"), dict):
            # (a unit stored outside unit_scope has no tally: reused as before, its files then not in the report)
            sidecars = {n: self.store.get_bytes(self.prefix + n) for n in tally.get("sidecars", ())}
            self.deid.absorb(tally, sidecars)
        for info in infos:
            self.writer.record(info)
        self.writer.record(self.store.head(self.prefix + name))
        self.units_reused += 1
        return record

    def seal_unit(self, unit_id: str, validator: dict[str, Any], records: Iterable[OutputRecord],
                  **extra: Any) -> None:  # fmt: skip
        """Record a unit as complete, after all its files are stored."""
        unit_id = self.record_id(unit_id)
        files = [
            {"name": r.key.removeprefix(self.prefix), "size": r.size, "sha256": r.sha256}
            for r in sorted(records, key=lambda r: r.key)
        ]
        record = {"unit": unit_id, "validator": self._validator(validator), "files": files, **extra}
        if self.deid is not None:
            from jobs.collect.deid.filter import current_unit

            if (tally := current_unit()) is not None:
                record["deidentification"] = tally.to_json()
        self.put_record(self.unit_name(unit_id), pretty_json(record))

    def record_id(self, unit_id: str) -> str:
        """The unit as its record names it: with ``--deidentify`` a keyed pseudonym, since a unit id may be an
        original series UID (``tcia:<uid>``), which must not reach an object name or a stored record."""
        return f"deid-{self.deid.pseudonyms.identifier(unit_id)}" if self.deid is not None else unit_id

    def _validator(self, validator: dict[str, Any]) -> dict[str, Any]:
        """A unit's validator, naming the de-identification its files went through (if any)."""
        if self.deid is None:
            return validator
        # keyed, since a validator may name an original UID (a TCIA series): compared for equality only
        return {"keyed": self.deid.pseudonyms.identifier(canonical_json(validator).decode()),
                "deidentification": self.deid.fingerprint}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SourceOptions(Options):
    """A source's own options (its flags, validated once); the base of every source's option group."""

    @classmethod
    def from_values(cls, values: dict[str, Any], env: dict[str, str] | Any) -> Self:
        """The options from their parsed values; a source adds what it reads from the environment here."""
        return cls.build(values)


@dataclass(frozen=True, kw_only=True)
class TransferOptions(SourceOptions):
    """How a network source retries and waits (every HTTP source has these)."""

    retries: int = option(
        5, minimum=1, maximum=100, help="attempts per HTTP request before the source counts as unavailable (exit 75)"
    )
    backoff: float = option(
        1.0,
        minimum=0.0,
        maximum=600.0,
        help="seconds to wait before the first retry; doubles each time (Retry-After wins)",
    )
    timeout: float = option(60.0, above=0.0, maximum=3600.0, help="seconds to wait for a connection or a chunk of data")


DEFAULT_MAX_EXTRACT_BYTES = 64 << 30
"""64 GiB: larger than any recommended dataset, small enough to stop a zip bomb."""


@dataclass(frozen=True, kw_only=True)
class ArchiveOptions(TransferOptions):
    """A network source that unpacks archives."""

    max_extract_bytes: int = option(
        DEFAULT_MAX_EXTRACT_BYTES,
        minimum=1,
        help="refuse archives whose members add up to more than this many bytes uncompressed (zip bombs)",
    )


OptionsT = TypeVar("OptionsT", bound=SourceOptions)


class Source(ABC, Generic[OptionsT]):
    """One collector. Subclasses set ``name``, ``dependencies`` and ``options_type`` and implement ``collect``."""

    name: ClassVar[str]
    dependencies: ClassVar[tuple[str, ...]] = ()
    """Importable top-level modules the source needs beyond the core (``("kaggle",)``)."""
    options_type: ClassVar[type[SourceOptions]]
    """The source's option group."""

    def missing_dependencies(self) -> list[str]:
        return [m for m in self.dependencies if importlib.util.find_spec(m) is None]

    def is_available(self) -> bool:
        """Whether every dependency is installed."""
        return not self.missing_dependencies()

    def result_params(self, options: OptionsT) -> dict[str, Any]:
        """The parameters that define the result (they go into the cache key and the manifest; never secrets):
        the options marked ``result``, unless the source knows better (a fingerprint of what it will read).

        May validate what the options point at: raise ``UsageError`` naming the flag when it is wrong.
        """
        return options.result_params()

    @abstractmethod
    def collect(self, options: OptionsT, sink: RawSink) -> CollectReport:
        """Write the dataset's files through ``sink``."""
