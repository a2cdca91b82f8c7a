"""Where a run's data came from, walked through the stage manifests: train -> split -> index(es) -> collect(s).

The train manifest's ``inputs`` name the split manifest's content hash, whose inputs name the index manifests
(several for a ``--merge``), whose inputs name the collect manifests (source, release, licence and
de-identification in their summaries and parameters). Every manifest on the way is recorded with its SHA-256. The
hashes recorded in the run are authoritative; an upstream manifest that was since rewritten with different content
is noted as stale rather than trusted for counts. A fine-tuned run's parameters also name the weights it started
from (``init``), registered or not, so a model's lineage goes on through the model it was fine-tuned from. This
module imports no torch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from jobs.core.errors import IrmsiaError
from jobs.core.manifest import Manifest, read_manifest, read_output
from jobs.core.store import Store

log = logging.getLogger("irmsia.register")
SPLITS = ("train", "val", "test")
RELEASE_KEYS = (
    "ref", "version", "competition", "etag", "release", "collection", "collections", "doi", "date", "latest_release",
    "series_fingerprint", "idc_version", "idc_index_data", "series_versions", "studies_fingerprint", "url", "sha256",
    "archives", "archive_md5", "metadata", "manifest_series", "tree_sha256", "modality", "body_part", "seed",
    "patients", "studies", "series", "pin",
)  # fmt: skip
"""Collect parameters and summary fields that say which release of the data was collected (a Kaggle ref and
version, a TCIA collection with its DOIs and release date, NIH's archive MD5s, an IDC release...): whatever a
source records under these names, in this order."""
ATTRIBUTION_CHARS = 2000
"""How much of a dataset's LICENSE text the metadata keeps (the attribution it asks for is at its top)."""


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
    studies_per_split: dict[str, int] = field(default_factory=dict)
    series_per_split: dict[str, int] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)
    """Every manifest on the way, train first: ``stage``, ``prefix``, ``content_sha256``, ``inputs``."""
    datasets: list[dict[str, Any]] = field(default_factory=list)
    """Per collected dataset: ``dataset``, ``source``, ``release``, ``license``, ``attribution`` (the LICENSE text's
    start), ``deidentification`` (profile, options and PHI scan, when collected with ``--deidentify``)."""
    stale: list[str] = field(default_factory=list)
    init: dict[str, Any] | None = None
    """The weights the run was fine-tuned from (``irmsia-train --init``), as its manifest's parameters record them:
    ``kind``, ``source`` (a path or ``registry:NAME:VERSION``), ``sha256``; ``None``: trained from scratch."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _inputs(manifest: Manifest, top: str) -> list[tuple[str, str]]:
    """The inputs of ``manifest`` under the top-level folder ``top`` (``splits``), as ``(prefix, hash)``, sorted."""
    return sorted((p, h) for p, h in manifest.inputs.items() if p.startswith(f"{top}/"))


def _upstream(store: Store, manifest: Manifest, top: str, stale: list[str]) -> list[tuple[str, Manifest | None]]:
    """Each ``top`` input's recorded hash, with its manifest when it still has that exact content."""
    found: list[tuple[str, Manifest | None]] = []
    for prefix, recorded in _inputs(manifest, top):
        try:
            current = read_manifest(store, prefix)
        except IrmsiaError as exc:
            log.warning("cannot read the manifest at %s (%s); lineage below it is incomplete", prefix, exc)
            current = None
        if current is None or current.content_sha256 != recorded:
            stale.append(prefix)
            log.warning("%s was rewritten or removed since %s used it; its counts are left out", prefix,
                        manifest.prefix)  # fmt: skip
            current = None
        found.append((recorded, current))
    return found


def _link(manifest: Manifest) -> dict[str, Any]:
    return {"stage": manifest.stage, "prefix": manifest.prefix, "content_sha256": manifest.content_sha256,
            "inputs": dict(sorted(manifest.inputs.items()))}  # fmt: skip


def attribution(store: Store, raw: Manifest) -> str | None:
    """The start of the dataset's own LICENSE text (read through its manifest), the attribution it asks for."""
    for record in sorted(raw.outputs, key=lambda o: o.key):
        rel = record.key[len(raw.prefix) :]
        if "/" not in rel and rel.upper().startswith(("LICENSE", "LICENCE")):
            try:
                text = read_output(store, raw, rel).decode("utf-8", "replace").strip()
            except IrmsiaError as exc:
                log.warning("cannot read %s (%s); the licence text is left out", record.key, exc)
                return None
            return text[:ATTRIBUTION_CHARS] or None
    return None


def dataset_facts(store: Store, raw: Manifest) -> dict[str, Any]:
    """What a model card says about one collected dataset: source, release, licence, attribution, de-id."""
    values = {**raw.params, **raw.summary}
    release = {k: values[k] for k in RELEASE_KEYS if values.get(k) not in (None, "", [], {})}
    deid = raw.summary.get("deidentification")
    return {
        "dataset": raw.prefix.strip("/").split("/", 1)[-1],
        "source": raw.summary.get("source"),
        "release": release,
        "license": raw.summary.get("license"),
        "attribution": attribution(store, raw),
        "deidentification": {k: deid[k] for k in ("profile", "standard", "options", "phi_scan") if k in deid}
        if isinstance(deid, dict)
        else None,
        "manifest_sha256": raw.content_sha256,
    }


def series_of_test_set(store: Store, split: Manifest) -> list[str]:
    """The SeriesInstanceUIDs of the split's test set (read through its manifest), sorted; ``[]`` without any."""
    try:
        rows = csv.DictReader(io.StringIO(read_output(store, split, "test.csv").decode()))
        return sorted({uid for row in rows if (uid := (row.get("series_uid") or "").strip())})
    except (IrmsiaError, KeyError, UnicodeDecodeError) as exc:
        log.warning("cannot read %stest.csv (%s); its series are left out", split.prefix, exc)
        return []


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
    chain = [_link(train)]
    splits = _upstream(store, train, "splits", stale)
    split_sha, split = splits[0] if splits else (None, None)
    indexes = _upstream(store, split, "index", stale) if split else []
    raws = [raw for _, index in indexes if index is not None for raw in _upstream(store, index, "raw", stale)]
    for manifest in [split, *(m for _, m in indexes), *(m for _, m in raws)]:
        if manifest is not None:
            chain.append(_link(manifest))
    counts: dict[str, dict[str, int]] = {what: {} for what in ("patients", "rows", "studies", "series")}
    classes: list[str] = []
    if split is not None:
        classes = list(split.summary.get("classes") or [])
        try:
            stats = json.loads(read_output(store, split, "stats.json"))
            counts = {what: _per_split(stats, what) for what in counts}
        except (IrmsiaError, ValueError, AttributeError, KeyError) as exc:
            log.warning("cannot read %sstats.json (%s); counts come from the split manifest", split.prefix, exc)
        for what in ("patients", "rows"):
            counts[what] = counts[what] or _per_split(split.summary, what)
    datasets = [dataset_facts(store, raw) for _, raw in raws if raw is not None]
    dataset = None
    for m in (*(r for _, r in raws), *(i for _, i in indexes), split):
        if m is not None:
            dataset = m.prefix.strip("/").split("/", 1)[-1]
            break
    first = datasets[0] if datasets else {}
    licences = sorted({str(d["license"]) for d in datasets if d.get("license")})
    return Lineage(
        train_manifest_sha256=train.content_sha256,
        split_manifest_sha256=split_sha,
        index_manifest_sha256=indexes[0][0] if indexes else None,
        raw_manifest_sha256=raws[0][0] if raws else None,
        dataset=dataset,
        source=first.get("source"),
        license="; ".join(licences) or None,
        classes=classes,
        patients_per_split=counts["patients"],
        rows_per_split=counts["rows"],
        studies_per_split=counts["studies"],
        series_per_split=counts["series"],
        manifests=chain,
        datasets=datasets,
        stale=stale,
        init=train.params.get("init"),
    )
