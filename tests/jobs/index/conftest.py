"""Fixtures for the index stage: a raw dataset written into the store with a collect-style manifest."""

from __future__ import annotations

from collections.abc import Mapping

from jobs.core.manifest import Manifest, StageWriter
from jobs.core.store import Store


def put_raw(store: Store, dataset: str, files: Mapping[str, bytes], params: dict | None = None) -> Manifest:
    """Write ``files`` (path under ``raw/<dataset>/`` -> bytes) and seal them as the collect stage does."""
    prefix = f"raw/{dataset}/"
    writer = StageWriter(store, "collect", prefix, params or {"source": "test"}, {})
    writer.begin()
    for rel, data in sorted(files.items()):
        writer.put_bytes(rel, data)
    return writer.commit({"source": "test", "files": len(files), "bytes": sum(map(len, files.values()))})
