"""The NCI Imaging Data Commons index that ``idc-index-data`` installs, queried offline with DuckDB.

``idc-index-data`` (the data release behind the ``idc-index`` package) ships one IDC release's tables as Parquet:
``index`` (one row per DICOM series: collection, patient, study, modality, body part, instance count, size, licence,
DOI, and the S3 bucket and ``crdc_series_uuid`` that locate its files), ``prior_versions_index`` (series versions
earlier releases served that this one no longer does), ``collections_index`` (each collection's description,
licence, DOI and citation) and ``version_metadata_index`` (release dates). ``idc_index.IDCClient`` loads the main
table into pandas (here: 1.7 GB resident, 9 s) and needs the s5cmd binary; this module opens the same files as
DuckDB views under the same table names, so an ``--sql`` written for ``IDCClient.sql_query`` runs unchanged, in
0.2 s and 70 MB. The connection is sandboxed: only the index's own folder is readable, nothing can be written, no
extension is loaded, and those settings are locked before any user SQL runs.

Release pinning: the series IDC release N served are the current release's series last revised in N or earlier,
plus the prior versions whose range of releases includes N; a ``crdc_series_uuid`` names one version's content in
every release, so a list of them selects exactly the bytes of an earlier collect.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jobs.core.errors import UsageError

TABLES = {
    "idc_index": "index",
    "prior_versions_index": "prior_versions_index",
    "collections_index": "collections_index",
    "analysis_results_index": "analysis_results_index",
    "version_metadata_index": "version_metadata_index",
}
"""idc-index-data's table -> the name ``IDCClient.sql_query`` gives it (and so do we)."""
SERIES_COLUMNS = ("collection_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality",
                  "BodyPartExamined", "instanceCount", "series_size_MB", "aws_bucket", "crdc_series_uuid",
                  "license_short_name", "source_DOI", "analysis_result_id")  # fmt: skip
"""What a selected series carries (NULL where a prior version's row has no such column)."""
_PRIOR_MISSING = ("BodyPartExamined", "instanceCount", "license_short_name", "source_DOI", "analysis_result_id")
INSTALL_HINT = "pip install 'irmsia-pipeline[collect]' (it brings idc-index and its idc-index-data release)"


def collection_id(name: str) -> str:
    """IDC's id for a collection named either way: ``LIDC-IDRI`` (TCIA's name) or ``lidc_idri`` (IDC's id)."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What to select from the index (each filter optional; together they must match at least one series)."""

    collection: str | None = None
    patients: tuple[str, ...] = ()
    modality: str | None = None
    body_part: str | None = None
    series_uids: tuple[str, ...] = ()
    crdc_series_uuids: tuple[str, ...] = ()
    """Exact series versions (from a manifest of an earlier collect): searched in every release the index knows."""
    sql: str | None = None
    """A query over the index's tables returning a ``SeriesInstanceUID`` column."""
    analysis_results: bool = False
    """Also select derived series (segmentations, annotations) IDC lists as analysis results."""
    release: int | None = None
    """The IDC release to select from; None: the installed one."""


class IdcIndex:
    """One installed IDC release's tables, as sandboxed DuckDB views."""

    def __init__(self) -> None:
        try:
            import duckdb
            import idc_index_data
        except ModuleNotFoundError as exc:
            raise UsageError(f"--source idc needs the IDC index ({exc.name} is missing): {INSTALL_HINT}") from exc
        self.data_version: str = idc_index_data.__version__
        """The idc-index-data release (``25.0.5``); its major number is the IDC release."""
        self.release = int(self.data_version.split(".")[0])
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        folders: set[str] = set()
        for table, view in TABLES.items():
            found = idc_index_data.INDEX_METADATA.get(table, {}).get("parquet_filepath")
            if found is None:
                continue
            path = Path(str(found))
            folders.add(str(path.parent) + "/")
            con.execute(f"CREATE VIEW \"{view}\" AS SELECT * FROM read_parquet('{path}')")
        con.execute("SET allowed_directories = ?", [sorted(folders)])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        self._con = con
        self._error = duckdb.Error

    # -- queries ----------------------------------------------------------------------------------------------
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of a query, as dicts."""
        cursor = self._con.cursor()
        result = cursor.execute(sql, list(params))
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def releases(self) -> list[int]:
        return [r["idc_version"] for r in self.rows("SELECT idc_version FROM version_metadata_index ORDER BY 1")]

    def collection_ids(self) -> list[str]:
        return [r["collection_id"] for r in self.rows("SELECT DISTINCT collection_id FROM index ORDER BY 1")]

    def collections(self) -> list[dict[str, Any]]:
        """Each collection's metadata (``collections_index``) with its series, patients, modalities and bytes in
        this release."""
        return self.rows(
            """SELECT c.*, s.series, s.patients, s.modalities, s.bytes, s.body_parts FROM collections_index c
               LEFT JOIN (SELECT collection_id, count(*) AS series, count(DISTINCT PatientID) AS patients,
                                 string_agg(DISTINCT Modality, ',' ORDER BY Modality) AS modalities,
                                 string_agg(DISTINCT BodyPartExamined, ',' ORDER BY BodyPartExamined) AS body_parts,
                                 CAST(round(sum(series_size_MB) * 1e6) AS BIGINT) AS bytes
                          FROM index WHERE analysis_result_id IS NULL GROUP BY collection_id) s
               USING (collection_id) ORDER BY c.collection_id"""
        )

    # -- selecting series -------------------------------------------------------------------------------------
    def _served_in(self, release: int) -> str:
        """SQL of the series versions IDC release ``release`` served, with ``SERIES_COLUMNS``."""
        current = ", ".join(SERIES_COLUMNS)
        if release == self.release:
            return f"SELECT {current} FROM index"
        prior = ", ".join(f"NULL AS {c}" if c in _PRIOR_MISSING else c for c in SERIES_COLUMNS)
        # a version served by release N and still served now keeps its crdc_series_uuid; its bucket may have
        # moved since, so the current row (the bucket that serves it now) wins over the prior one
        return f"""SELECT {current} FROM index WHERE series_revised_idc_version <= {int(release)}
                   UNION ALL
                   SELECT {prior} FROM prior_versions_index p ANTI JOIN index i USING (crdc_series_uuid)
                   WHERE min_idc_version <= {int(release)} AND {int(release)} <= max_idc_version"""

    def _every_version(self) -> str:
        """SQL of every series version the index knows (current and prior), one row per crdc_series_uuid."""
        prior = ", ".join(f"NULL AS {c}" if c in _PRIOR_MISSING else c for c in SERIES_COLUMNS)
        return f"""SELECT {", ".join(SERIES_COLUMNS)} FROM index
                   UNION ALL
                   SELECT * EXCLUDE (rank) FROM (
                     SELECT {prior}, row_number() OVER (PARTITION BY crdc_series_uuid
                                                        ORDER BY max_idc_version DESC) AS rank
                     FROM prior_versions_index p ANTI JOIN index i USING (crdc_series_uuid))
                   WHERE rank = 1"""

    def check_release(self, release: int | None, flag: str = "--idc-version") -> int:
        """The release to select from; ``UsageError`` for one this index cannot answer for."""
        if release is None:
            return self.release
        known = self.releases()
        if release > self.release:
            raise UsageError(f"{flag} {release}: the installed IDC index is release {self.release} (idc-index-data "
                             f"{self.data_version}); install that release's index: pip install "
                             f"'idc-index-data=={release}.*'")  # fmt: skip
        if release not in known:
            raise UsageError(f"{flag} {release}: not an IDC release this index knows ({known[0]}-{known[-1]})")
        return release

    def _check_collection(self, name: str) -> str:
        wanted = collection_id(name)
        known = self.collection_ids()
        if wanted not in known:
            close = difflib.get_close_matches(wanted, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(f"--collection {name!r}: no such IDC collection in release {self.release}; {hint}"
                             "list them with: irmsia datasets search TEXT")  # fmt: skip
        return wanted

    def select(self, selection: Selection) -> list[dict[str, Any]]:
        """The series ``selection`` names, sorted by patient, study and series; ``UsageError`` for a bad filter."""
        release = self.check_release(selection.release)
        if release != self.release and (selection.body_part or selection.sql):
            flag = "--body-part" if selection.body_part else "--sql"
            raise UsageError(
                f"{flag} cannot select from release {release}: IDC's prior_versions_index has no "
                f"BodyPartExamined or other tables; drop {flag} or use --idc-version {self.release}"
            )
        source = self._every_version() if selection.crdc_series_uuids else self._served_in(release)
        where, params = self._filters(selection)
        sql = f"SELECT * FROM ({source}) s WHERE {' AND '.join(where) or 'true'} " \
              "ORDER BY PatientID, StudyInstanceUID, SeriesInstanceUID, crdc_series_uuid"  # fmt: skip
        try:
            return self.rows(sql, params)
        except self._error as exc:
            if selection.sql:
                first = str(exc).strip().splitlines()[0]
                raise UsageError(f"--sql: {first}; write one SELECT over the tables {', '.join(TABLES.values())} "
                                 "that returns a SeriesInstanceUID column") from exc  # fmt: skip
            raise

    def _filters(self, selection: Selection) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []

        def among(column: str, values: Iterable[str]) -> None:
            values = list(values)
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)

        if selection.collection:
            where.append("collection_id = ?")
            params.append(self._check_collection(selection.collection))
        if selection.patients:
            among("PatientID", selection.patients)
        if selection.modality:
            where.append("upper(Modality) = upper(?)")
            params.append(selection.modality)
        if selection.body_part:
            where.append("upper(BodyPartExamined) = upper(?)")
            params.append(selection.body_part)
        if selection.series_uids:
            among("SeriesInstanceUID", selection.series_uids)
        if selection.crdc_series_uuids:
            among("crdc_series_uuid", selection.crdc_series_uuids)
        if not selection.analysis_results and not selection.crdc_series_uuids and not selection.series_uids:
            where.append("analysis_result_id IS NULL")
        if selection.sql:
            query = selection.sql.strip().rstrip(";")
            where.append(f"SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM ({query}))")
        return where, params


@cache
def open_index() -> IdcIndex:
    """The installed index (opened once per process)."""
    return IdcIndex()
