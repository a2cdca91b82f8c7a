"""The index stage: every image listed by the collect manifest becomes one row of ``index.parquet``.

Reads ``raw/<dataset>/_SUCCESS.json``, inspects the images it lists (sidecars excluded) in parallel, keeps
the first of identical contents, labels rows with the layout adapter, and writes ``index.parquet`` and
``quarantine.csv`` under ``index/<dataset>/``, sealed by the manifest. Outputs are built in a local
temporary folder and uploaded only once complete, so a failure leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from jobs.core.cpus import usable_cpus
from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import Manifest, read_output, require_manifest
from jobs.core.paths import index_prefix, raw_prefix
from jobs.core.progress import progress
from jobs.core.stage import PlannedStage, StageJob, StagePlan, StageResult
from jobs.core.store import Store, check_key
from jobs.index.identity import SameImage, is_lossy, patient_identity
from jobs.index.inspection import Inspection, Task
from jobs.index.label_table import LabelTable
from jobs.index.layouts import FileFacts, Layout, Unlabelled, labels_sidecar, layout_class
from jobs.index.masks import MaskPairs, pair_masks
from jobs.index.quarantine import DUPLICATE_PREFIX, QuarantineRecord, QuarantineWriter
from jobs.index.scan import scan
from jobs.index.settings import IndexSettings
from jobs.index.telemetry import record_index
from jobs.index.volumes import SeriesFinder, annotate, file_volume
from jobs.index.writer import SCHEMA, IndexWriter

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
    row.update(file_volume(item.key, item.dicom, item.geometry))
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
        self.masked = 0
        self.volumes = 0

    def add_row(self, row: dict[str, Any]) -> None:
        if row["label"] is None:
            self.unlabelled += 1
        else:
            self.classes[row["label"]] += 1
        self.formats[row["format"]] += 1
        self.modalities[row.get("modality") or "none"] += 1
        self.patients.add(row["patient_id"])
        self.masked += row.get("mask_key") is not None


def _masks(settings: IndexSettings, plan: IndexPlan, workers: int) -> tuple[dict[str, dict[str, Any]], list]:
    """Inspect the masks first: image path -> its mask columns, and the unusable masks' quarantine records."""
    usable: dict[str, Inspection] = {}
    refused: list[QuarantineRecord] = []
    for item in scan(settings.common.store, plan.mask_tasks, workers, settings.verify_pixels):
        if item.reason is None:
            usable[item.key] = item
        else:
            refused.append(QuarantineRecord(item.key, f"unusable segmentation mask: {item.reason}"))
    columns = {}
    for image, mask in plan.masks.mask_of.items():
        if (found := usable.get(plan.raw + mask)) is not None:
            columns[image] = {"mask_key": found.key, "mask_sha256": found.sha256}
    return columns, sorted(refused, key=lambda r: r.key, reverse=True)


def _inspect_all(
    settings: IndexSettings, plan: IndexPlan, events: TextIO, same_image: SameImage
) -> tuple[int, SeriesFinder]:
    """First pass: every file's outcome, in key order, as JSON lines in ``events`` (rows, or quarantine reasons,
    unusable masks' among them); ``same_image`` learns every SOPInstanceUID on the way. Returns the number of
    content duplicates and the DICOM series seen (which rows form a volume)."""
    first_of: dict[bytes, str] = {}  # content hash -> first key with it (dedup: first key in key order wins)
    duplicates = 0
    workers = settings.workers or usable_cpus()
    mask_columns, refused_masks = _masks(settings, plan, workers)
    series = SeriesFinder()
    results = plan.inspections() if plan.inspections else scan(settings.common.store, plan.tasks, workers,
                                                                settings.verify_pixels)  # fmt: skip
    raw, layout = plan.raw, plan.layout
    for item in progress(results, len(plan.tasks), f"index {raw}", unit="files"):
        while refused_masks and refused_masks[-1].key < item.key:  # keep quarantine.csv in key order
            refused = refused_masks.pop()
            events.write(json.dumps({"key": refused.key, "reason": refused.reason}) + "\n")
        if item.reason is not None:
            events.write(json.dumps({"key": item.key, "reason": item.reason}) + "\n")
            continue
        assert item.sha256 is not None
        digest = bytes.fromhex(item.sha256)
        if (first := first_of.get(digest)) is not None:
            events.write(json.dumps({"key": item.key, "reason": DUPLICATE_PREFIX + first}) + "\n")
            duplicates += 1
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
            events.write(json.dumps({"key": item.key, "reason": str(exc)}) + "\n")
            continue
        patient, group_by = patient_identity(header, verdict.patient_id, file_stem(facts.rel))
        row = _row(settings.dataset, item, verdict.label, patient)
        row["group_by"] = group_by
        row["lossy_compression"] = is_lossy(header)
        row["official_split"] = verdict.official_split
        row.update(mask_columns.get(facts.rel, {}))
        series.add(item.key, header)
        same_image.offer(row.get("sop_uid"), item.key, row["lossy_compression"])
        events.write(json.dumps({"row": row}) + "\n")
    for refused in reversed(refused_masks):
        events.write(json.dumps({"key": refused.key, "reason": refused.reason}) + "\n")
    return duplicates, series


def _index(settings: IndexSettings, plan: IndexPlan, workdir: Path) -> tuple[IndexWriter, QuarantineWriter, _Tally]:
    """Inspect every file, then write the rows and quarantine records in key order, one copy of each image.

    Which copy of an image to keep is known only once every file is seen, so the first pass spills its outcomes
    to a local file (memory stays flat) and the second writes them, the other copies as duplicates.
    """
    tally = _Tally()
    same_image = SameImage()
    events_path = workdir / "events.jsonl"
    with open(events_path, "w", encoding="utf-8") as events:
        tally.duplicates, series = _inspect_all(settings, plan, events, same_image)
    with (
        open(events_path, encoding="utf-8") as events,
        IndexWriter(workdir / "index.partial.parquet") as rows,
        QuarantineWriter(workdir / "quarantine.csv") as quarantine,
    ):
        for line in events:
            event = json.loads(line)
            if "reason" in event:
                quarantine.add(QuarantineRecord(event["key"], event["reason"]))
                continue
            row = event["row"]
            if (kept := same_image.kept(row.get("sop_uid"), row["key"])) is not None:
                reason = f"{DUPLICATE_PREFIX}{kept} (the same SOPInstanceUID {row['sop_uid']}, another encoding)"
                quarantine.add(QuarantineRecord(row["key"], reason))
                tally.duplicates += 1
                continue
            rows.add(row)
            tally.add_row(row)
    events_path.unlink()
    tally.volumes = annotate(rows.path, workdir / "index.parquet", series, SCHEMA)
    return rows, quarantine, tally


@dataclass(frozen=True, kw_only=True)
class IndexPlan(StagePlan):
    """What index will read: the collect manifest's images (tasks), its sidecars and the chosen layout."""

    raw: str
    tasks: list[Task]
    layout: Layout
    sidecars: int
    skipped: int
    masks: MaskPairs
    """Which files are segmentation masks, and of which image (``jobs.index.masks``)."""
    mask_tasks: list[Task]
    inspections: Callable[[], Iterator[Inspection]] | None = None
    """Where the inspections come from when not from scanning ``tasks`` here: a sharded run's gather step reads
    them from the sealed shards (``jobs.index.shards``), in the same order."""


class IndexStage(PlannedStage[IndexSettings, IndexPlan]):
    """``raw/<dataset>/`` -> ``index/<dataset>/index.parquet`` and ``quarantine.csv``."""

    name = "index"
    settings_type = IndexSettings

    def execute(self, settings: IndexSettings) -> StageResult:
        if settings.shard:
            from jobs.index.shards import execute_step

            return execute_step(self, settings)
        return super().execute(settings)

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
        masks = pair_masks(rels)
        mask_tasks = [Task(o.key, o.sha256, o.size) for o in images if masks.is_mask(o.key[len(raw) :])]
        tasks = [
            Task(o.key, o.sha256, o.size)
            for o in images
            if not layout.skip(o.key[len(raw) :]) and not masks.is_mask(o.key[len(raw) :])
        ]
        skipped = len(images) - len(tasks) - len(mask_tasks)
        log.info(
            "%s: %d files listed, %d sidecars, %d segmentation masks, %d skipped by layout %s, %d to index",
            raw, len(listed), len(sidecars), len(mask_tasks), skipped, layout.name, len(tasks),
        )  # fmt: skip
        params = {**settings.result_params(), "labels": labels_ref, "labels_sha256": labels_sha, "layout": layout.name}
        return IndexPlan(
            prefix=out, params=params, inputs={raw: collect}, raw=raw, tasks=tasks, layout=layout,
            sidecars=len(sidecars), skipped=skipped, masks=masks, mask_tasks=mask_tasks,
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
            job.writer.put_file("index.parquet", Path(tmp) / "index.parquet")
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
            "masks": tally.masked,
            "volumes": tally.volumes,
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
