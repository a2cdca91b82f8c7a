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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.core.cpus import usable_cpus
from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import Manifest, read_output, require_manifest
from jobs.core.paths import index_prefix, raw_prefix
from jobs.core.progress import progress
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store, check_key
from jobs.index.inspection import Inspection, Task
from jobs.index.label_table import LabelTable
from jobs.index.layouts import FileFacts, Layout, Unlabelled, labels_sidecar, layout_class
from jobs.index.quarantine import DUPLICATE_PREFIX, QuarantineRecord, QuarantineWriter
from jobs.index.scan import scan
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


def _load_labels(store: Store, collect: Manifest, value: str, raw: str) -> tuple[LabelTable, str]:
    """The labels CSV named by ``--labels`` (store key, key under the dataset, or local path) and its SHA-256.

    A CSV the collect manifest lists is read through it (verified against its recorded SHA-256).
    """
    for key in (value, raw + value):
        try:
            check_key(key)
        except UsageError:
            continue
        if key.startswith(raw) and any(o.key == key for o in collect.outputs):
            data = read_output(store, collect, key[len(raw) :])
            return LabelTable.parse(data, key), hashlib.sha256(data).hexdigest()
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


def _official_splits(store: Store, collect: Manifest, raw: str, lists: dict[str, str]) -> dict[str, str]:
    """File name -> split from the dataset's own split lists (sidecars under ``raw``, one file name a line)."""
    official: dict[str, str] = {}
    for rel, split in sorted(lists.items()):
        for line in read_output(store, collect, rel).decode("utf-8", "replace").splitlines():
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
            manufacturer=h.manufacturer,
            view_position=h.view_position,
            patient_sex=h.patient_sex,
            patient_age=h.patient_age,
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


def _index(settings: IndexSettings, plan: IndexPlan, workdir: Path) -> tuple[IndexWriter, QuarantineWriter, _Tally]:
    tally = _Tally()
    first_of: dict[bytes, str] = {}  # content hash -> first key with it (dedup: first key in key order wins)
    workers = settings.workers or usable_cpus()
    results = scan(settings.common.store, plan.tasks, workers, settings.verify_pixels)
    raw, layout = plan.raw, plan.layout
    with (
        IndexWriter(workdir / "index.parquet") as rows,
        QuarantineWriter(workdir / "quarantine.csv") as quarantine,
    ):
        for item in progress(results, len(plan.tasks), f"index {raw}", unit="files"):
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


@dataclass(frozen=True, kw_only=True)
class IndexPlan(StagePlan):
    """What index will read: the collect manifest's images (tasks), its sidecars and the chosen layout."""

    raw: str
    tasks: list[Task]
    layout: Layout
    sidecars: int
    skipped: int


class IndexStage(PlannedStage[IndexSettings, IndexPlan]):
    """``raw/<dataset>/`` -> ``index/<dataset>/index.parquet`` and ``quarantine.csv``."""

    name = "index"
    settings_type = IndexSettings

    def plan(self, settings: IndexSettings, store: Store) -> IndexPlan:
        raw, out = raw_prefix(settings.dataset), index_prefix(settings.dataset)
        collect = require_manifest(store, raw, "collect")
        listed = [o for o in collect.outputs if o.key.startswith(raw)]
        sidecars = [o.key[len(raw) :] for o in listed if is_sidecar(o.key)]
        images = [o for o in listed if not is_sidecar(o.key)]

        labels, labels_sha, labels_ref = None, None, settings.labels
        if labels_ref is None and (sidecar := labels_sidecar(settings.layout, sidecars)) is not None:
            labels_ref = raw + sidecar  # the dataset's own labels CSV, covered by the collect manifest's hash
        if labels_ref is not None:
            labels, labels_sha = _load_labels(store, collect, labels_ref, raw)
        rels = [o.key[len(raw) :] for o in images]
        chosen = layout_class(settings.layout, rels, labels)
        official = _official_splits(store, collect, raw, chosen.split_sidecars(sidecars))
        layout = chosen(labels, official)
        tasks = [Task(o.key, o.sha256, o.size) for o in images if not layout.skip(o.key[len(raw) :])]
        skipped = len(images) - len(tasks)
        log.info(
            "%s: %d files listed, %d sidecars, %d skipped by layout %s, %d to index",
            raw, len(listed), len(sidecars), skipped, layout.name, len(tasks),
        )  # fmt: skip
        params = {**settings.result_params(), "labels": labels_ref, "labels_sha256": labels_sha, "layout": layout.name}
        return IndexPlan(
            prefix=out, params=params, inputs={raw: collect}, raw=raw, tasks=tasks, layout=layout,
            sidecars=len(sidecars), skipped=skipped,
        )  # fmt: skip

    def produce(self, settings: IndexSettings, job: StageJob[IndexPlan]) -> dict[str, Any]:
        plan = job.plan
        if not plan.tasks:
            raise DataError(
                f"{plan.raw}_SUCCESS.json lists no image files (only sidecars or masks); check the collect output"
            )
        # Outputs are built locally and stored only once complete: a failure leaves the store as it was.
        with tempfile.TemporaryDirectory(prefix="irmsia-index-") as tmp:
            rows, quarantine, tally = _index(settings, plan, Path(tmp))
            if rows.rows == 0:
                reasons = ", ".join(f"{k} ({n})" for k, n in quarantine.kinds.most_common(3))
                raise DataError(
                    f"{plan.raw}: no usable image among {len(plan.tasks)} files, all quarantined: {reasons}; "
                    "check the dataset or the --labels CSV"
                )
            job.writer.put_file("index.parquet", rows.path)
            job.writer.put_file("quarantine.csv", quarantine.path)
        for line in quarantine.summary_lines(f"{job.writer.prefix}quarantine.csv"):
            log.warning("%s", line)
        return {
            "rows": rows.rows,
            "quarantined": quarantine.count,
            "duplicates": tally.duplicates,
            "skipped": plan.skipped,
            "sidecars": plan.sidecars,
            "layout": plan.layout.name,
            "patients": len(tally.patients),
            "classes": sorted(tally.classes),
            "unlabelled": tally.unlabelled,
            "per_class": dict(sorted(tally.classes.items())),
            "per_format": dict(sorted(tally.formats.items())),
            "per_modality": dict(sorted(tally.modalities.items())),
            "quarantine_reasons": dict(sorted(quarantine.kinds.items())),
        }

    def record_metrics(self, manifest: Manifest) -> None:
        record_index(manifest)

    def describe(self, manifest: Manifest) -> str:
        s = manifest.summary
        return (
            f"indexed {s['rows']} rows ({len(s['classes'])} classes), quarantined {s['quarantined']} "
            f"({s['duplicates']} duplicates) -> {manifest.prefix}"
        )


STAGE = IndexStage()


def run(settings: IndexSettings) -> StageResult:
    """Index ``raw/<dataset>/`` into ``index/<dataset>/``: the manifest, and whether it was a cache hit."""
    return STAGE.execute(settings)
