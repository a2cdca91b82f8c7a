"""``--source idc`` against a real S3 server (SeaweedFS) laid out like IDC's public buckets, behind a fault proxy.

The series are real rows of the installed IDC index (idc-index-data), chosen by query; their files are small DICOM
files padded to the sizes the index lists (``tests/support/idc_mirror.py``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import duckdb
import idc_index_data
import pytest

from jobs.collect.__main__ import main
from jobs.collect.idc_index import Selection, open_index
from jobs.collect.settings import CollectSettings
from jobs.collect.sources.idc import SERIES_CSV, SOURCE
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.fault_proxy import FaultProxy
from tests.support.idc_mirror import IdcMirror, start_idc_mirror

pytestmark = pytest.mark.integration

COLLECTION = "pdmr_425362_245_t"
TINY = (f"SELECT SeriesInstanceUID FROM index WHERE collection_id = '{COLLECTION}' AND Modality = 'MR' "
        "AND series_size_MB < 0.01 AND analysis_result_id IS NULL")  # fmt: skip
# an independent query of the same parquet (not through the code under test): the first 3 patients' tiny series
EXPECTED = f"""SELECT * FROM read_parquet('{idc_index_data.IDC_INDEX_PARQUET_FILEPATH}')
               WHERE SeriesInstanceUID IN ({TINY.replace("FROM index", "FROM idx")})
               AND PatientID IN (SELECT DISTINCT PatientID FROM idx WHERE SeriesInstanceUID IN
                                 ({TINY.replace("FROM index", "FROM idx")}) ORDER BY PatientID LIMIT 3)"""
# a series version IDC served in releases 13-14 only (removed since), and a 6.9 MB single-instance series
PRIOR = (
    "SELECT * FROM prior_versions_index WHERE Modality = 'SR' AND series_size_MB = 0.02 "
    "AND SeriesInstanceUID NOT IN (SELECT SeriesInstanceUID FROM index) ORDER BY crdc_series_uuid LIMIT 1"
)
LARGE = ("SELECT * FROM index WHERE collection_id = 'lidc_idri' AND Modality = 'DX' AND instanceCount = 1 "
         "AND series_size_MB BETWEEN 5.3 AND 7 AND CAST(round(series_size_MB * 1e6) AS BIGINT) % 2 = 0 "
         "ORDER BY PatientID LIMIT 1")  # fmt: skip


def _independent(sql: str) -> list[dict]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW idx AS SELECT * FROM read_parquet('{idc_index_data.IDC_INDEX_PARQUET_FILEPATH}')")
    result = con.execute(sql)
    names = [d[0] for d in result.description]
    return [dict(zip(names, r, strict=True)) for r in result.fetchall()]


class Mirror:
    """The filled mirror, the proxy in front of it and what each series holds."""

    def __init__(self, mirror: IdcMirror, proxy: FaultProxy) -> None:
        self.mirror, self.proxy = mirror, proxy
        self.tiny = _independent(EXPECTED)
        self.prior = dict(open_index().rows(PRIOR)[0], instanceCount=1)
        self.large = open_index().rows(LARGE)[0]
        self.files = mirror.fill(self.tiny)
        self.files |= mirror.fill([self.prior])
        self.files |= mirror.fill([self.large], multipart=frozenset({self.large["crdc_series_uuid"]}))

    def gets(self) -> list[str]:
        """Object GETs the collector made (not listings, not HEADs), in order."""
        return [r.path for r in self.proxy.log if r.method == "GET" and r.path.endswith(".dcm")]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Iterator[Mirror]:
    store = start_idc_mirror(tmp_path_factory.mktemp("idc-mirror"))
    proxy = FaultProxy(upstream=store.endpoint).start()
    try:
        yield Mirror(store, proxy)
    finally:
        proxy.stop()
        store.stop()


@pytest.fixture
def idc(mirror: Mirror, monkeypatch) -> Mirror:
    mirror.proxy.log.clear()
    mirror.proxy.faults.clear()
    mirror.proxy.retry_after = "0"
    monkeypatch.setenv("IRMSIA_IDC_ENDPOINT", mirror.proxy.base)
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    return mirror


def _collect(store_uri: str, *extra: str, dataset: str = "pdmr") -> int:
    return main(["--source", "idc", "--dataset", dataset, "--store", store_uri, "--backoff", "0.01",
                 "--retries", "3", "--workers", "4", *extra])  # fmt: skip


def _tiny(store_uri: str, *extra: str, dataset: str = "pdmr") -> int:
    return _collect(store_uri, "--sql", TINY, "--max-patients", "3", *extra, dataset=dataset)


def _key(row: dict, name: str, dataset: str = "pdmr") -> str:
    return f"raw/{dataset}/{row['PatientID']}/{row['StudyInstanceUID']}/{row['SeriesInstanceUID']}/{name}"


def test_selected_series_are_stored_byte_identical_with_the_release_recorded(store_uri, idc):
    # GIVEN one object whose transfer drops half way and a listing behind a 503
    first = idc.tiny[0]
    name = next(iter(idc.files[first["SeriesInstanceUID"]]))
    idc.proxy.fault(f"/{first['aws_bucket']}/{first['crdc_series_uuid']}/{name}", "drop")
    idc.proxy.fault(f"/{idc.tiny[1]['aws_bucket']}", "503")
    # WHEN the SQL selection is collected (first 3 patients)
    assert _tiny(store_uri) == 0
    # THEN every file of exactly the expected series is stored under patient/study/series, byte for byte
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/pdmr/")
    dicoms = sorted(o.key for o in manifest.outputs if o.key.endswith(".dcm"))
    assert dicoms == sorted(_key(r, n) for r in idc.tiny for n in idc.files[r["SeriesInstanceUID"]])
    for row in idc.tiny:
        for n, data in idc.files[row["SeriesInstanceUID"]].items():
            assert store.get_bytes(_key(row, n)) == data
    # AND the release, the index's version and each series' exact version are recorded
    summary = manifest.summary
    assert summary["idc_version"] == int(idc_index_data.__version__.split(".")[0])
    assert summary["idc_index_data"] == idc_index_data.__version__
    assert summary["series"] == len(idc.tiny) and summary["patients"] == 3
    assert summary["pin"] == f"--idc-version {summary['idc_version']}"
    rows = list(csv.DictReader(io.StringIO(store.get_bytes("raw/pdmr/" + SERIES_CSV).decode())))
    assert sorted(r["crdc_series_uuid"] for r in rows) == sorted(r["crdc_series_uuid"] for r in idc.tiny)
    assert {r["license_short_name"] for r in rows} == {summary["license"]}
    assert store.get_bytes("raw/pdmr/LICENSE").startswith(b"NCI Imaging Data Commons, release v")
    # AND the dropped object resumed with Range + If-Range on its ETag, and nothing was signed
    resumed = [r for r in idc.proxy.log if "Range" in r.headers]
    assert len(resumed) == 1 and resumed[0].headers["If-Range"].strip('"')
    assert not any("Authorization" in r.headers for r in idc.proxy.log)


def test_a_rerun_after_an_interruption_fetches_only_the_missing_instance(tmp_path, idc):
    # GIVEN a finished collect that lost its manifest, one series' completion record and one file of another
    store_uri = str(tmp_path / "s")
    assert _tiny(store_uri) == 0
    store = open_store(store_uri)
    first = read_manifest(store, "raw/pdmr/")
    store.delete("raw/pdmr/_SUCCESS.json")
    records = [o.key for o in first.outputs if "/_collect/" in o.key]
    store.delete(records[0])
    lost = idc.tiny[-1]
    lost_name = next(iter(idc.files[lost["SeriesInstanceUID"]]))
    store.delete(_key(lost, lost_name))
    idc.proxy.log.clear()
    # WHEN it runs again
    assert _tiny(store_uri) == 0
    # THEN only the missing instance was downloaded, and the result is the same
    assert idc.gets() == [f"/{lost['aws_bucket']}/{lost['crdc_series_uuid']}/{lost_name}"]
    assert read_manifest(store, "raw/pdmr/").content_sha256 == first.content_sha256


def test_a_pinned_rerun_from_the_series_list_collects_the_same_bytes(tmp_path, idc):
    # GIVEN a collect and the idc_series.csv it wrote
    store_uri = str(tmp_path / "s")
    assert _tiny(store_uri) == 0
    store = open_store(store_uri)
    pinned = tmp_path / "pinned.csv"
    pinned.write_bytes(store.get_bytes("raw/pdmr/" + SERIES_CSV))
    # WHEN another dataset is collected from that list
    assert _collect(store_uri, "--manifest", str(pinned), dataset="again") == 0
    # THEN it holds exactly the same series versions and files
    a, b = read_manifest(store, "raw/pdmr/"), read_manifest(store, "raw/again/")
    assert {o.key.removeprefix("raw/pdmr/"): o.sha256 for o in a.outputs if o.key.endswith(".dcm")} == {
        o.key.removeprefix("raw/again/"): o.sha256 for o in b.outputs if o.key.endswith(".dcm")
    }
    assert a.summary["series_versions"] == b.summary["series_versions"]


def test_a_series_version_removed_from_idc_is_collected_from_an_s5cmd_manifest(tmp_path, idc):
    # GIVEN IDC's own manifest format naming a version only earlier releases served
    prior = idc.prior
    manifest = tmp_path / "manifest.s5cmd"
    manifest.write_text(f"cp s3://{prior['aws_bucket']}/{prior['crdc_series_uuid']}/* .\n")
    # WHEN it is collected
    store_uri = str(tmp_path / "s")
    assert _collect(store_uri, "--manifest", str(manifest), dataset="nlst") == 0
    # THEN that version's file is stored
    store = open_store(store_uri)
    name, data = next(iter(idc.files[prior["SeriesInstanceUID"]].items()))
    assert store.get_bytes(_key(prior, name, "nlst")) == data
    assert read_manifest(store, "raw/nlst/").summary["series"] == 1


def _large_flags(idc: Mirror, tmp_path) -> list[str]:
    manifest = tmp_path / "large.txt"
    manifest.write_text(idc.large["SeriesInstanceUID"] + "\n")
    return ["--manifest", str(manifest)]


def test_a_multipart_object_is_checked_against_its_multipart_etag(tmp_path, idc):
    # GIVEN a 6.9 MB object uploaded in parts, whose first transfer is corrupted on the way
    row = idc.large
    name = next(iter(idc.files[row["SeriesInstanceUID"]]))
    path = f"/{row['aws_bucket']}/{row['crdc_series_uuid']}/{name}"
    idc.proxy.fault(path, "ok", "corrupt")  # the HEAD ?partNumber=1 passes, the first GET is corrupted
    # WHEN it is collected
    store_uri = str(tmp_path / "s")
    assert _collect(store_uri, *_large_flags(idc, tmp_path), dataset="lidc") == 0
    # THEN the corruption was caught (downloaded twice) and the stored file is intact
    assert idc.gets() == [path, path]
    assert open_store(store_uri).get_bytes(_key(row, name, "lidc")) == idc.files[row["SeriesInstanceUID"]][name]
    assert any(r.method == "HEAD" and r.query.get("partNumber") == ["1"] for r in idc.proxy.log)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("corrupt", "multipart ETag"),
        ("missing", "the bucket holds no files for it"),
        ("resized", "bytes in the bucket, the index lists"),
    ],
)
def test_a_damaged_transfer_or_mirror_is_exit_3_and_seals_nothing(tmp_path, idc, capsys, damage, message):
    row = idc.large
    name, data = next(iter(idc.files[row["SeriesInstanceUID"]].items()))
    bucket_key = f"{row['aws_bucket']}/{row['crdc_series_uuid']}/{name}"
    if damage == "corrupt":
        idc.proxy.fault("/" + bucket_key, "ok", "corrupt", "corrupt")
    elif damage == "missing":
        idc.mirror.delete(bucket_key)
    else:
        idc.mirror.replace(bucket_key, data + b"\0\0")
    try:
        store_uri = str(tmp_path / "s")
        assert _collect(store_uri, *_large_flags(idc, tmp_path), dataset="lidc") == 3
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("irmsia-collect: error:") and message in err
        assert read_manifest(open_store(store_uri), "raw/lidc/") is None
    finally:
        if damage != "corrupt":
            idc.mirror.fill([row], multipart=frozenset({row["crdc_series_uuid"]}))


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--collection", "LIDC_IDR"], 2, "did you mean lidc_idri"),
        (["--collection", "lidc_idri", "--idc-version", "999"], 2, "install that release's index"),
        (["--sql", "SELECT SeriesInstanceUID FROM nowhere"], 2, "--sql: Catalog Error"),
        (["--sql", "SELECT * FROM read_csv('/etc/passwd')"], 2, "file system operations are disabled"),
        (["--collection", "lidc_idri", "--body-part", "CHEST", "--idc-version", "20"], 2, "--body-part cannot"),
        (["--collection", "lidc_idri", "--modality", "NOPE"], 2, "no series match"),
        (["--modality", "CT"], 2, "needs --collection NAME"),
    ],
)
def test_bad_selections_are_usage_errors(tmp_path, idc, capsys, flags, code, message):
    assert _collect(str(tmp_path / "s"), *flags) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err
    assert idc.proxy.log == []  # refused before any request


def test_an_endpoint_that_stays_down_is_exit_75(tmp_path, idc, capsys):
    idc.proxy.fault(f"/{idc.tiny[0]['aws_bucket']}", *["503"] * 10)
    assert _collect(str(tmp_path / "s"), "--manifest", str(_one_series(tmp_path, idc.tiny[0]))) == 75
    assert "unavailable after 3 attempts" in capsys.readouterr().err


def _one_series(tmp_path, row) -> object:
    path = tmp_path / "one.txt"
    path.write_text(row["SeriesInstanceUID"] + "\n")
    return path


# -- selection against the index itself (no download) -----------------------------------------------------------
def _options(*flags: str):
    return CollectSettings.parse(["--source", "idc", "--dataset", "x", *flags], {}).options


@pytest.mark.parametrize(
    ("flags", "where"),
    [
        (["--collection", "LIDC-IDRI", "--modality", "DX"], "collection_id = 'lidc_idri' AND Modality = 'DX'"),
        (["--collection", "lidc_idri", "--patient", "LIDC-IDRI-0001,LIDC-IDRI-0002"],
         "collection_id = 'lidc_idri' AND PatientID IN ('LIDC-IDRI-0001', 'LIDC-IDRI-0002')"),
        (["--collection", "ispy1", "--body-part", "breast", "--modality", "MR"],
         "collection_id = 'ispy1' AND upper(BodyPartExamined) = 'BREAST' AND Modality = 'MR'"),
    ],
)  # fmt: skip
def test_filters_select_what_the_index_lists(flags, where):
    # GIVEN filters WHEN the source selects series THEN they are the index's original series matching them
    got = SOURCE.select_series(_options(*flags))
    expected = _independent(f"SELECT SeriesInstanceUID FROM idx WHERE {where} AND analysis_result_id IS NULL")
    assert sorted(r["SeriesInstanceUID"] for r in got) == sorted(r["SeriesInstanceUID"] for r in expected)
    assert got == sorted(got, key=lambda r: (r["PatientID"], r["StudyInstanceUID"], r["SeriesInstanceUID"]))


def test_max_patients_keeps_the_first_patients_and_analysis_results_are_opt_in():
    plain = SOURCE.select_series(_options("--collection", "lidc_idri", "--max-patients", "2"))
    assert sorted({r["PatientID"] for r in plain}) == ["LIDC-IDRI-0001", "LIDC-IDRI-0002"]
    assert all(r["analysis_result_id"] is None for r in plain)
    derived = SOURCE.select_series(_options("--collection", "lidc_idri", "--max-patients", "2",
                                            "--analysis-results"))  # fmt: skip
    assert {r["Modality"] for r in derived} > {r["Modality"] for r in plain}


def test_an_earlier_release_is_what_it_served():
    # GIVEN the installed release N and an earlier one
    index = open_index()
    earlier = 14
    # WHEN series are selected as of that release
    got = index.select(Selection(collection="nlst", modality="SR", release=earlier, analysis_results=True))
    # THEN they are the current series last revised by then plus the prior versions it served, no other
    parquet = idc_index_data.IDC_INDEX_PARQUET_FILEPATH
    prior = idc_index_data.PRIOR_VERSIONS_INDEX_PARQUET_FILEPATH
    expected = _independent(
        f"""SELECT crdc_series_uuid FROM read_parquet('{parquet}') WHERE collection_id = 'nlst' AND Modality = 'SR'
            AND series_revised_idc_version <= {earlier}
            UNION SELECT crdc_series_uuid FROM read_parquet('{prior}') WHERE collection_id = 'nlst'
            AND Modality = 'SR' AND min_idc_version <= {earlier} AND {earlier} <= max_idc_version"""
    )
    assert sorted(r["crdc_series_uuid"] for r in got) == sorted(r["crdc_series_uuid"] for r in expected)
    removed = index.rows(PRIOR)[0]["crdc_series_uuid"]
    assert removed in {r["crdc_series_uuid"] for r in got}
    # AND the cache key names the release, so a pinned rerun cannot hit a later release's result
    pinned = SOURCE.result_params(_options("--collection", "nlst", "--modality", "SR", "--idc-version", str(earlier),
                                    "--analysis-results"))  # fmt: skip
    current = SOURCE.result_params(_options("--collection", "nlst", "--modality", "SR", "--analysis-results"))
    assert pinned["idc_version"] == earlier and current["idc_version"] == index.release
    assert pinned["series_versions"] != current["series_versions"]


def test_a_deidentified_collect_keeps_no_original_uid_or_patient_id_in_names_or_records(tmp_path, idc, monkeypatch):
    # GIVEN the selection, and a de-identification key in the environment
    monkeypatch.setenv("IRMSIA_DEID_SECRET", "idc-deid-secret-16180339")
    store_uri = str(tmp_path / "s")
    # WHEN it is collected with --deidentify
    assert _tiny(store_uri, "--deidentify", "--deid-allow-burned-in") == 0
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/pdmr/")
    scan = manifest.summary["deidentification"]["phi_scan"]
    assert scan["findings"] == 0 and scan["headers"] == sum(len(idc.files[r["SeriesInstanceUID"]]) for r in idc.tiny)
    # THEN no original patient ID, study or series UID is in an object name, the series list or a unit record
    originals = {str(r[k]) for r in idc.tiny for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")}
    names = [o.key for o in manifest.outputs]
    records = [store.get_bytes(k).decode() for k in names if not k.endswith(".dcm")]
    assert [o for o in originals if any(o in n for n in names) or any(o in r for r in records)] == []
    # AND the series list still names every series, by the folder of its de-identified files
    rows = list(csv.DictReader(io.StringIO(store.get_bytes("raw/pdmr/" + SERIES_CSV).decode())))
    assert sorted(r["crdc_series_uuid"] for r in rows) == sorted(r["crdc_series_uuid"] for r in idc.tiny)
    assert all(r["folder"].endswith(f"/{r['StudyInstanceUID']}/{r['SeriesInstanceUID']}") for r in rows)
    # AND a rerun reuses every series instead of downloading it again
    idc.proxy.log.clear()
    assert _tiny(store_uri, "--deidentify", "--deid-allow-burned-in", "--force") == 0
    assert idc.gets() == []
