"""The element walker skips sequences of every length form and refuses what it does not understand."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset

from jobs.index.dicom_elements import NotPlain, meta_elements, top_level_elements
from jobs.index.dicom_header import fast_header, pydicom_header
from tests.support.dicom_files import dicom_bytes


def _with_sequences(undefined: bool) -> bytes:
    """A file whose header holds nested sequences (defined or undefined length) before the pixel data."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes("SEQ", rows=4, columns=4)))
    inner = Dataset()
    inner.CodeValue = "X"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.ConceptNameCodeSequence = [inner]
    ds.ReferencedImageSequence = [item, item]
    for elem in (ds["ReferencedImageSequence"], item["ConceptNameCodeSequence"]):
        elem.is_undefined_length = undefined
    for it in (*ds.ReferencedImageSequence, inner):
        it.is_undefined_length_sequence_item = undefined
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("undefined", [True, False])
def test_walker_skips_nested_sequences_and_agrees_with_pydicom(undefined):
    data = _with_sequences(undefined)
    assert (b"\xfe\xff\xdd\xe0" in data) is undefined  # the sequence delimiter is really there, or not
    fast = fast_header(data, len(data))
    assert fast is not None and fast == pydicom_header(data, len(data))


def test_walker_returns_wanted_values_and_pixel_position():
    data = dicom_bytes("P42", rows=4, columns=4)
    meta, pos = meta_elements(data, 132)
    assert meta[0x00020010].rstrip(b"\x00") == b"1.2.840.10008.1.2.1"
    found, pixels = top_level_elements(data, pos, False, {0x00100020: (b"LO",), 0x00280010: (b"US",)})
    assert found == {0x00100020: b"P42 ", 0x00280010: b"\x04\x00"}
    assert data[pixels : pixels + 4] == b"\xe0\x7f\x10\x00"


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda d: d[: d.index(b"\xe0\x7f\x10\x00")], "no pixel data: the data set ends before any"),
        (lambda d: d[: d.index(b"\xe0\x7f\x10\x00") + 3], "ends inside an element header"),
        (lambda d: d[:400], "ends inside"),
    ],
)
def test_walker_refuses_data_that_ends_early(cut, message):
    data = cut(dicom_bytes(rows=4, columns=4))
    _, pos = meta_elements(data, 132)
    with pytest.raises(NotPlain, match=message):
        top_level_elements(data, pos, False, {})


def test_walker_refuses_wrong_vr_and_implicit_mismatch():
    data = dicom_bytes(rows=4, columns=4)
    _, pos = meta_elements(data, 132)
    with pytest.raises(NotPlain, match="unexpected VR"):
        top_level_elements(data, pos, False, {0x00100020: (b"UI",)})
    with pytest.raises(NotPlain, match="looks explicit"):
        top_level_elements(data, pos, True, {})
