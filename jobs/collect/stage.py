"""The collect stage: run one source into ``raw/<dataset>/`` and seal it with the manifest, or hit the cache."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from jobs.collect.settings import CollectSettings
from jobs.collect.sources import load_source
from jobs.collect.sources.base import RawSink
from jobs.collect.telemetry import record_collect
from jobs.core.layout import raw_prefix
from jobs.core.manifest import Manifest, StageWriter
from jobs.core.store import open_store

log = logging.getLogger("irmsia.collect")


def run(settings: CollectSettings) -> tuple[Manifest, bool]:
    """Collect the dataset; returns the manifest and whether it was a cache hit."""
    source = load_source(settings.source)
    params = {"source": source.name, **source.params(settings)}
    store = open_store(settings.common.store)
    prefix = raw_prefix(settings.dataset)
    writer = StageWriter(store, "collect", prefix, params, inputs={})
    if (hit := writer.cached(settings.common.force)) is not None:
        log.info("cache hit: %s/%s is sealed with the same parameters; skipping (--force to recollect)",
                 store.uri, prefix)  # fmt: skip
        return hit, True
    writer.begin()
    # scratch beside a file store's objects, so finished files are renamed into it rather than copied
    with tempfile.TemporaryDirectory(prefix="irmsia-collect-", dir=store._spool_dir()) as tmp:
        sink = RawSink(writer, Path(tmp), settings.workers)
        try:
            report = source.collect(settings, sink)
        finally:
            sink.close()
    outputs = writer.outputs
    summary = {
        "source": source.name,
        "files": len(outputs),
        "bytes": sum(o.size for o in outputs),
        "license": report.license,
        **report.details,
    }
    manifest = writer.commit(summary=summary)
    record_collect(manifest)
    log.info("collected %d files (%d bytes) into %s/%s", summary["files"], summary["bytes"], store.uri, prefix)
    return manifest, False
