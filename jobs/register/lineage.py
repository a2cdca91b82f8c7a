"""Where a run's data came from, walked through the stage manifests: train -> split -> index -> collect.

The train manifest's ``inputs`` name the split manifest's content hash, whose inputs name the index manifest,
whose inputs name the collect manifest (dataset source and licence in its summary). The hashes recorded in
the run are authoritative; an upstream manifest that was since rewritten with different content is noted as
stale rather than trusted for counts. This module imports no torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from jobs.core.errors import IrmsiaError
from jobs.core.manifest import Manifest, read_manifest
from jobs.core.store import Store

log = logging.getLogger("irmsia.register")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Lineage:
    """Manifest hashes of the data a model was trained on, plus the facts a model card needs."""

    train_manifest_sha256: str
    split_manifest_sha256: str | None = None
    index_manifest_sha256: str | None = None
    raw_manifest_sha256: str | None = None
    dataset: str | None = None
    source: str | None = None
    license: str | None = None
    classes: list[str] = field(default_factory=list)
    patients_per_split: dict[str, int] = field(default_factory=dict)
    rows_per_split: dict[str, int] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _input(manifest: Manifest, top: str) -> tuple[str, str] | None:
    """The input of ``manifest`` under the top-level folder ``top`` (``splits``), as ``(prefix, hash)``."""
    found = sorted((p, h) for p, h in manifest.inputs.items() if p.startswith(f"{top}/"))
    return found[0] if found else None


def _upstream(store: Store, manifest: Manifest, top: str, stale: list[str]) -> tuple[str | None, Manifest | None]:
    """The recorded hash of the ``top`` input, and its manifest when it still has that exact content."""
    entry = _input(manifest, top)
    if entry is None:
        return None, None
    prefix, recorded = entry
    try:
        current = read_manifest(store, prefix)
    except IrmsiaError as exc:
        log.warning("cannot read the manifest at %s (%s); lineage below it is incomplete", prefix, exc)
        current = None
    if current is None or current.content_sha256 != recorded:
        stale.append(prefix)
        log.warning("%s was rewritten or removed since %s used it; its counts are left out", prefix, manifest.prefix)
        return recorded, None
    return recorded, current


def _per_split(stats: dict[str, Any], what: str) -> dict[str, int]:
    """``{"train": n, ...}`` from ``stats.json``'s ``splits.<split>.<what>`` or a summary's ``<what>.<split>``."""

    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else None

    out: dict[str, int] = {}
    for split in SPLITS:
        for value in (get(get(get(stats, "splits"), split), what), get(get(stats, what), split)):
            if isinstance(value, int) and not isinstance(value, bool):
                out[split] = value
                break
            if isinstance(value, dict) and isinstance(value.get("total"), int):
                out[split] = value["total"]
                break
    return out


def walk_lineage(store: Store, train: Manifest) -> Lineage:
    """Follow the manifests upstream of a train manifest as far as they still hold what the run used."""
    stale: list[str] = []
    split_sha, split = _upstream(store, train, "splits", stale)
    index_sha, index = _upstream(store, split, "index", stale) if split else (None, None)
    raw_sha, raw = _upstream(store, index, "raw", stale) if index else (None, None)
    patients: dict[str, int] = {}
    rows: dict[str, int] = {}
    classes: list[str] = []
    if split is not None:
        classes = list(split.summary.get("classes") or [])
        try:
            stats = json.loads(store.get_bytes(split.output("stats.json").key))
            patients, rows = _per_split(stats, "patients"), _per_split(stats, "rows")
        except (IrmsiaError, ValueError, AttributeError) as exc:
            log.warning("cannot read %sstats.json (%s); counts come from the split manifest", split.prefix, exc)
        patients = patients or _per_split(split.summary, "patients")
        rows = rows or _per_split(split.summary, "rows")
    dataset = None
    for m in (raw, index, split):
        if m is not None:
            dataset = m.prefix.strip("/").split("/", 1)[-1]
            break
    summary = raw.summary if raw else {}
    return Lineage(
        train_manifest_sha256=train.content_sha256,
        split_manifest_sha256=split_sha,
        index_manifest_sha256=index_sha,
        raw_manifest_sha256=raw_sha,
        dataset=dataset,
        source=summary.get("source"),
        license=summary.get("license"),
        classes=classes,
        patients_per_split=patients,
        rows_per_split=rows,
        stale=stale,
    )
