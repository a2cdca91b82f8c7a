"""``--source tcia``: series from The Cancer Imaging Archive through the NBIA REST API v4 (no login since 2025).

Series are chosen by ``--collection`` (or ``--ref``) with optional ``--patient``, ``--modality`` and
``--body-part`` filters (``getSeries``), or listed in a ``.tcia`` manifest (``--manifest``); ``--max-patients``
keeps the first N patients in PatientID order. Each series is downloaded with ``getImage`` as a ZIP unpacked
into scratch as it streams (``zipstream``: never written whole or held in memory; a dropped connection resumes
at the member it was reading), every member's CRC and the central directory verified before anything reaches
the store (a corrupt ZIP is fetched once more, then fails with exit 3); a ZIP that cannot be read front to back
is downloaded to disk and unpacked from there. Files are stored as
``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<file>``. A ``LICENSE`` member becomes the dataset's
``LICENSE``; ``tcia_series.csv`` lists every series (UIDs, modality, body part, folder) for label joins.
Series already stored completely by an interrupted run are not downloaded again. Pinning: the summary records
the collection's DOI (``CollectionURI``), the latest ``DateReleased`` and a fingerprint of every series' UID, image
count and size; ``tcia_series.csv`` given back as ``--manifest`` collects exactly those series again, and fails
(exit 3) on a series TCIA has revised since (its image count changed).
Base URL: ``IRMSIA_TCIA_URL`` (default ``https://nbia.cancerimagingarchive.net/nbia-api/services/v4/``).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from jobs.collect.archive import Member, extract, remove_tree
from jobs.collect.sources.base import ArchiveOptions, CollectReport, RawSink, key_segment
from jobs.collect.sources.url import http_client, license_from_members
from jobs.collect.transfer import HttpClient, TransferStats
from jobs.collect.units import Unit, UnitSource
from jobs.collect.zipstream import NotStreamable, ZipStream
from jobs.core.errors import DataError, UsageError
from jobs.core.hashing import sha256_json
from jobs.core.settings import option
from jobs.core.shards import ShardLimits

log = logging.getLogger("irmsia.collect")

_UID = re.compile(r"^\d+(\.\d+)+$")
TCIA_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
SERIES_CSV = "tcia_series.csv"
SERIES_COLUMNS = ("folder", "SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Collection", "Modality",
                  "BodyPartExamined", "ImageCount", "files", "LicenseName", "CollectionURI",
                  "DateReleased")  # fmt: skip


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"--manifest {path!r}: cannot read it ({exc.strerror}); give a .tcia manifest file") from exc


def _is_series_csv(text: str) -> bool:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    return "," in first and "SeriesInstanceUID" in first


def read_tcia_manifest(path: str) -> list[str]:
    """The SeriesInstanceUIDs listed in a ``.tcia`` manifest (header lines ``key=value`` are skipped), or in the
    ``tcia_series.csv`` an earlier collect wrote (its ``SeriesInstanceUID`` column)."""
    text = _read_text(path)
    if _is_series_csv(text):
        uids = [(r.get("SeriesInstanceUID") or "").strip() for r in csv.DictReader(io.StringIO(text))]
    else:
        uids = [line.strip() for line in text.splitlines()]
    uids = [u for u in uids if _UID.match(u)]
    if not uids:
        raise UsageError(f"--manifest {path!r}: lists no SeriesInstanceUID; export a manifest from the TCIA portal")
    return sorted(set(uids))


def pinned_image_counts(path: str) -> dict[str, int]:
    """SeriesInstanceUID -> ImageCount from an earlier collect's ``tcia_series.csv`` (empty for a .tcia file)."""
    text = _read_text(path)
    if not _is_series_csv(text):
        return {}
    counts = {}
    for row in csv.DictReader(io.StringIO(text)):
        uid, count = (row.get("SeriesInstanceUID") or "").strip(), (row.get("ImageCount") or "").strip()
        if uid and count.isdigit():
            counts[uid] = int(count)
    return counts


class NbiaApi:
    """The few NBIA v4 GET endpoints the collector needs (JSON lists of objects)."""

    def __init__(self, base_url: str, client: HttpClient) -> None:
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.client = client

    def _get(self, endpoint: str, **params: str | None) -> list[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v}
        query["format"] = "json"
        data = self.client.get_json(self.base + endpoint, query, what=f"TCIA {endpoint}")
        if not isinstance(data, list):
            raise DataError(f"TCIA {endpoint}: expected a JSON list, got {type(data).__name__}; check IRMSIA_TCIA_URL")
        return data

    def collections(self) -> list[str]:
        return sorted(str(c.get("Collection")) for c in self._get("getCollectionValues") if c.get("Collection"))

    def patients(self, collection: str) -> list[dict[str, Any]]:
        return self._get("getPatient", Collection=collection)

    def series(self, **filters: str | None) -> list[dict[str, Any]]:
        """``getSeries`` with ``Collection``, ``PatientID``, ``Modality``, ``BodyPartExamined``,
        ``SeriesInstanceUID`` filters."""
        return self._get("getSeries", **filters)

    def image_url(self, series_uid: str) -> str:
        return f"{self.base}getImage?SeriesInstanceUID={series_uid}"


@dataclass(frozen=True, kw_only=True)
class TciaOptions(ArchiveOptions):
    """``--source tcia``: which series (collection and filters, patients, or a manifest) and where NBIA is."""

    collection: str | None = option(
        None, parameter="collection", help="TCIA collection (--source tcia; --ref is accepted as an alias)"
    )
    ref: str | None = option(None, parameter="ref", help="the collection, when --collection is not given")
    patient: tuple[str, ...] = option((), parameter="patient", help="TCIA PatientIDs to restrict to, comma-separated")
    modality: str | None = option(None, parameter="modality", help="TCIA Modality filter (CT, MR, CR, DX…)")
    body_part: str | None = option(None, parameter="body_part", help="TCIA BodyPartExamined filter")
    max_patients: int | None = option(
        None, minimum=1, parameter="max_patients", help="collect at most this many patients (first in PatientID order)"
    )
    manifest: str | None = option(
        None,
        parameter="manifest",
        help="a .tcia manifest file listing SeriesInstanceUIDs (in a pod: on the data volume)",
    )
    tcia_url: str = option(TCIA_URL, flag=None, env="IRMSIA_TCIA_URL", help="NBIA v4 base URL (mirrors, tests)")

    def validate(self) -> None:
        if not (self.collection or self.manifest or self.patient):
            raise UsageError("--source tcia needs --collection NAME (or --ref NAME), --patient IDS or --manifest FILE")

    @classmethod
    def from_values(cls, values: dict[str, Any], env: Mapping[str, str]) -> Self:
        # --ref names the collection too (the pipeline's one "dataset reference" parameter)
        if "collection" not in values and "ref" in values:
            values = {**values, "collection": values["ref"]}
        return cls.build(values)


@dataclass(frozen=True)
class _Session:
    """What one process's series downloads share: the client, its statistics and the API over it."""

    stats: TransferStats
    client: HttpClient
    api: NbiaApi


def _bytes(value: Any) -> int:
    """NBIA's ``FileSize`` (bytes of the series' ZIP), 0 when absent or not a number."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


class TciaSource(UnitSource[TciaOptions]):
    """The Cancer Imaging Archive (NBIA v4), series by series."""

    name = "tcia"
    options_type = TciaOptions
    shard_limits = ShardLimits(max_items=200, max_bytes=8 << 30, max_shards=128)
    """One shard of a sharded collect: at most 200 series or 8 GiB (minutes at a mirror's pace, far from a pod's
    deadline and its scratch); 10,000 series are 50 shards. At most 128 shards (beyond 25,600 series or 1 TiB they
    grow instead), so a spec with three datasets at their most shards stays under half of Argo's status limit."""
    unit_label = "series"

    def result_params(self, options: TciaOptions) -> dict[str, Any]:
        manifest = read_tcia_manifest(options.manifest) if options.manifest else None
        return {
            "collection": options.collection,
            "patients": list(options.patient),
            "modality": options.modality,
            "body_part": options.body_part,
            "max_patients": options.max_patients,
            "manifest_series": sha256_json(manifest) if manifest else None,
        }

    # -- choosing series --------------------------------------------------------------------------------------
    def select_series(self, options: TciaOptions, api: NbiaApi) -> list[dict[str, Any]]:
        filters = {"Modality": options.modality, "BodyPartExamined": options.body_part}
        if options.manifest:
            found = []
            for uid in read_tcia_manifest(options.manifest):
                rows = api.series(SeriesInstanceUID=uid, **filters)
                if not rows and not (options.modality or options.body_part):
                    rows = [{"SeriesInstanceUID": uid}]  # listed but without metadata: still download it
                found.extend(rows)
        elif options.patient:
            found = [row for p in options.patient
                     for row in api.series(Collection=options.collection, PatientID=p, **filters)]  # fmt: skip
        else:
            found = api.series(Collection=options.collection, **filters)
        unique = {str(s["SeriesInstanceUID"]): s for s in found if s.get("SeriesInstanceUID")}
        series = sorted(unique.values(), key=lambda s: (str(s.get("PatientID", "")), str(s.get("StudyInstanceUID", "")),
                                                         str(s["SeriesInstanceUID"])))  # fmt: skip
        if options.max_patients is not None:
            keep = sorted({str(s.get("PatientID", "")) for s in series})[: options.max_patients]
            series = [s for s in series if str(s.get("PatientID", "")) in keep]
        if options.manifest:
            self._check_pinned(series, pinned_image_counts(options.manifest))
        if not series:
            what = f"collection {options.collection!r}" if options.collection else "the manifest/patients"
            raise UsageError(
                f"TCIA: {what} matched no series with these filters (--modality, --body-part, --patient); "
                "check the names with: irmsia datasets search TEXT"
            )
        return series

    @staticmethod
    def _check_pinned(series: list[dict[str, Any]], pinned: dict[str, int]) -> None:
        """A series an earlier collect recorded must still hold as many images (TCIA revises series in place)."""
        for s in series:
            uid, now = str(s["SeriesInstanceUID"]), s.get("ImageCount")
            if uid in pinned and now is not None and int(now) != pinned[uid]:
                raise DataError(f"TCIA series {uid}: {now} images now, {pinned[uid]} when the --manifest list was "
                                "written; TCIA revised it, so that collect cannot be repeated exactly")  # fmt: skip

    # -- one series -------------------------------------------------------------------------------------------
    def _collect_series(self, series: dict[str, Any], api: NbiaApi, client: HttpClient, options: TciaOptions,
                        sink: RawSink) -> dict[str, Any]:  # fmt: skip
        uid = str(series["SeriesInstanceUID"])
        # with --deidentify, the folders are named by the pseudonyms the de-identified headers carry
        patient = key_segment(sink.public_id(str(series.get("PatientID") or "")), "unknown-patient")
        study = key_segment(sink.public_uid(str(series.get("StudyInstanceUID") or "")), "unknown-study")
        folder = f"{patient}/{study}/{key_segment(sink.public_uid(uid), 'series')}"
        validator = {"series": uid, "images": series.get("ImageCount")}
        if (record := sink.reuse_unit(f"tcia:{uid}", validator)) is not None:
            return {"folder": folder, "files": len(record["files"]), "license_text": record.get("license_text")}
        scratch = sink.workdir / "series" / uid
        for attempt in (1, 2):
            try:  # every CRC is checked while unpacking into scratch, before anything reaches the store
                with sink.transfers:  # --workers connections: the other series' threads store meanwhile
                    members = self._download(api.image_url(uid), scratch, client, options.max_extract_bytes,
                                             f"TCIA series {uid}")  # fmt: skip
                break
            except DataError as exc:
                if attempt == 2 or "corrupt" not in str(exc):
                    raise
                log.warning("TCIA series %s: the ZIP is corrupt (%s); downloading it again", uid, exc)
        license_line, license_text = license_from_members(members)
        images = [m for m in members if not (m.name.upper().startswith(("LICENSE", "LICENCE")) and "/" not in m.name)]
        records = sink.put_many(((f"{folder}/{m.name}", m.path, m.sha256, m.size) for m in images), move=True)
        remove_tree(scratch)
        sink.seal_unit(f"tcia:{uid}", validator, records, license=license_line, license_text=license_text)
        return {"folder": folder, "files": len(records), "license_text": license_text}

    @staticmethod
    def _download(url: str, scratch: Path, client: HttpClient, max_bytes: int, what: str) -> list[Member]:
        """One series ZIP unpacked into ``scratch`` and verified: streamed, or through disk when it must be."""
        stream = ZipStream(scratch, max_bytes, what)
        try:
            client.stream(url, stream, what=what)
            return stream.finish()
        except NotStreamable as exc:
            log.info("%s: %s cannot be unpacked while streaming; downloading the ZIP first", what, exc)
        except BaseException:
            stream.abort()
            raise
        stream.abort()
        zip_path = scratch.with_name(scratch.name + ".zip")  # not with_suffix: UIDs are full of dots
        try:
            client.fetch(url, zip_path, what=what, hashed=False)
            return extract(zip_path, scratch, max_bytes, archive=what)
        finally:
            zip_path.unlink(missing_ok=True)

    # -- the dataset as units (jobs.collect.units: also what a sharded collect cuts) -----------------------------
    def open_session(self, options: TciaOptions, workdir: Path) -> _Session:
        stats = TransferStats()
        client = http_client(options, stats)
        return _Session(stats, client, NbiaApi(options.tcia_url, client))

    def close_session(self, session: _Session, sink: RawSink) -> None:
        log.info(
            "TCIA transfer: %s; %d series reused from an earlier run",
            session.stats.as_dict(),
            sink.units_reused,
            extra={"fields": {"transfer": session.stats.as_dict()}},
        )

    def units(self, options: TciaOptions, session: _Session) -> list[Unit]:
        series = self.select_series(options, session.api)
        log.info("TCIA: %d series from %d patients", len(series), len({s.get("PatientID") for s in series}))
        # in (patient, study, series) order, as select_series sorts them; sized by NBIA's FileSize
        return [Unit(f"tcia:{s['SeriesInstanceUID']}", _bytes(s.get("FileSize")), s) for s in series]

    def unit_workers(self, sink: RawSink) -> int:
        # twice the connections: while a series is stored and sealed its connection starts the next one's download
        # (per series that is a few file operations and records, as long as its round trip on a small series)
        return 2 * sink.workers

    def collect_unit(self, options: TciaOptions, unit: Unit, sink: RawSink, session: _Session) -> dict[str, Any]:
        return self._collect_series(unit.data, session.api, session.client, options, sink)

    def finish(self, options: TciaOptions, units: Sequence[Unit], by_unit: Mapping[str, Any], sink: RawSink,
               session: _Session) -> CollectReport:  # fmt: skip
        series = [u.data for u in units]
        results = {str(u.data["SeriesInstanceUID"]): by_unit[u.id] for u in units}
        license_text = next((results[str(s["SeriesInstanceUID"])]["license_text"] for s in series
                             if results[str(s["SeriesInstanceUID"])]["license_text"]), None)  # fmt: skip
        if license_text:
            sink.put_bytes("LICENSE", license_text.encode())
        sink.put_bytes(SERIES_CSV, self._series_csv(series, results, sink))
        names = sorted({str(s.get("LicenseName")) for s in series if s.get("LicenseName")})
        first_line = next((ln.strip() for ln in (license_text or "").splitlines() if ln.strip()), None)
        released = sorted(str(s["DateReleased"]) for s in series if s.get("DateReleased"))
        return CollectReport(
            license="; ".join(names) or first_line,
            details={
                "collection": options.collection,
                "series": len(series),
                "patients": len({s.get("PatientID") for s in series}),
                "doi": sorted({str(s["CollectionURI"]) for s in series if s.get("CollectionURI")}),
                "latest_release": released[-1] if released else None,
                "series_fingerprint": sha256_json(
                    sorted([str(s["SeriesInstanceUID"]), s.get("ImageCount"), s.get("FileSize")] for s in series)
                ),
                "pin": f"--manifest {SERIES_CSV} (this dataset's own series list)"
                if sink.deid is None
                else f"--collection {options.collection} with the same selection (the store holds pseudonymous UIDs)",
            },
        )

    @staticmethod
    def _series_csv(series: list[dict[str, Any]], results: dict[str, dict[str, Any]], sink: RawSink) -> bytes:
        """Every series collected; with ``--deidentify`` under its pseudonymous UIDs and patient ID."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=SERIES_COLUMNS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for s in sorted(series, key=lambda s: results[str(s["SeriesInstanceUID"])]["folder"]):
            r = results[str(s["SeriesInstanceUID"])]
            public = {"SeriesInstanceUID": sink.public_uid(str(s["SeriesInstanceUID"])),
                      "StudyInstanceUID": sink.public_uid(str(s.get("StudyInstanceUID") or "")),
                      "PatientID": sink.public_id(str(s.get("PatientID") or ""))}  # fmt: skip
            values = {k: s.get(k, "") for k in SERIES_COLUMNS}
            writer.writerow({**values, **public, "folder": r["folder"], "files": r["files"]})
        return out.getvalue().encode()


SOURCE = TciaSource()
