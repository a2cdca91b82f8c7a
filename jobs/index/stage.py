"""The index stage: every image listed by the collect manifest becomes one row of ``index.parquet``.

Reads ``raw/<dataset>/_SUCCESS.json``, inspects the images it lists (sidecars excluded) in parallel, keeps
the first of identical contents, labels rows with the layout adapter, and writes ``index.parquet`` and
``quarantine.csv`` under ``index/<dataset>/``, sealed by the manifest. Outputs are built in a local
temporary folder and uploaded only once complete, so a failure leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from jobs.core.errors import DataError, UsageError
from jobs.core.layout import index_prefix, raw_prefix
from jobs.core.logs import progress
from jobs.core.manifest import Manifest, StageWriter, require_manifest
from jobs.core.store import Store, check_key, open_store
from jobs.index.inspection import Inspection, Task
from jobs.index.label_table import LabelTable
from jobs.index.layouts import FileFacts, Layout, Unlabelled, labels_sidecar, layout_class
from jobs.index.quarantine import DUPLICATE_PREFIX, QuarantineRecord, QuarantineWriter
from jobs.index.scan import default_workers, scan
from jobs.index.settings import IndexSettings
from jobs.index.telemetry import record_index
from jobs.index.writer import IndexWriter

log = logging.getLogger("irmsia.index")

SIDECAR_PREFIXES = ("license", "readme")
SIDECAR_SUFFIXES = (".csv", ".txt", ".json", ".md", ".tcia")
IMAGE_SUFFIXES = (".nii.gz", ".dcm", ".dicom", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nii")


def file_stem(rel: str) -> str:
    """The file name without a known image extension: the patient of last resort (UID names keep their dots)."""
    name = rel.rsplit("/", 1)[-1]
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_sidecar(key: str) -> bool:
    """Per the contract, licence/readme files and CSV/TXT/JSON/MD/TCIA files are never indexed."""
    name = key.rsplit("/", 1)[-1].lower()
    return name.startswith(SIDECAR_PREFIXES) or name.endswith(SIDECAR_SUFFIXES)


def _load_labels(store: Store, value: str, raw: str) -> tuple[LabelTable, str]:
    """The labels CSV named by ``--labels`` (store key, key under the dataset, or local path) and its SHA-256."""
    for key in (value, raw + value):
        try:
            check_key(key)
        except UsageError:
            continue
        if store.exists(key):
            data = store.get_bytes(key)
            return LabelTable.parse(data, key), hashlib.sha256(data).hexdigest()
    path = Path(value).expanduser()
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--labels {value!r}: cannot read it ({exc.strerror})") from exc
        return LabelTable.parse(data, str(path)), hashlib.sha256(data).hexdigest()
    raise UsageError(
        f"--labels {value!r}: neither a key in {store.uri} (nor under {raw}) nor a local file; "
        "pass a store key like raw/<dataset>/labels.csv or a path"
    )


def _official_splits(store: Store, raw: str, lists: dict[str, str]) -> dict[str, str]:
    """File name -> split from the dataset's own split lists (sidecars under ``raw``, one file name a line)."""
    official: dict[str, str] = {}
    for rel, split in sorted(lists.items()):
        for line in store.get_bytes(raw + rel).decode("utf-8", "replace").splitlines():
            if name := line.strip():
                official.setdefault(name, split)
    return official


def _row(dataset: str, item: Inspection, label: str | None, patient: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": item.key,
        "dataset": dataset,
        "sha256": item.sha256,
        "size": item.size,
        "format": item.format,
        "label": label,
        "patient_id": patient,
    }
    if item.dicom is not None:
        h = item.dicom
        row.update(
            study_uid=h.study_uid,
            series_uid=h.series_uid,
            sop_uid=h.sop_uid,
            modality=h.modality,
            body_part=h.body_part,
            photometric=h.photometric,
            transfer_syntax=h.transfer_syntax,
            rows=h.rows,
            columns=h.columns,
            bits_allocated=h.bits_allocated,
            bits_stored=h.bits_stored,
            samples_per_pixel=h.samples_per_pixel,
            frames=h.frames if h.frames is not None else 1,
            pixel_spacing_row=h.pixel_spacing_row,
            pixel_spacing_col=h.pixel_spacing_col,
        )
    elif item.geometry is not None:
        g = item.geometry
        row.update(
            rows=g.rows,
            columns=g.columns,
            bits_allocated=g.bits,
            bits_stored=g.bits,
            samples_per_pixel=g.samples,
            frames=g.frames,
        )
    return row


class _Tally:
    """The summary counters, updated as rows and quarantine records stream past."""

    def __init__(self) -> None:
        self.classes: Counter[str] = Counter()
        self.formats: Counter[str] = Counter()
        self.modalities: Counter[str] = Counter()
        self.patients: set[str] = set()
        self.unlabelled = 0
        self.duplicates = 0

    def add_row(self, row: dict[str, Any]) -> None:
        if row["label"] is None:
            self.unlabelled += 1
        else:
            self.classes[row["label"]] += 1
        self.formats[row["format"]] += 1
        self.modalities[row.get("modality") or "none"] += 1
        self.patients.add(row["patient_id"])


def _index(
    settings: IndexSettings, tasks: list[Task], layout: Layout, raw: str, workdir: Path
) -> tuple[IndexWriter, QuarantineWriter, _Tally]:
    tally = _Tally()
    first_of: dict[bytes, str] = {}  # content hash -> first key with it (dedup: first key in key order wins)
    workers = settings.workers or default_workers()
    results = scan(settings.common.store, tasks, workers, settings.verify_pixels)
    with (
        IndexWriter(workdir / "index.parquet") as rows,
        QuarantineWriter(workdir / "quarantine.csv") as quarantine,
    ):
        for item in progress(results, len(tasks), "index", log):
            if item.reason is not None:
                quarantine.add(QuarantineRecord(item.key, item.reason))
                continue
            assert item.sha256 is not None
            digest = bytes.fromhex(item.sha256)
            if (first := first_of.get(digest)) is not None:
                quarantine.add(QuarantineRecord(item.key, DUPLICATE_PREFIX + first))
                tally.duplicates += 1
                continue
            first_of[digest] = item.key
            header = item.dicom
            facts = FileFacts(
                item.key,
                item.key[len(raw) :],
                header.patient_id if header else None,
                header.series_uid if header else None,
            )
            try:
                verdict = layout.assign(facts)
            except Unlabelled as exc:
                quarantine.add(QuarantineRecord(item.key, str(exc)))
                continue
            patient = facts.patient_id or verdict.patient_id or file_stem(facts.rel)
            row = _row(settings.dataset, item, verdict.label, patient)
            row["official_split"] = verdict.official_split
            rows.add(row)
            tally.add_row(row)
    return rows, quarantine, tally


def run(settings: IndexSettings) -> tuple[Manifest, bool]:
    """Index ``raw/<dataset>/`` into ``index/<dataset>/``; returns the manifest and whether it was a cache hit."""
    store = open_store(settings.common.store)
    raw, out = raw_prefix(settings.dataset), index_prefix(settings.dataset)
    collect = require_manifest(store, raw, "collect")
    listed = [o for o in collect.outputs if o.key.startswith(raw)]
    sidecars = [o.key[len(raw) :] for o in listed if is_sidecar(o.key)]
    images = [o for o in listed if not is_sidecar(o.key)]

    labels, labels_sha, labels_ref = None, None, settings.labels
    if labels_ref is None and (sidecar := labels_sidecar(settings.layout, sidecars)) is not None:
        labels_ref = raw + sidecar  # the dataset's own labels CSV, covered by the collect manifest's hash
    if labels_ref is not None:
        labels, labels_sha = _load_labels(store, labels_ref, raw)
    rels = [o.key[len(raw) :] for o in images]
    chosen = layout_class(settings.layout, rels, labels)
    official = _official_splits(store, raw, chosen.split_sidecars(sidecars))
    layout = chosen(labels, official)
    tasks = [Task(o.key, o.sha256, o.size) for o in images if not layout.skip(o.key[len(raw) :])]
    skipped = len(images) - len(tasks)
    log.info(
        "%s: %d files listed, %d sidecars, %d skipped by layout %s, %d to index",
        raw,
        len(listed),
        len(sidecars),
        skipped,
        layout.name,
        len(tasks),
    )
    params = {
        "dataset": settings.dataset,
        "labels": labels_ref,
        "labels_sha256": labels_sha,
        "layout": layout.name,
        "verify_pixels": settings.verify_pixels,
    }
    writer = StageWriter(store, "index", out, params, {raw: collect.content_sha256})
    if (hit := writer.cached(settings.common.force)) is not None:
        log.info(
            "cache hit: %s already indexes this input (%s rows); use --force to redo", out, hit.summary.get("rows")
        )
        return hit, True
    if not tasks:
        raise DataError(f"{raw}_SUCCESS.json lists no image files (only sidecars or masks); check the collect output")

    with tempfile.TemporaryDirectory(prefix="irmsia-index-") as tmp:
        rows, quarantine, tally = _index(settings, tasks, layout, raw, Path(tmp))
        if rows.rows == 0:
            reasons = ", ".join(f"{k} ({n})" for k, n in quarantine.kinds.most_common(3))
            raise DataError(
                f"{raw}: no usable image among {len(tasks)} files, all quarantined: {reasons}; "
                "check the dataset or the --labels CSV"
            )
        writer.begin()
        writer.put_file("index.parquet", rows.path)
        writer.put_file("quarantine.csv", quarantine.path)
    summary = {
        "rows": rows.rows,
        "quarantined": quarantine.count,
        "duplicates": tally.duplicates,
        "skipped": skipped,
        "sidecars": len(sidecars),
        "layout": layout.name,
        "patients": len(tally.patients),
        "classes": sorted(tally.classes),
        "unlabelled": tally.unlabelled,
        "per_class": dict(sorted(tally.classes.items())),
        "per_format": dict(sorted(tally.formats.items())),
        "per_modality": dict(sorted(tally.modalities.items())),
        "quarantine_reasons": dict(sorted(quarantine.kinds.items())),
    }
    manifest = writer.commit(summary)
    record_index(manifest)
    log.info(
        "indexed %d rows (%d classes), quarantined %d (%d duplicates) -> %s",
        rows.rows,
        len(tally.classes),
        quarantine.count,
        tally.duplicates,
        out,
    )
    for line in quarantine.summary_lines(f"{out}quarantine.csv"):
        log.warning("%s", line)
    return manifest, False
