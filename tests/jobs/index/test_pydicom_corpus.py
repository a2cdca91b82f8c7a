"""Index pydicom's own test files (100+ real files, many transfer syntaxes, broken ones): no crash, and every
file is either indexed with the header values pydicom reads or quarantined with a reason."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
from pydicom.data import get_testdata_file, get_testdata_files

from jobs.core.store import open_store
from jobs.index.settings import IndexSettings
from jobs.index.stage import file_stem, is_sidecar, run
from jobs.ml.preprocess import decode
from tests.jobs.index.conftest import put_raw


def _corpus() -> dict[str, str]:
    """pydicom's test files under their paths in its test folder; pydicom-data's (when installed) under
    ``pydicom-data/``."""
    own = os.path.dirname(get_testdata_file("CT_small.dcm"))
    corpus = {}
    for path in get_testdata_files():
        if os.path.isfile(path):
            inside = os.path.commonpath([own, path]) == own
            rel = os.path.relpath(path, own) if inside else "pydicom-data/" + os.path.basename(path)
            corpus[rel.replace(os.sep, "/")] = path
    return corpus


def _expected(path: str) -> dict:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)

    def text(name: str):
        value = ds.get(name)
        return (str(value).strip() or None) if value is not None else None

    spacing = ds.get("PixelSpacing")
    return {
        "patient_id": text("PatientID"),
        "study_uid": text("StudyInstanceUID"),
        "series_uid": text("SeriesInstanceUID"),
        "sop_uid": text("SOPInstanceUID"),
        "modality": text("Modality"),
        "body_part": text("BodyPartExamined"),
        "photometric": text("PhotometricInterpretation"),
        "transfer_syntax": (str(ds.file_meta.get("TransferSyntaxUID")).strip() or None)
        if "TransferSyntaxUID" in ds.file_meta
        else None,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "bits_allocated": ds.get("BitsAllocated"),
        "bits_stored": ds.get("BitsStored"),
        "samples_per_pixel": ds.get("SamplesPerPixel"),
        "frames": int(ds.get("NumberOfFrames") or 1),
        "pixel_spacing_row": float(spacing[0]) if spacing else None,
        "pixel_spacing_col": float(spacing[1]) if spacing else None,
    }


def _identity(path: str, values: dict, stem: str) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    others = [str(v).strip() for v in (ds.get("OtherPatientIDs") or [])] if "OtherPatientIDs" in ds else []
    if isinstance(ds.get("OtherPatientIDs"), str):
        others = [ds.OtherPatientIDs.strip()]
    others += [str(item.get("PatientID") or "").strip() for item in ds.get("OtherPatientIDsSequence") or []]
    for value, kind in (
        (values["patient_id"], "patient_id"),
        (next((o for o in others if o), None), "other_patient_ids"),
        (values["study_uid"], "study_uid"),
        (values["series_uid"], "series_uid"),
    ):
        if value:
            return value, kind
    return stem, "file"


def _run_corpus(store_uri: str, *extra: str) -> tuple[dict[str, str], list[dict], dict[str, str], dict]:
    corpus = _corpus()
    store = open_store(store_uri)
    put_raw(store, "pydicom", {rel: Path(path).read_bytes() for rel, path in corpus.items()})
    manifest, _ = run(IndexSettings.parse(["--dataset", "pydicom", "--store", store_uri, "--workers", "2", *extra], {}))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/pydicom/index.parquet"))).to_pylist()
    quarantine = {
        r["key"]: r["reason"]
        for r in csv.DictReader(io.StringIO(store.get_bytes("index/pydicom/quarantine.csv").decode()))
    }
    return corpus, rows, quarantine, manifest.summary


def test_every_pydicom_test_file_is_indexed_faithfully_or_quarantined(store_uri):
    # GIVEN pydicom's test files collected as a dataset WHEN indexed
    corpus, rows, quarantine, summary = _run_corpus(store_uri)
    images = {f"raw/pydicom/{rel}": path for rel, path in corpus.items() if not is_sidecar(rel)}
    indexed = {r["key"]: r for r in rows}
    # THEN every image file is in exactly one of the two outputs, and quarantined ones have a reason
    assert len(images) > 100
    assert set(indexed) | set(quarantine) == set(images)
    assert not set(indexed) & set(quarantine)
    assert all(reason.strip() for reason in quarantine.values())
    # AND indexed DICOM rows carry exactly the header values pydicom reads
    for key, row in indexed.items():
        assert row["format"] == "dicom", key
        expected = _expected(images[key])
        # the best identity the file has, and which one it is
        expected["patient_id"], expected["group_by"] = _identity(images[key], expected, file_stem(key))
        assert {k: row[k] for k in expected} == expected, key
    # AND the bulk of the corpus is usable, with several transfer syntaxes
    assert summary["rows"] >= 80
    assert len({r["transfer_syntax"] for r in rows}) >= 8


def test_verify_pixels_keeps_only_decodable_files(tmp_path):
    # GIVEN the corpus WHEN indexed with --verify-pixels
    corpus, rows, quarantine, _ = _run_corpus(str(tmp_path / "store"), "--verify-pixels")
    # THEN every indexed file's pixels decode, every image kept was kept in header mode too (maybe as another
    # copy: a copy that fails to decode gives way to one that decodes), and files rejected only for their pixels say so
    header_rows = _run_corpus(str(tmp_path / "store2"))[1]
    image = lambda row: row["sop_uid"] or row["key"]  # noqa: E731
    assert {image(r) for r in rows} <= {image(r) for r in header_rows}
    for row in rows:  # through train's decode (pydicom itself refuses a file meta without a transfer syntax)
        assert decode(Path(corpus[row["key"][len("raw/pydicom/") :]]).read_bytes()).size > 0, row["key"]
    # AND the preamble-less file without a file meta (implicit VR little endian, native pixels) is one of them
    assert "raw/pydicom/pydicom-data/OT-PAL-8-face.dcm" in {r["key"] for r in rows}
    for key in {r["key"] for r in header_rows} - {r["key"] for r in rows}:
        assert quarantine[key].startswith(("pixel data cannot be decoded", "cannot decode", "duplicate of")), (
            key,
            quarantine[key],
        )


KNOWN_REASONS = {
    "rtplan.dcm": "radiotherapy object (SOP class RT Plan Storage)",
    "dicomdirtests/DICOMDIR": "DICOMDIR: a media directory",
    "test-SR.dcm": "structured report",
    "waveform_ecg.dcm": "waveform",
    "zipMR.gz": "gzip-compressed file that is not NIfTI",
    "MR_truncated.dcm": "truncated: pixel data declares 8192 bytes",
    "badVR.dcm": "unreadable DICOM header value",
    "crayons.icc": "not a recognised image format",
}


def test_known_unusable_files_have_specific_reasons(tmp_path):
    _, rows, quarantine, _ = _run_corpus(str(tmp_path / "store"))
    for name, reason in KNOWN_REASONS.items():
        assert quarantine[f"raw/pydicom/{name}"].startswith(reason), name
    # a deflated data set and a file whose pixel element contradicts its transfer syntax are still images
    for name in ("image_dfl.dcm", "SC_rgb_jpeg.dcm"):
        key = f"raw/pydicom/{name}"
        assert key in {r["key"] for r in rows} or quarantine[key].startswith("duplicate of raw/pydicom/"), name
