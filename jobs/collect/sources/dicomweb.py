"""``--source dicomweb``: studies from a hospital PACS (or any DICOMweb server) over QIDO-RS and WADO-RS.

Studies are searched with QIDO-RS (``GET {url}/studies``, DICOM JSON, paged with ``limit``/``offset``) by
``--patient``, ``--modality`` (``ModalitiesInStudy``, and only that modality's series are kept), ``--study-date``
(``YYYYMMDD`` or a DICOM range ``YYYYMMDD-YYYYMMDD``), ``--accession``, ``--study-uid`` or a ``--worklist`` CSV
(one search per row; columns ``PatientID``, ``AccessionNumber``, ``StudyInstanceUID``, ``StudyDate``,
``Modality``), cut to ``--max-studies``. Each study's series and each series' instances are listed with QIDO-RS too,
and every instance is retrieved with WADO-RS (``GET …/instances/{SOPInstanceUID}``, ``multipart/related;
type="application/dicom"``, read as it streams by ``jobs.collect.multipart``), ``--workers`` at a time, with the
collector's retries (429/5xx, dropped connections, ``Retry-After``). Each file must be DICOM and carry the
SOPInstanceUID it was asked for (exit 3 otherwise).

Files are stored as ``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` (UIDs only: no patient name,
ID or accession number reaches an object name, a log line or the manifest), through the sink (which
de-identifies them when the collect runs with ``--deidentify``), with ``dicomweb_studies.csv`` listing what was
collected. Resume is at the instance: an instance already in the store is not retrieved again, and a series stored
completely is skipped whole. The PACS's answer is part of the cache key (a fingerprint of every instance UID
selected), so a new study matching the same search makes the next run collect it; ``--study-uid`` (or the
``dicomweb_studies.csv`` of an earlier run as ``--worklist``) asks for exactly the same studies again.

Authentication comes from the environment only, never a flag: ``IRMSIA_DICOMWEB_TOKEN`` (sent as ``Authorization:
Bearer``) or ``IRMSIA_DICOMWEB_USER`` + ``IRMSIA_DICOMWEB_PASSWORD`` (HTTP Basic); a URL with credentials in it
is refused.
"""

from __future__ import annotations

import base64
import contextvars
import csv
import io
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlencode, urlsplit

from jobs.collect.multipart import MultipartFiles
from jobs.collect.sources.base import CollectReport, RawSink, Source, TransferOptions, key_segment, stored_records
from jobs.collect.sources.url import http_client
from jobs.collect.transfer import HttpClient, TransferStats
from jobs.core.errors import DataError, IrmsiaError, UsageError
from jobs.core.hashing import sha256_json
from jobs.core.logs import progress
from jobs.core.manifest import OutputRecord
from jobs.core.settings import option

log = logging.getLogger("irmsia.collect")

STUDIES_CSV = "dicomweb_studies.csv"
PAGE = 500
"""QIDO-RS results asked for per request (servers cap it; we page with offset until a short page)."""
ACCEPT_JSON = "application/dicom+json"
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
TAGS = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
    "Modality": "00080060",
    "StudyDate": "00080020",
}
WORKLIST_KEYS = {
    "patientid": "PatientID",
    "accessionnumber": "AccessionNumber",
    "studyinstanceuid": "StudyInstanceUID",
    "studydate": "StudyDate",
    "modality": "ModalitiesInStudy",
}
"""A worklist column (any case) -> the QIDO-RS study query key it fills."""
_UID = re.compile(r"^\d+(\.\d+)*$")
_DATE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")


def _base_url(value: str, flag: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} {value!r}: use the DICOMweb root URL, e.g. https://pacs.example.org/dicom-web")
    if parts.username or parts.password:
        raise UsageError(f"{flag}: put no credentials in the URL; set IRMSIA_DICOMWEB_TOKEN, or "
                         "IRMSIA_DICOMWEB_USER and IRMSIA_DICOMWEB_PASSWORD")  # fmt: skip


def _dates(value: str, flag: str) -> None:
    if not _DATE.match(value) or value in ("", "-"):
        raise UsageError(f"{flag} {value!r}: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD (either end may be open)")


def _uids(values: tuple[str, ...], flag: str) -> None:
    bad = [v for v in values if not _UID.match(v)]
    if bad:
        raise UsageError(f"{flag} {bad[0]!r}: not a DICOM UID (digits and dots)")


def read_worklist(path: str) -> list[dict[str, str]]:
    """One QIDO-RS query per row of a worklist CSV (its columns named as DICOM keywords, any case)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--worklist {path!r}: cannot read it as UTF-8 text ({exc}); give a CSV file") from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = [c for c in (reader.fieldnames or ()) if c and c.strip()]
    known = [c for c in columns if c.strip().lower() in WORKLIST_KEYS]
    if not known:
        raise UsageError(f"--worklist {path!r}: no column named PatientID, AccessionNumber, StudyInstanceUID, "
                         "StudyDate or Modality")  # fmt: skip
    queries = []
    for row in reader:
        query = {WORKLIST_KEYS[c.strip().lower()]: (row.get(c) or "").strip() for c in known}
        query = {k: v for k, v in query.items() if v}
        if query:
            queries.append(query)
    if not queries:
        raise UsageError(f"--worklist {path!r}: has no rows with a value in {', '.join(known)}")
    return queries


@dataclass(frozen=True)
class DicomwebAuth:
    """Credentials from the environment; ``repr`` shows only which kind."""

    kind: str
    header: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class DicomwebOptions(TransferOptions):
    """``--source dicomweb``: the server, the search, and credentials from the environment."""

    dicomweb_url: str = option(
        check=_base_url,
        env="IRMSIA_DICOMWEB_URL",
        parameter="dicomweb_url",
        help="--source dicomweb: the DICOMweb root URL (QIDO-RS/WADO-RS), e.g. https://pacs/dicom-web",
    )
    patient: tuple[str, ...] = option((), parameter="patient", help="PatientIDs to restrict to, comma-separated")
    modality: str | None = option(None, parameter="modality", help="Modality filter (CT, MR, CR, DX…)")
    study_date: str | None = option(
        None, check=_dates, parameter="study_date", help="--source dicomweb: StudyDate YYYYMMDD or YYYYMMDD-YYYYMMDD"
    )
    accession: tuple[str, ...] = option(
        (), parameter="accession", help="--source dicomweb: AccessionNumbers, comma-separated"
    )
    study_uid: tuple[str, ...] = option(
        (), check=_uids, parameter="study_uid", help="--source dicomweb: StudyInstanceUIDs, comma-separated"
    )
    worklist: str | None = option(
        None,
        parameter="worklist",
        help="--source dicomweb: a CSV of studies to fetch (PatientID, AccessionNumber, StudyInstanceUID, StudyDate "
        "columns), one search per row",
    )
    max_studies: int | None = option(
        None, minimum=1, parameter="max_studies", help="--source dicomweb: collect at most this many studies"
    )
    token: str | None = option(
        None, flag=None, env="IRMSIA_DICOMWEB_TOKEN", secret=True, help="DICOMweb bearer token (environment only)"
    )
    username: str | None = option(
        None, flag=None, env="IRMSIA_DICOMWEB_USER", help="DICOMweb HTTP Basic user (environment only)"
    )
    password: str | None = option(
        None, flag=None, env="IRMSIA_DICOMWEB_PASSWORD", secret=True, help="DICOMweb HTTP Basic password"
    )

    def validate(self) -> None:
        if not (self.patient or self.study_date or self.accession or self.study_uid or self.worklist):
            raise UsageError("--source dicomweb needs a search: --patient, --study-date, --accession, --study-uid "
                             "or --worklist FILE (a whole PACS is never collected by accident)")  # fmt: skip
        if bool(self.username) != bool(self.password):
            raise UsageError("IRMSIA_DICOMWEB_USER and IRMSIA_DICOMWEB_PASSWORD go together; set both or neither")
        if self.token and self.username:
            raise UsageError("set IRMSIA_DICOMWEB_TOKEN or IRMSIA_DICOMWEB_USER/PASSWORD, not both")

    @classmethod
    def from_values(cls, values: dict[str, Any], env: Mapping[str, str]) -> Self:
        if "dicomweb_url" not in values:
            raise UsageError("--source dicomweb needs --dicomweb-url URL (or IRMSIA_DICOMWEB_URL): the DICOMweb root")
        return cls.build(values)

    def auth(self) -> DicomwebAuth | None:
        if self.token:
            return DicomwebAuth("bearer", f"Bearer {self.token}")
        if self.username and self.password:
            pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return DicomwebAuth("basic", f"Basic {pair}")
        return None

    def queries(self) -> list[dict[str, str]]:
        """The QIDO-RS study searches these options ask for (each a dict of query keys)."""
        common: dict[str, str] = {}
        if self.modality:
            common["ModalitiesInStudy"] = self.modality
        if self.study_date:
            common["StudyDate"] = self.study_date
        rows: list[dict[str, str]] = [{}]
        for key, values in (("PatientID", self.patient), ("AccessionNumber", self.accession),
                            ("StudyInstanceUID", self.study_uid)):  # fmt: skip
            if values:
                rows = [{**r, key: v} for r in rows for v in values]
        if self.worklist:
            rows = [{**r, **w} for r in rows for w in read_worklist(self.worklist)]
        unique = {tuple(sorted({**common, **r}.items())) for r in rows}
        return [dict(q) for q in sorted(unique)]


def _value(item: Mapping[str, Any], keyword: str) -> str | None:
    """A string attribute of a DICOM JSON object (its first value)."""
    element = item.get(TAGS[keyword]) or {}
    values = element.get("Value") or []
    return str(values[0]) if values else None


@dataclass(frozen=True)
class _Series:
    study: str
    series: str
    modality: str | None
    instances: tuple[str, ...]

    def folder(self, sink: RawSink) -> str:
        """``<StudyInstanceUID>/<SeriesInstanceUID>``, pseudonymous with ``--deidentify``."""
        study, series = sink.public_uid(self.study), sink.public_uid(self.series)
        return f"{key_segment(study, 'study')}/{key_segment(series, 'series')}"


class Qido:
    """The QIDO-RS searches the collector makes, over one HTTP client."""

    def __init__(self, base: str, client: HttpClient) -> None:
        self.base = base.rstrip("/")
        self.client = client

    def _search(self, path: str, query: Mapping[str, str], what: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            params = {**query, "limit": str(PAGE), "offset": str(offset)}
            url = f"{self.base}/{path}?{urlencode(params)}"
            data = self.client.get_json(url, what=f"QIDO-RS {what}", private=True)
            if not isinstance(data, list):
                raise DataError(f"QIDO-RS {what}: expected a JSON array, got {type(data).__name__}; "
                                "check --dicomweb-url")  # fmt: skip
            found.extend(d for d in data if isinstance(d, dict))
            if len(data) < PAGE:
                return found
            offset += len(data)

    def studies(self, query: Mapping[str, str]) -> list[str]:
        return [u for d in self._search("studies", query, "studies") if (u := _value(d, "StudyInstanceUID"))]

    def series(self, study: str, modality: str | None) -> list[tuple[str, str | None]]:
        rows = self._search(f"studies/{quote(study)}/series", {}, f"series of a study ({study})")
        found = [(u, _value(d, "Modality")) for d in rows if (u := _value(d, "SeriesInstanceUID"))]
        return [(u, m) for u, m in found if not modality or (m or "").upper() == modality.upper()]

    def instances(self, study: str, series: str) -> list[str]:
        rows = self._search(f"studies/{quote(study)}/series/{quote(series)}/instances", {},
                            f"instances of a series ({series})")  # fmt: skip
        return sorted({u for d in rows if (u := _value(d, "SOPInstanceUID"))})


class DicomwebSource(Source[DicomwebOptions]):
    """A DICOMweb server: a hospital PACS (Orthanc, dcm4chee, a cloud healthcare API)."""

    name = "dicomweb"
    dependencies = ("pydicom",)
    options_type = DicomwebOptions

    def __init__(self) -> None:
        self._plans: dict[DicomwebOptions, list[_Series]] = {}

    @staticmethod
    def _client(options: DicomwebOptions, stats: TransferStats | None = None) -> HttpClient:
        auth = options.auth()
        return http_client(options, stats, headers={"Authorization": auth.header} if auth else None)

    def plan_series(self, options: DicomwebOptions, client: HttpClient | None = None) -> list[_Series]:
        """Every series (with its instance UIDs) the search selects, sorted by UIDs (asked anew each time)."""
        qido = Qido(options.dicomweb_url, client or self._client(options))
        studies = sorted({uid for q in options.queries() for uid in qido.studies(q)})
        if options.max_studies is not None:
            studies = studies[: options.max_studies]
        if not studies:
            raise UsageError("DICOMweb: no study matches the search (--patient, --modality, --study-date, "
                             "--accession, --study-uid, --worklist); check it in the PACS viewer")  # fmt: skip
        series = [_Series(study, uid, modality, tuple(qido.instances(study, uid)))
                  for study in studies for uid, modality in qido.series(study, options.modality)]  # fmt: skip
        series = [s for s in series if s.instances]
        if not series:
            raise UsageError(f"DICOMweb: the {len(studies)} matching studies hold no series"
                             + (f" of modality {options.modality}" if options.modality else ""))  # fmt: skip
        return series

    def result_params(self, options: DicomwebOptions) -> dict[str, Any]:
        # what the PACS answers is the result: the exact instances; the search itself only as a hash (it may hold
        # patient IDs and accession numbers, which have no place in a manifest)
        series = self._plans[options] = self.plan_series(options)
        return {
            "server": sha256_json(options.dicomweb_url)[:16],
            "search": sha256_json(options.queries()),
            "instances": sha256_json([[s.study, s.series, list(s.instances)] for s in series]),
        }

    # -- retrieving -------------------------------------------------------------------------------------------
    def _instance(self, options: DicomwebOptions, client: HttpClient, series: _Series, sop: str,
                  sink: RawSink) -> OutputRecord | None:  # fmt: skip
        """One instance into the store (``None``: de-identification left it out)."""
        name = f"{series.folder(sink)}/{key_segment(sink.public_uid(sop), 'instance')}.dcm"
        # resume at the instance: stores write atomically, and a SOP instance's content never changes; not with
        # --deidentify, where what is stored depends on the options too (the series' record checks those)
        if sink.deid is None:
            try:
                return sink.writer.record(sink.store.head(sink.prefix + name))
            except IrmsiaError:
                pass
        url = (f"{options.dicomweb_url.rstrip('/')}/studies/{quote(series.study)}/series/{quote(series.series)}"
               f"/instances/{quote(sop)}")  # fmt: skip
        what = f"WADO-RS instance {sop}"
        body = MultipartFiles(sink.workdir / "dicomweb" / key_segment(sop, "instance"), what)
        got = client.stream(url, body, headers={"Accept": ACCEPT_DICOM}, what=what)
        parts = body.finish(got["headers"].get("Content-Type"))
        dicoms = [
            p for p in parts if p.headers.get("content-type", "application/dicom").startswith("application/dicom")
        ]
        if len(dicoms) != 1:
            raise DataError(f"{what}: the server sent {len(dicoms)} DICOM parts for one instance")
        self._check_instance(dicoms[0].path, sop, what)
        record = sink.move_file(name, dicoms[0].path)
        for p in parts:
            p.path.unlink(missing_ok=True)
        return record

    @staticmethod
    def _check_instance(path: Path, sop: str, what: str) -> None:
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{what}: the server sent a part that is not DICOM ({exc})") from exc
        if str(ds.get("SOPInstanceUID", "")) != sop:
            raise DataError(f"{what}: the server sent instance {ds.get('SOPInstanceUID')!r} instead")

    def _series(self, options: DicomwebOptions, client: HttpClient, series: _Series, pool: ThreadPoolExecutor,
                sink: RawSink) -> int:  # fmt: skip
        unit_id, validator = f"dicomweb:{series.series}", {"instances": sha256_json(list(series.instances))}
        if (record := sink.reuse_unit(unit_id, validator)) is not None:
            return len(record["files"])
        with sink.unit_scope():  # with --deidentify, the series' record keeps what its files told the filter
            # each instance in a copy of this context, so the tally goes with it into the retrieving thread
            futures = [pool.submit(contextvars.copy_context().run, self._instance, options, client, series, sop, sink)
                       for sop in series.instances]  # fmt: skip
            records = stored_records(futures)
            sink.seal_unit(unit_id, validator, records)
        return len(records)

    def collect(self, options: DicomwebOptions, sink: RawSink) -> CollectReport:
        stats = TransferStats()
        client = self._client(options, stats)
        # the plan the cache key was computed from, so what is collected is what the key says
        series = self._plans.pop(options, None) or self.plan_series(options, client)
        studies = sorted({s.study for s in series})
        log.info("DICOMweb: %d studies, %d series, %d instances", len(studies), len(series),
                 sum(len(s.instances) for s in series))  # fmt: skip
        counts: dict[str, int] = {}
        with ThreadPoolExecutor(sink.workers, thread_name_prefix="wado") as files, \
                ThreadPoolExecutor(min(sink.workers, 4), thread_name_prefix="wado-series") as lister:  # fmt: skip
            futures = {lister.submit(self._series, options, client, s, files, sink): s for s in series}
            try:
                for future in progress(as_completed(futures), len(futures), "series", log):
                    counts[futures[future].series] = future.result()
            except BaseException:
                lister.shutdown(wait=True, cancel_futures=True)
                files.shutdown(wait=True, cancel_futures=True)
                raise
        sink.put_bytes(STUDIES_CSV, self._studies_csv(series, sink))
        log.info("DICOMweb transfer: %s; %d series reused from an earlier run", stats.as_dict(), sink.units_reused,
                 extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(
            license=None,
            details={
                "studies": len(studies),
                "series": len(series),
                "instances": sum(len(s.instances) for s in series),
                "auth": (options.auth() or DicomwebAuth("none", "")).kind,
                "studies_fingerprint": sha256_json(studies),
                "pin": f"--worklist {STUDIES_CSV} (this dataset's own list of StudyInstanceUIDs)"
                if sink.deid is None
                else "your own worklist of the studies (the store holds their pseudonymous UIDs only)",
            },
        )

    @staticmethod
    def _studies_csv(series: list[_Series], sink: RawSink) -> bytes:
        """What was collected; with ``--deidentify`` under the pseudonymous UIDs (then it is no worklist for the
        PACS: keep your own, outside the store)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["StudyInstanceUID", "SeriesInstanceUID", "Modality", "instances", "folder"])
        rows = [(sink.public_uid(s.study), sink.public_uid(s.series), s) for s in series]
        for study, uid, s in sorted(rows, key=lambda r: (r[0], r[1])):
            writer.writerow([study, uid, s.modality or "", len(s.instances), s.folder(sink)])
        return out.getvalue().encode()


SOURCE = DicomwebSource()
