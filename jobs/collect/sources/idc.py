"""``--source idc``: DICOM series from NCI Imaging Data Commons' public buckets, chosen in its versioned index.

Series are selected offline in the IDC index ``idc-index-data`` installs (``jobs.collect.idc_index``): by
``--collection`` (IDC's id ``lidc_idri`` or TCIA's name ``LIDC-IDRI``), ``--patient``, ``--modality``,
``--body-part``, ``--sql`` (any SELECT over IDC's tables returning ``SeriesInstanceUID``), ``--manifest`` (a file of
SeriesInstanceUIDs, IDC's s5cmd manifest of ``s3://<bucket>/<crdc_series_uuid>/*`` lines, or the ``idc_series.csv``
an earlier collect wrote: the last two name exact series versions) and ``--max-patients`` (the first N patients in
PatientID order); derived series (segmentations, annotations) only with ``--analysis-results``. ``--idc-version N``
selects from an earlier release (the index keeps every release's series versions), so a rerun can ask for exactly
what an earlier one collected; the manifest's summary records the release (``idc_version``) and idc-index-data's
version, and ``idc_series.csv`` every series' ``crdc_series_uuid``.

Files are downloaded anonymously with our own S3 client (``jobs.collect.s3public``: path-style, unsigned,
``--workers`` objects at once, each resumed with Range + If-Range and checked against its listed size, ETag (MD5 or
multipart) and any ``x-amz-checksum-*``); a series' listing must hold the index's ``instanceCount`` files adding up
to its ``series_size_MB``, or the stage fails with exit 3 before sealing. Files are stored as
``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<crdc_instance_uuid>.dcm`` (the layout TCIA collects use, so
the index stage's ``tcia`` layout applies), with ``idc_series.csv`` and a ``LICENSE`` listing each licence and DOI.
A series already stored completely is not downloaded again (its ``crdc_series_uuid`` names its content), and an
instance already in the store with its listed size is kept. Endpoint: ``IRMSIA_IDC_ENDPOINT`` (default
``https://s3.amazonaws.com``; IDC's Google mirror ``https://storage.googleapis.com`` serves other bucket names).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from jobs.collect.idc_index import Selection, open_index
from jobs.collect.s3public import PublicS3, S3Object, check_endpoint
from jobs.collect.sources.base import CollectReport, RawSink, Source, TransferOptions, key_segment
from jobs.collect.sources.url import http_client
from jobs.collect.transfer import TransferStats
from jobs.core.errors import DataError, IrmsiaError, UsageError
from jobs.core.hashing import sha256_json
from jobs.core.logs import progress
from jobs.core.manifest import OutputRecord
from jobs.core.settings import option

log = logging.getLogger("irmsia.collect")

IDC_ENDPOINT = "https://s3.amazonaws.com"
SERIES_CSV = "idc_series.csv"
SERIES_FIELDS = ("folder", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "collection_id", "Modality",
                 "BodyPartExamined", "instanceCount", "files", "bytes", "crdc_series_uuid", "aws_bucket",
                 "license_short_name", "source_DOI", "idc_version")  # fmt: skip
_UID = re.compile(r"^\d+(\.\d+)+$")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_S3_SERIES = re.compile(rf"s3://[a-z0-9.-]+/({_UUID})/", re.IGNORECASE)


@dataclass(frozen=True)
class IdcManifest:
    """What a ``--manifest`` file names: series by UID, or exact series versions by ``crdc_series_uuid``."""

    series_uids: tuple[str, ...] = ()
    crdc_series_uuids: tuple[str, ...] = ()


def read_idc_manifest(path: str) -> IdcManifest:
    """SeriesInstanceUIDs (one a line, .tcia style), s5cmd ``cp s3://bucket/<uuid>/* .`` lines, or a CSV with a
    ``crdc_series_uuid`` or ``SeriesInstanceUID`` column (the ``idc_series.csv`` of an earlier collect)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"--manifest {path!r}: cannot read it ({exc.strerror}); give a manifest file") from exc
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if "," in first and ("crdc_series_uuid" in first or "SeriesInstanceUID" in first):
        rows = list(csv.DictReader(io.StringIO(text)))
        uuids = tuple(
            sorted({r["crdc_series_uuid"].strip() for r in rows if (r.get("crdc_series_uuid") or "").strip()})
        )
        uids = () if uuids else tuple(sorted({r["SeriesInstanceUID"].strip() for r in rows
                                              if (r.get("SeriesInstanceUID") or "").strip()}))  # fmt: skip
        found = IdcManifest(uids, uuids)
    else:
        uuids = tuple(sorted({m.group(1).lower() for m in _S3_SERIES.finditer(text)}))
        uids = tuple(sorted({ln.strip() for ln in text.splitlines() if _UID.match(ln.strip())}))
        found = IdcManifest(uids, uuids)
    if not (found.series_uids or found.crdc_series_uuids):
        raise UsageError(f"--manifest {path!r}: lists no SeriesInstanceUID, s3://bucket/<crdc_series_uuid>/ URL or "
                         "idc_series.csv row; export a manifest from the IDC portal")  # fmt: skip
    return found


@dataclass(frozen=True, kw_only=True)
class IdcOptions(TransferOptions):
    """``--source idc``: which series (filters, SQL, a manifest), from which IDC release, and where the buckets are."""

    collection: str | None = option(None, parameter="collection", help="TCIA/IDC collection (e.g. LIDC-IDRI)")
    ref: str | None = option(None, parameter="ref", help="the collection, when --collection is not given")
    patient: tuple[str, ...] = option((), parameter="patient", help="PatientIDs to restrict to, comma-separated")
    modality: str | None = option(None, parameter="modality", help="Modality filter (CT, MR, CR, DX…)")
    body_part: str | None = option(None, parameter="body_part", help="BodyPartExamined filter")
    max_patients: int | None = option(
        None, minimum=1, parameter="max_patients", help="collect at most this many patients (first in PatientID order)"
    )
    manifest: str | None = option(
        None, parameter="manifest", help="a manifest file listing series (in a pod: on the data volume)"
    )
    sql: str | None = option(
        None,
        parameter="idc_sql",
        help="--source idc: a SELECT over IDC's index tables (index, collections_index…) returning SeriesInstanceUID",
    )
    idc_version: int | None = option(
        None,
        minimum=1,
        parameter="idc_version",
        help="--source idc: the IDC release to select from (default: the installed index's; earlier ones reproduce "
        "an earlier collect)",
    )
    analysis_results: bool = option(
        False, parameter="idc_analysis_results", help="--source idc: also collect derived series (SEG, SR, RTSTRUCT)"
    )
    idc_endpoint: str = option(
        IDC_ENDPOINT,
        flag=None,
        env="IRMSIA_IDC_ENDPOINT",
        check=check_endpoint,
        help="S3 endpoint serving IDC's buckets (a mirror, tests)",
    )

    def validate(self) -> None:
        if not (self.collection or self.manifest or self.sql or self.patient):
            raise UsageError("--source idc needs --collection NAME, --sql QUERY, --patient IDS or --manifest FILE")

    @classmethod
    def from_values(cls, values: dict[str, Any], env: Mapping[str, str]) -> Self:
        if "collection" not in values and "ref" in values:
            values = {**values, "collection": values["ref"]}
        return cls.build(values)

    def selection(self) -> Selection:
        manifest = read_idc_manifest(self.manifest) if self.manifest else IdcManifest()
        return Selection(
            collection=self.collection,
            patients=self.patient,
            modality=self.modality,
            body_part=self.body_part,
            series_uids=manifest.series_uids,
            crdc_series_uuids=manifest.crdc_series_uuids,
            sql=self.sql,
            analysis_results=self.analysis_results,
            release=self.idc_version,
        )


@dataclass(frozen=True)
class _Series:
    """One selected series and where its files go."""

    row: dict[str, Any]
    folder: str

    @property
    def uuid(self) -> str:
        return str(self.row["crdc_series_uuid"])

    @property
    def bucket(self) -> str:
        return str(self.row["aws_bucket"])


class IdcSource(Source[IdcOptions]):
    """NCI Imaging Data Commons (public S3 buckets, versioned index)."""

    name = "idc"
    dependencies = ("idc_index_data", "duckdb")
    options_type = IdcOptions

    def select_series(self, options: IdcOptions) -> list[dict[str, Any]]:
        """The series to collect, in PatientID order, cut to ``--max-patients``; ``UsageError`` when none match."""
        rows = open_index().select(options.selection())
        if options.max_patients is not None:
            keep = set(sorted({str(r["PatientID"]) for r in rows})[: options.max_patients])
            rows = [r for r in rows if str(r["PatientID"]) in keep]
        if not rows:
            raise UsageError(
                "IDC: no series match --collection/--patient/--modality/--body-part/--sql/--manifest in release "
                f"{open_index().check_release(options.idc_version)}; check them with: irmsia datasets show NAME"
            )
        return rows

    def result_params(self, options: IdcOptions) -> dict[str, Any]:
        # the cache key is what will be read: the release and the exact series versions selected
        index = open_index()
        rows = self.select_series(options)
        return {
            "idc_version": index.check_release(options.idc_version),
            "series_versions": sha256_json(sorted(str(r["crdc_series_uuid"]) for r in rows)),
            "series": len(rows),
        }

    # -- one series -------------------------------------------------------------------------------------------
    def _instance(self, s3: PublicS3, series: _Series, obj: S3Object, sink: RawSink) -> OutputRecord | None:
        """One instance into the store (kept when an earlier run stored it already; ``None``: de-identification
        left it out)."""
        name = f"{series.folder}/{obj.name}"
        info = None
        if sink.deid is None:  # with --deidentify what is stored depends on the options too (the series' record checks)
            try:
                info = sink.store.head(sink.prefix + name)
            except IrmsiaError:
                info = None
        if info is not None and info.size == obj.size:  # stores write atomically: a stored object is whole
            return sink.writer.record(info)
        got = s3.download(series.bucket, obj, sink.workdir / "idc" / series.uuid / obj.name)
        return sink.move_file(name, got.path, sha256=got.sha256, size=got.size)

    @staticmethod
    def _check_listing(series: _Series, objects: list[S3Object], mirror: str) -> None:
        row = series.row
        where = f"IDC series {row['SeriesInstanceUID']} (s3://{series.bucket}/{series.uuid}/)"
        if not objects:
            raise DataError(f"{where}: the bucket holds no files for it; {mirror} does not serve this IDC release")
        count = row.get("instanceCount")
        if count is not None and len(objects) != int(count):
            raise DataError(f"{where}: {len(objects)} files in the bucket, the index lists {count}; {mirror} does "
                            "not match this IDC release")  # fmt: skip
        if row.get("series_size_MB") is not None:
            listed, expected = sum(o.size for o in objects), float(row["series_size_MB"]) * 1e6
            # the current index keeps the exact sum (bytes / 1e6); prior versions round it to 0.01 MB
            tolerance = 1.5 if count is not None else 5_000
            if abs(listed - expected) > tolerance:
                raise DataError(f"{where}: {listed} bytes in the bucket, the index lists {expected:.0f}; {mirror} "
                                "does not match this IDC release")  # fmt: skip

    def _collect_series(self, series: _Series, s3: PublicS3, files: ThreadPoolExecutor, sink: RawSink,
                        mirror: str) -> dict[str, Any]:  # fmt: skip
        unit_id, validator = f"idc:{series.uuid}", {"crdc_series_uuid": series.uuid, "bucket": series.bucket}
        if (record := sink.reuse_unit(unit_id, validator)) is not None:
            return {"files": len(record["files"]), "bytes": sum(f["size"] for f in record["files"])}
        objects = s3.list_objects(series.bucket, series.uuid + "/")
        self._check_listing(series, objects, mirror)
        futures: list[Future[OutputRecord | None]] = [
            files.submit(self._instance, s3, series, o, sink) for o in objects
        ]
        try:
            records = [r for f in futures if (r := f.result()) is not None]  # None: left out by de-identification
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        sink.seal_unit(unit_id, validator, records, series=sink.public_uid(str(series.row["SeriesInstanceUID"])))
        return {"files": len(records), "bytes": sum(r.size for r in records)}

    def collect(self, options: IdcOptions, sink: RawSink) -> CollectReport:
        index = open_index()
        release = index.check_release(options.idc_version)
        rows = self.select_series(options)
        stats = TransferStats()
        s3 = PublicS3(options.idc_endpoint, http_client(options, stats), what="IRMSIA_IDC_ENDPOINT")
        mirror = f"the endpoint {options.idc_endpoint} (IRMSIA_IDC_ENDPOINT)"
        # with --deidentify, the folders are named by the pseudonyms the de-identified headers carry
        chosen = [_Series(r, "/".join((key_segment(sink.public_id(str(r["PatientID"] or "")), "unknown-patient"),
                                       key_segment(sink.public_uid(str(r["StudyInstanceUID"] or "")), "unknown-study"),
                                       key_segment(sink.public_uid(str(r["SeriesInstanceUID"])), "series"))))
                  for r in rows]  # fmt: skip
        log.info("IDC release %d: %d series from %d patients (%.1f MB)", release, len(rows),
                 len({r["PatientID"] for r in rows}), sum(float(r["series_size_MB"] or 0) for r in rows))  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        # series are listed and checked a few at a time while their files download on a pool of their own, so a
        # series thread waiting for its files never holds a download slot
        with ThreadPoolExecutor(sink.workers, thread_name_prefix="idc-file") as files, \
                ThreadPoolExecutor(min(sink.workers, 4), thread_name_prefix="idc-series") as lister:  # fmt: skip
            futures = {lister.submit(self._collect_series, s, s3, files, sink, mirror): s for s in chosen}
            try:
                for future in progress(as_completed(futures), len(futures), "series", log):
                    results[futures[future].uuid] = future.result()
            except BaseException:
                lister.shutdown(wait=True, cancel_futures=True)
                files.shutdown(wait=True, cancel_futures=True)
                raise
        sink.put_bytes(SERIES_CSV, self._series_csv(chosen, results, release, sink))
        licenses = sorted({str(r["license_short_name"]) for r in rows if r.get("license_short_name")})
        sink.put_bytes("LICENSE", self._license_text(rows, release).encode())
        log.info("IDC transfer: %s; %d series reused from an earlier run", stats.as_dict(), sink.units_reused,
                 extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(
            license="; ".join(licenses) or None,
            details={
                "idc_version": release,
                "idc_index_data": index.data_version,
                "collections": sorted({str(r["collection_id"]) for r in rows}),
                "series": len(rows),
                "patients": len({r["PatientID"] for r in rows}),
                "series_versions": sha256_json(sorted(s.uuid for s in chosen)),
                "doi": sorted({str(r["source_DOI"]) for r in rows if r.get("source_DOI")}),
                "pin": f"--idc-version {release}",
            },
        )

    @staticmethod
    def _series_csv(chosen: list[_Series], results: dict[str, dict[str, Any]], release: int, sink: RawSink) -> bytes:
        """Every series collected; with ``--deidentify`` under its pseudonymous UIDs and patient ID."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SERIES_FIELDS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for s in sorted(chosen, key=lambda s: (s.folder, s.uuid)):
            values = {k: ("" if s.row.get(k) is None else s.row[k]) for k in SERIES_FIELDS}
            public = {"SeriesInstanceUID": sink.public_uid(str(values["SeriesInstanceUID"])),
                      "StudyInstanceUID": sink.public_uid(str(values["StudyInstanceUID"])),
                      "PatientID": sink.public_id(str(values["PatientID"]))}  # fmt: skip
            writer.writerow({**values, **public, "folder": s.folder, **results[s.uuid], "idc_version": release})
        return out.getvalue().encode()

    @staticmethod
    def _license_text(rows: list[dict[str, Any]], release: int) -> str:
        lines = [
            f"NCI Imaging Data Commons, release v{release}: each series' licence and source DOI.",
            "Cite the DOI of every collection you use, and IDC itself: Fedorov A. et al., National Cancer Institute "
            "Imaging Data Commons, RadioGraphics 2023, https://doi.org/10.1148/rg.230180",
            "",
        ]
        pairs = sorted({(str(r.get("collection_id")), str(r.get("license_short_name") or "see the collection page"),
                         str(r.get("source_DOI") or "")) for r in rows})  # fmt: skip
        lines += [f"{c}: {lic}" + (f", https://doi.org/{doi}" if doi else "") for c, lic, doi in pairs]
        return "\n".join(lines) + "\n"


SOURCE = IdcSource()
