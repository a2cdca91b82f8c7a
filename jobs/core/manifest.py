"""The stage contract: ``_SUCCESS.json`` manifests, cache keys, and the writer that puts the manifest last.

A stage's output exists for the next stage only once its manifest is written, and the manifest is written
after every output it lists. A rerun whose cache key (inputs' content hashes, result-changing parameters,
code version) equals the stored manifest's is a cache hit and is skipped; ``--force`` recomputes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from jobs import __version__
from jobs.core.errors import DataError, ObjectNotFound
from jobs.core.hashing import CHUNK, pretty_json, sha256_json
from jobs.core.metrics import stage_metrics
from jobs.core.paths import MANIFEST_NAME, manifest_key
from jobs.core.store import HashingReader, ObjectInfo, Part, Store

SCHEMA_VERSION = 1
log = logging.getLogger("irmsia.manifest")


def code_version() -> str:
    """The version that goes into manifests and cache keys: a new release invalidates cached outputs."""
    return __version__


@dataclass(frozen=True, kw_only=True)
class OutputRecord:
    """One object a stage wrote: key (relative to the store root), size and SHA-256."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What ``_SUCCESS.json`` holds. ``content_sha256`` identifies the result (timings excluded)."""

    stage: str
    """Stage name: collect, index, split, train or register."""
    prefix: str
    """The output prefix this manifest seals, e.g. ``index/demo/``."""
    cache_key: str
    """Hash of inputs, result-changing parameters and code version."""
    params: dict[str, Any]
    """The parameters that change the result (never secrets)."""
    inputs: dict[str, str]
    """Input prefix -> that input manifest's ``content_sha256``."""
    outputs: tuple[OutputRecord, ...]
    """Every object written, sorted by key."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Headline numbers for people and the runner's summary (rows, classes, metrics…)."""
    code_version: str = field(default_factory=code_version)
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    schema: int = SCHEMA_VERSION

    @property
    def content_sha256(self) -> str:
        """Stable identity of the result: equal for byte-identical outputs of the same computation."""
        return self._content_sha256(self._output_dicts())

    def _content_sha256(self, outputs: list[dict[str, Any]]) -> str:
        identity = {"stage": self.stage, "prefix": self.prefix, "cache_key": self.cache_key, "outputs": outputs}
        return sha256_json(identity)

    def _output_dicts(self) -> list[dict[str, Any]]:
        # Built by hand: dataclasses.asdict deep-copies, which costs more than the hashing for big manifests.
        return [{"key": o.key, "size": o.size, "sha256": o.sha256} for o in self.outputs]

    def output(self, name: str) -> OutputRecord:
        """The output named ``name`` relative to the prefix (``index.parquet``); ``DataError`` if absent."""
        key = self.prefix + name
        for rec in self.outputs:
            if rec.key == key:
                return rec
        raise DataError(f"{manifest_key(self.prefix)} lists no output {name!r}; rerun the {self.stage} stage")

    def to_json(self) -> bytes:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: see _output_dicts
        data["outputs"] = self._output_dicts()
        data["content_sha256"] = self._content_sha256(data["outputs"])
        return pretty_json(data)

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        try:
            data = json.loads(raw)
            data.pop("content_sha256", None)
            data["outputs"] = tuple(OutputRecord(**o) for o in data["outputs"])
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # AttributeError: JSON not an object
            raise DataError(f"{where}: not a valid stage manifest ({exc}); rerun the stage with --force") from exc


def compute_cache_key(stage: str, params: Mapping[str, Any], inputs: Mapping[str, str], version: str) -> str:
    """The cache key: what the result depends on, and nothing else (no timestamps, no secrets)."""
    return sha256_json({"stage": stage, "params": dict(params), "inputs": dict(inputs), "code_version": version})


def read_manifest(store: Store, prefix: str) -> Manifest | None:
    """The manifest sealing ``prefix``, or ``None`` if the stage never finished there."""
    key = manifest_key(prefix)
    try:
        raw = store.get_bytes(key)
    except ObjectNotFound:
        return None
    return Manifest.from_json(raw, key)


def require_manifest(store: Store, prefix: str, producer: str) -> Manifest:
    """The manifest at ``prefix``, or a ``DataError`` telling the user which stage to run first."""
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise DataError(
            f"no {MANIFEST_NAME} at {store.uri}/{prefix}: its output is missing or unfinished; "
            f"run irmsia-{producer} first"
        )
    return manifest


def open_output(store: Store, manifest: Manifest, name: str) -> BinaryIO:
    """Stream the output ``name`` of ``manifest``, checked against the SHA-256 the manifest records for it.

    The manifest, not the store's own per-object record, is what a reader trusts: a file rewritten through a new
    inode or a plain S3 PUT loses the store's record but never the manifest's. A mismatch raises
    ``ChecksumMismatch`` (exit 3) naming the key when the stream reaches its end; an output the manifest does not
    list, or one listed but missing, is a ``DataError``.
    """
    record = manifest.output(name)
    try:
        raw = store.open_read(record.key, verify=False)
    except ObjectNotFound as exc:
        raise DataError(
            f"{record.key} is listed in {manifest_key(manifest.prefix)} but missing; rerun the {manifest.stage} "
            "stage with --force"
        ) from exc
    hint = f"it changed after {manifest_key(manifest.prefix)} sealed it; rerun the {manifest.stage} stage with --force"
    return io.BufferedReader(HashingReader(raw, record.sha256, record.key, hint=hint))


def read_output(store: Store, manifest: Manifest, name: str) -> bytes:
    """The whole output ``name`` of ``manifest``, verified against the manifest (small objects only)."""
    with open_output(store, manifest, name) as fh:
        return fh.read()


def fetch_output(store: Store, manifest: Manifest, name: str, path: str | Path) -> Path:
    """Download the output ``name`` of ``manifest`` to ``path``, verified against the manifest before it lands."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with open_output(store, manifest, name) as src, open(part, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StageWriter:
    """Writes one stage's outputs under ``prefix``, tracking each, then seals them with the manifest.

    Usage::

        writer = StageWriter(store, "index", "index/demo/", params, {"raw/demo/": m.content_sha256})
        if (hit := writer.cached(force)) is not None:
            return hit
        writer.begin()
        writer.put_bytes("quarantine.csv", data)
        manifest = writer.commit(summary={"rows": 10})
    """

    def __init__(
        self,
        store: Store,
        stage: str,
        prefix: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str],
    ) -> None:
        manifest_key(prefix)  # validates the trailing '/'
        self.store = store
        self.stage = stage
        self.prefix = prefix
        self.params = dict(params)
        self.inputs = dict(sorted(inputs.items()))
        self.cache_key = compute_cache_key(stage, self.params, self.inputs, code_version())
        self._outputs: dict[str, OutputRecord] = {}
        self._begun = False
        self._started = time.monotonic()
        self._started_at = _now()

    # -- cache ----------------------------------------------------------------------------------------------
    def cached(self, force: bool = False) -> Manifest | None:
        """The existing manifest if it has this cache key and all its outputs are present; else ``None``.

        First sweeps the store's scratch of what killed runs left, so even a cache hit leaves none behind.
        """
        self.store.sweep_scratch()
        if force:
            return None
        existing = read_manifest(self.store, self.prefix)
        if existing is None or existing.cache_key != self.cache_key:
            return None
        present = {o.key: o.size for o in self.store.list(self.prefix)}
        if any(present.get(o.key) != o.size for o in existing.outputs):
            log.warning("cached manifest at %s lists missing or resized outputs; recomputing", self.prefix)
            return None
        return existing

    def begin(self) -> None:
        """Withdraw any old manifest first: while outputs are rewritten, nothing under the prefix is trusted.

        Every write (and ``commit``) begins on its own, so a stage that fails before writing anything leaves the
        previous sealed result as it was; call it explicitly before writing under the prefix by other means.
        """
        if not self._begun:
            self.store.delete(manifest_key(self.prefix))
            self._begun = True

    # -- outputs --------------------------------------------------------------------------------------------
    def _rel(self, name: str) -> str:
        return self.prefix + name

    def record(self, info: ObjectInfo) -> OutputRecord:
        """Track an object written under the prefix by other means (it must carry its SHA-256)."""
        if not info.key.startswith(self.prefix) or info.key == manifest_key(self.prefix):
            raise ValueError(f"{info.key!r} is not an output of {self.prefix!r}")
        self.begin()
        if info.sha256 is None:
            info = self.store.head(info.key)
        rec = OutputRecord(key=info.key, size=info.size, sha256=info.sha256 or "")
        self._outputs[rec.key] = rec
        return rec

    def _written(self, info: ObjectInfo) -> OutputRecord:
        """Track an object this writer just wrote, counting its bytes in the stage's metrics."""
        rec = self.record(info)
        stage_metrics().bytes_written.inc(rec.size)
        return rec

    def put_bytes(self, name: str, data: bytes, sha256: str | None = None) -> OutputRecord:
        """Write ``data`` under the prefix; ``sha256``, when the caller hashed it already, is not computed again."""
        self.begin()
        return self._written(self.store.put_bytes(self._rel(name), data, sha256=sha256))

    def put_parts(self, name: str, parts: Sequence[Part], sha256: str | None = None) -> OutputRecord:
        """Write ``b"".join(parts)`` under the prefix without joining them (``Store.put_parts``)."""
        self.begin()
        return self._written(self.store.put_parts(self._rel(name), parts, sha256=sha256))

    def put_file(self, name: str, path: str | Path, sha256: str | None = None) -> OutputRecord:
        self.begin()
        return self._written(self.store.put_file(self._rel(name), path, sha256=sha256))

    def move_file(self, name: str, path: str | Path, sha256: str | None = None,
                  size: int | None = None) -> OutputRecord:  # fmt: skip
        """Store a scratch file and let it go (renamed into a file store instead of copied)."""
        self.begin()
        return self._written(self.store.move_file(self._rel(name), path, sha256=sha256, size=size))

    def put_many(self, items: Iterable[tuple[str, str | Path]], workers: int = 16) -> list[OutputRecord]:
        self.begin()
        infos = self.store.put_many(((self._rel(name), path) for name, path in items), workers=workers)
        return [self._written(i) for i in infos]

    @contextmanager
    def open_write(self, name: str) -> Iterator[BinaryIO]:
        self.begin()
        with self.store.open_write(self._rel(name)) as fh:
            yield fh
        self._written(self.store.head(self._rel(name)))

    @property
    def outputs(self) -> list[OutputRecord]:
        return [self._outputs[k] for k in sorted(self._outputs)]

    # -- seal -----------------------------------------------------------------------------------------------
    def commit(self, summary: Mapping[str, Any] | None = None, prune: bool = True) -> Manifest:
        """Remove leftovers not written this time, then write the manifest last."""
        self.begin()
        if prune:
            keep = set(self._outputs) | {manifest_key(self.prefix)}
            for key in self.store.keys(self.prefix):
                if key not in keep:
                    self.store.delete(key)
        manifest = Manifest(
            stage=self.stage,
            prefix=self.prefix,
            cache_key=self.cache_key,
            params=self.params,
            inputs=self.inputs,
            outputs=tuple(self.outputs),
            summary=dict(summary or {}),
            started_at=self._started_at,
            finished_at=_now(),
            duration_s=round(time.monotonic() - self._started, 3),
        )
        self.store.put_bytes(manifest_key(self.prefix), manifest.to_json())
        return manifest
