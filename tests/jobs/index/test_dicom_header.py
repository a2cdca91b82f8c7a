"""DICOM headers are read without pixel data; unusable files get a reason, long headers ask for more bytes."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from jobs.index.dicom_header import NeedMoreBytes, UnusableDicom, fast_header, pydicom_header, read_header
from tests.support.dicom_files import dicom_bytes


@pytest.mark.parametrize("preamble", [True, False])
def test_header_values_match_pydicom(preamble):
    # GIVEN a DICOM file with or without the 128-byte preamble
    data = dicom_bytes("PAT-7", rows=6, columns=5, modality="DX", preamble=preamble)
    # WHEN its header is read
    header = read_header(data, len(data))
    # THEN every field equals what pydicom reads
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    assert (header.patient_id, header.modality, header.body_part) == ("PAT-7", "DX", "CHEST")
    assert (header.study_uid, header.series_uid, header.sop_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
    )
    assert (header.rows, header.columns, header.bits_allocated, header.bits_stored) == (6, 5, 16, 12)
    assert (header.pixel_spacing_row, header.pixel_spacing_col) == (0.5, 0.25)
    assert header.transfer_syntax == "1.2.840.10008.1.2.1"


@pytest.mark.parametrize("preamble", [True, False])
def test_the_subgroup_attributes_are_read_on_both_paths(preamble):
    # GIVEN a file naming its manufacturer, view position, patient sex and age
    extra = {"Manufacturer": "ACME Imaging", "ViewPosition": "AP", "PatientSex": "F", "PatientAge": "045Y"}
    data = dicom_bytes("PAT-8", extra=extra, preamble=preamble)
    # WHEN its header is read (the fast path takes the file with a preamble, pydicom the other)
    header = read_header(data, len(data))
    # THEN all four are in it, and the fast path agrees with pydicom
    assert (header.manufacturer, header.view_position, header.patient_sex, header.patient_age) == (
        "ACME Imaging", "AP", "F", "045Y")  # fmt: skip
    assert header == pydicom_header(data, len(data))
    if preamble:
        assert fast_header(data, len(data)) == header


def test_big_endian_and_implicit_files_from_pydicom():
    for name in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        path = get_testdata_file(name)
        data = Path(path).read_bytes()
        header = read_header(data, len(data))
        ds = pydicom.dcmread(path)
        assert (header.rows, header.columns, header.patient_id) == (ds.Rows, ds.Columns, ds.PatientID)


def test_a_head_that_ends_inside_the_header_asks_for_more():
    data = dicom_bytes()
    with pytest.raises(NeedMoreBytes):
        read_header(data[:300], len(data))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d[: len(d) - 10], "truncated: pixel data declares"),
        (lambda d: d[: d.index(b"\xe0\x7f\x10\x00") + 6], "truncated: the file ends inside"),
    ],
)
def test_truncated_pixel_data_is_unusable(mutate, reason):
    cut = mutate(dicom_bytes(rows=16, columns=16))
    with pytest.raises(UnusableDicom, match=reason):
        read_header(cut, len(cut))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("rtplan.dcm", "radiotherapy object (SOP class RT Plan Storage): holds a plan"),
        ("DICOMDIR", "DICOMDIR: a media directory listing other files"),
        ("DICOMDIR-implicit", "DICOMDIR: a media directory listing other files"),
        ("test-SR.dcm", "structured report (SOP class Comprehensive SR Storage)"),
        ("reportsi.dcm", "structured report (SOP class Basic Text SR Storage)"),
        ("waveform_ecg.dcm", "waveform (SOP class 12-lead ECG Waveform Storage)"),
        ("UN_sequence.dcm", "no pixel data (SOP class CT Image Storage): an image header whose (7FE0,0010)"),
        ("empty_charset_LEI.dcm", "DICOM without pixel data (no SOP class): not an image"),
    ],
)
def test_a_whole_file_without_pixel_data_is_named_for_what_it_is_never_truncated(name, reason):
    # GIVEN a complete DICOM object without Pixel Data from pydicom's corpus
    data = Path(get_testdata_file(name)).read_bytes()
    # WHEN its header is read THEN the reason says what it is
    with pytest.raises(UnusableDicom) as refused:
        read_header(data, len(data))
    assert str(refused.value).startswith(reason), str(refused.value)


def test_the_stubs_of_a_dicomdir_tree_are_headers_without_pixels_not_truncated_files():
    # GIVEN the TINY_ALPHA stubs (CT headers written without their pixels) WHEN read
    stubs = [p for p in get_testdata_files() if "TINY_ALPHA" in p and os.path.basename(p).startswith("IM")]
    assert len(stubs) >= 30
    for path in stubs:
        data = Path(path).read_bytes()
        with pytest.raises(UnusableDicom) as refused:
            read_header(data, len(data))
        # THEN each is a header without pixel data, not a truncated file
        assert str(refused.value).startswith("no pixel data (SOP class CT Image Storage)"), path


def test_fast_path_agrees_with_pydicom_on_every_corpus_file_it_takes():
    # GIVEN every pydicom test file
    taken = 0
    for path in get_testdata_files():
        if not os.path.isfile(path):
            continue
        data = Path(path).read_bytes()
        # WHEN the fast path accepts it
        try:
            fast = fast_header(data, len(data))
        except UnusableDicom as exc:
            with pytest.raises(UnusableDicom, match=re.escape(str(exc))):
                pydicom_header(data, len(data))
            continue
        if fast is None:
            continue
        taken += 1
        # THEN it gives exactly what the full pydicom path gives
        assert fast == pydicom_header(data, len(data)), path
    assert taken >= 40


def test_fast_path_is_taken_for_ordinary_files():
    data = dicom_bytes("P", rows=16, columns=16)
    assert fast_header(data, len(data)) == pydicom_header(data, len(data))
    assert fast_header(dicom_bytes(preamble=False), 700) is None


def test_a_header_cut_off_before_pixel_data_is_reported_as_truncated():
    data = dicom_bytes(rows=4, columns=4)[:500]
    with pytest.raises(UnusableDicom, match="truncated: the file ends inside the DICOM header"):
        read_header(data, len(data))
