"""Who a row belongs to (``patient_id`` and ``group_by``) and one row per image (the same SOPInstanceUID is the same
image, whatever its encoding), on pydicom's real files and synthetic ones."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from jobs.core.store import open_store
from jobs.index.dicom_header import DicomHeader
from jobs.index.identity import SameImage, is_lossy, patient_identity
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_files import dicom_bytes


def _changed(data: bytes, **values) -> bytes:
    """``data`` (a DICOM file) with the given attributes set (``None`` deletes one), written back as it was."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        for name, value in values.items():
            if value is None:
                if name in ds:
                    delattr(ds, name)
            else:
                setattr(ds, name, value)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _index(tmp_path: Path, files: dict[str, bytes]) -> tuple[dict[str, dict], dict[str, str]]:
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    put_raw(store, "ids", files)
    run(IndexSettings.parse(["--dataset", "ids", "--store", store_uri, "--workers", "1"], {}))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/ids/index.parquet"))).to_pylist()
    quarantine = csv.DictReader(io.StringIO(store.get_bytes("index/ids/quarantine.csv").decode()))
    return {r["key"].removeprefix("raw/ids/"): r for r in rows}, {
        q["key"].removeprefix("raw/ids/"): q["reason"] for q in quarantine
    }


def _header(**values) -> DicomHeader:
    fields = dict.fromkeys(DicomHeader.__dataclass_fields__)
    fields.update(values)
    return DicomHeader(**fields)


@pytest.mark.parametrize(
    ("header", "layout", "expected"),
    [
        (_header(patient_id="P1", study_uid="1.2"), "csv-patient", ("P1", "patient_id")),
        (_header(study_uid="1.2", other_patient_id="MRN7"), "csv-patient", ("csv-patient", "labels")),
        (_header(study_uid="1.2", series_uid="1.2.3", other_patient_id="MRN7"), None, ("MRN7", "other_patient_ids")),
        (_header(study_uid="1.2", series_uid="1.2.3"), None, ("1.2", "study_uid")),
        (_header(series_uid="1.2.3"), None, ("1.2.3", "series_uid")),
        (_header(), None, ("IM0001", "file")),
        (None, None, ("IM0001", "file")),
        (None, "person12", ("person12", "labels")),
    ],
    ids=["PatientID", "labels", "OtherPatientIDs", "study", "series", "file", "not DICOM", "not DICOM, labels"],
)
def test_the_best_identity_a_file_has_is_its_group(header, layout, expected):
    assert patient_identity(header, layout, "IM0001") == expected


def test_files_without_a_patient_id_are_grouped_by_their_study_or_other_ids_not_by_file(tmp_path):
    # GIVEN a study of three images whose PatientID was blanked, one with an Other Patient IDs Sequence, one with
    # only its series, and a file with no identity at all
    study = "1.2.826.0.1.3680043.8.498.1"
    other = Dataset()
    other.PatientID = "MRN-0042"
    files = {f"x/slice{i}.dcm": _changed(dicom_bytes("P", seed=i, study_uid=study), PatientID="") for i in range(3)}
    files["x/other.dcm"] = _changed(dicom_bytes("Q", seed=9), PatientID=None, OtherPatientIDsSequence=[other])
    files["x/series.dcm"] = _changed(dicom_bytes("R", seed=8), PatientID="", StudyInstanceUID=None)
    files["x/nothing.dcm"] = _changed(
        dicom_bytes("S", seed=7), PatientID="", StudyInstanceUID=None, SeriesInstanceUID=None
    )
    # WHEN indexed
    rows, _ = _index(tmp_path, files)
    # THEN the study's images share one group, and each row says which identity it was grouped by
    assert {rows[f"x/slice{i}.dcm"]["patient_id"] for i in range(3)} == {study}
    assert {rows[f"x/slice{i}.dcm"]["group_by"] for i in range(3)} == {"study_uid"}
    assert (rows["x/other.dcm"]["patient_id"], rows["x/other.dcm"]["group_by"]) == ("MRN-0042", "other_patient_ids")
    assert rows["x/series.dcm"]["group_by"] == "series_uid"
    assert (rows["x/nothing.dcm"]["patient_id"], rows["x/nothing.dcm"]["group_by"]) == ("nothing", "file")


def test_five_encodings_of_one_image_are_one_row_and_four_duplicates(tmp_path):
    # GIVEN pydicom's MR_small in five encodings (one SOPInstanceUID), its PatientID blanked as in the issue
    names = ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm",
             "MR_small_jpeg_ls_lossless.dcm"]  # fmt: skip
    files = {f"mr/{name}": _changed(Path(get_testdata_file(name)).read_bytes(), PatientID="") for name in names}
    # WHEN indexed
    rows, quarantine = _index(tmp_path, files)
    # THEN one row is kept (all are lossless: the first by key) and the other four are its duplicates
    assert list(rows) == ["mr/MR_small_RLE.dcm"]
    sop = rows["mr/MR_small_RLE.dcm"]["sop_uid"]
    assert quarantine == {
        f"mr/{name}": f"duplicate of raw/ids/mr/MR_small_RLE.dcm (the same SOPInstanceUID {sop}, another encoding)"
        for name in names[1:]
    }


def test_the_lossless_copy_of_an_image_is_kept_over_a_lossy_one_that_comes_first(tmp_path):
    # GIVEN one image twice: a copy marked lossy-compressed (first by key), and the original; and a JPEG baseline
    # file next to its decompressed copy (which says nothing about loss)
    original = dicom_bytes("P", seed=3)
    jpeg = Path(get_testdata_file("SC_rgb_jpeg.dcm")).read_bytes()
    decompressed = Path(get_testdata_file("SC_rgb_jpeg_dcmd.dcm")).read_bytes()
    files = {
        "a/lossy_copy.dcm": _changed(original, LossyImageCompression="01"),
        "b/original.dcm": original,
        "a/jpeg.dcm": jpeg,
        "b/decompressed.dcm": decompressed,
    }
    # WHEN indexed
    rows, quarantine = _index(tmp_path, files)
    # THEN the lossless copies are kept and the lossy ones listed as their duplicates
    assert sorted(rows) == ["b/decompressed.dcm", "b/original.dcm"]
    assert quarantine["a/lossy_copy.dcm"].startswith("duplicate of raw/ids/b/original.dcm (the same SOPInstanceUID")
    assert quarantine["a/jpeg.dcm"].startswith("duplicate of raw/ids/b/decompressed.dcm (the same SOPInstanceUID")
    # AND a row says whether its pixels went through lossy compression
    assert rows["b/original.dcm"]["lossy_compression"] is False


@pytest.mark.parametrize(
    ("syntax", "attribute", "lossy"),
    [
        ("1.2.840.10008.1.2.1", None, False),
        ("1.2.840.10008.1.2.5", None, False),  # RLE Lossless
        ("1.2.840.10008.1.2.4.90", None, False),  # JPEG 2000 (Lossless Only)
        ("1.2.840.10008.1.2.4.70", None, False),  # JPEG Lossless, first-order prediction
        ("1.2.840.10008.1.2.1.98", None, False),  # Encapsulated Uncompressed
        ("1.2.840.10008.1.2.4.50", None, True),  # JPEG Baseline
        ("1.2.840.10008.1.2.4.91", None, True),  # JPEG 2000, loss allowed
        ("1.2.840.10008.1.2.4.81", None, True),  # JPEG-LS near-lossless
        ("1.2.840.10008.1.2.1", "01", True),  # decompressed, but lossy once
    ],
)
def test_lossy_means_a_lossy_syntax_or_lossy_image_compression_01(syntax, attribute, lossy):
    assert is_lossy(_header(transfer_syntax=syntax, lossy_compression=attribute)) is lossy


def test_same_image_prefers_lossless_then_the_first_key_whatever_the_order_seen():
    # GIVEN copies of one SOPInstanceUID offered in any order
    for order in (["c", "a", "b"], ["b", "c", "a"], ["a", "b", "c"]):
        chooser = SameImage()
        for key in order:
            chooser.offer("1.2.3", key, lossy=key == "a")
        # THEN the first lossless key is kept and every other key names it
        assert (chooser.kept("1.2.3", "b"), chooser.kept("1.2.3", "a"), chooser.kept("1.2.3", "c")) == (None, "b", "b")
    # AND files without a SOPInstanceUID are never duplicates by it
    assert SameImage().kept(None, "x") is None
