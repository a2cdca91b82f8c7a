"""Index pydicom's own test files (100+ real files, many transfer syntaxes, broken ones): no crash, and every
file is either indexed with the header values pydicom reads or quarantined with a reason."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
from pydicom.data import get_testdata_files

from jobs.core.store import open_store
from jobs.index.settings import IndexSettings
from jobs.index.stage import file_stem, is_sidecar, run
from tests.jobs.index.conftest import put_raw


def _corpus() -> dict[str, str]:
    paths = [p for p in get_testdata_files() if os.path.isfile(p)]
    root = os.path.commonpath(paths)
    return {os.path.relpath(p, root).replace(os.sep, "/"): p for p in paths}


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
        expected["patient_id"] = expected["patient_id"] or file_stem(key)  # the contract's fallback
        assert {k: row[k] for k in expected} == expected, key
    # AND the bulk of the corpus is usable, with several transfer syntaxes
    assert summary["rows"] >= 80
    assert len({r["transfer_syntax"] for r in rows}) >= 8


def test_verify_pixels_keeps_only_decodable_files(tmp_path):
    # GIVEN the corpus WHEN indexed with --verify-pixels
    corpus, rows, quarantine, _ = _run_corpus(str(tmp_path / "store"), "--verify-pixels")
    # THEN every indexed file's pixels decode, and files rejected only for pixels say so
    header_only = {r["key"] for r in _run_corpus(str(tmp_path / "store2"))[1]}
    assert {r["key"] for r in rows} <= header_only
    for row in rows:
        ds = pydicom.dcmread(corpus[row["key"][len("raw/pydicom/") :]], force=True)
        assert ds.pixel_array.size > 0
    for key in header_only - {r["key"] for r in rows}:
        assert quarantine[key].startswith(("pixel data cannot be decoded", "cannot decode")), (key, quarantine[key])


KNOWN_REASONS = {
    "rtplan.dcm": "DICOM without pixel data (SOP class RT Plan Storage)",
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
    assert {"raw/pydicom/image_dfl.dcm", "raw/pydicom/SC_rgb_jpeg.dcm"} <= {r["key"] for r in rows}
