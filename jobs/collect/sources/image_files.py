"""Minimal writers of the image files the demo datasets need: NIfTI-1, baseline TIFF, PNG, and DICOM slices.

Hand-written (struct, zlib, pydicom) so the collect image needs neither nibabel nor Pillow; each writes the
smallest valid file of its format, byte-identical for the same input, and the index reads them with the real
decoders (nibabel, Pillow, pydicom).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

_NIFTI_TYPES = {np.dtype(np.uint8): (2, 8), np.dtype(np.int16): (4, 16), np.dtype(np.float32): (16, 32)}


def nifti_bytes(volume: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> bytes:
    """A single-file NIfTI-1 (``.nii``) of ``volume`` given as ``(D, H, W)``, in RAS+ with the grid's x = W axis.

    Stored so that ``jobs.ml.nifti.decode`` gives back exactly ``volume``: the voxel array is ``(W, H, D)`` with the
    first axis running right->left and the second anterior->posterior, so the affine has negative x and y steps
    (``spacing`` is the ``(z, y, x)`` voxel size in mm).
    """
    array = np.ascontiguousarray(volume)
    code, bitpix = _NIFTI_TYPES[array.dtype]
    depth, height, width = array.shape
    sz, sy, sx = spacing
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, width, height, depth, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, code, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, sx, sy, sz, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", header, 112, 1.0, 0.0)  # scl_slope, scl_inter
    struct.pack_into("<B", header, 123, 2)  # xyzt_units: mm
    struct.pack_into("<hh", header, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    # srow: x = -sx * i (right->left), y = -sy * j (anterior->posterior), z = sz * k (inferior->superior)
    struct.pack_into("<4f", header, 280, -sx, 0.0, 0.0, sx * (width - 1))
    struct.pack_into("<4f", header, 296, 0.0, -sy, 0.0, sy * (height - 1))
    struct.pack_into("<4f", header, 312, 0.0, 0.0, sz, 0.0)
    header[344:348] = b"n+1\x00"
    voxels = array.transpose(2, 1, 0)  # (D, H, W) -> (W, H, D), Fortran order below: W varies fastest
    return bytes(header) + b"\x00" * 4 + np.asfortranarray(voxels).tobytes(order="F")


def tiff_bytes(image: np.ndarray) -> bytes:
    """An uncompressed little-endian baseline TIFF of an 8-bit ``(H, W)`` grey or ``(H, W, 3)`` RGB image."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = array.shape[:2]
    samples = 1 if array.ndim == 2 else array.shape[2]
    data = array.tobytes()
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8) if samples == 1 else (258, 3, 3, 0),  # BitsPerSample (RGB: offset to 8,8,8 below)
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1 if samples == 1 else 2),  # Photometric: BlackIsZero or RGB
        (273, 4, 1, 0),  # StripOffsets (patched)
        (277, 3, 1, samples),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(data)),  # StripByteCounts
    ]
    ifd_at = 8
    ifd_size = 2 + 12 * len(entries) + 4
    extra_at = ifd_at + ifd_size
    extra = struct.pack("<3H", 8, 8, 8) if samples == 3 else b""
    data_at = extra_at + len(extra) + (len(extra) % 2)
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = data_at
        if tag == 258 and samples == 3:
            value = extra_at
        out += struct.pack("<HHI", tag, kind, count)
        out += struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
    out += struct.pack("<I", 0)
    out += extra + b"\x00" * (data_at - extra_at - len(extra))
    return bytes(out) + data


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG of an 8-bit ``(H, W)`` grey image (no filtering, deflate level 9)."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = array.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + array[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def ct_slice(
    pixels: np.ndarray,
    *,
    uids: dict[str, str],
    patient: dict[str, Any],
    position: tuple[float, float, float],
    spacing: tuple[float, float, float],
    instance: int,
    preamble: bool = True,
) -> Any:
    """One axial CT slice (stored values, rescale -1024) of a series, as a pydicom dataset ready to write."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(uids["sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uids["sop"]
    ds.StudyDate = ds.SeriesDate = patient["date"]
    ds.Modality = "CT"
    ds.Manufacturer = "IRMSIA Synthetic"
    ds.PatientName = f"Demo^{patient['id']}"
    ds.PatientID = patient["id"]
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.3f}" for v in position]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceThickness = f"{spacing[0]:g}"
    ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[2]:g}"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.preamble = b"\x00" * 128 if preamble else None
    return ds
