"""NIfTI-1/2 volumes: what the index may accept (header facts and checks) and how train and serving decode them.

``check_header(head, size)`` refuses, from header bytes alone, what ``decode`` cannot turn into an image: the
``.hdr`` of an ``.hdr``/``.img`` pair (its voxels live in another file), voxel types that hold no real intensity
(complex, RGB, bit), CIFTI-2 matrices (an intent code of 3000-3099: values over brain surfaces, not a grid),
fewer than two spatial dimensions, an empty or absurdly large grid, and an uncompressed file cut before the end
of its voxels. ``decode`` returns the volume reoriented to the closest canonical (RAS) axes and laid out as
``(D, H, W)`` = (inferior->superior, anterior->posterior, right->left), the order a DICOM axial series has after
``jobs.ml.series`` sorts it, so a model sees the same anatomy the same way from either format. A 4-D (or higher)
file gives one 3-D volume: the middle or first along its fourth axis, index 0 beyond. NaN voxels (often the
outside of a brain mask) become the volume's smallest finite value.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from jobs.ml.formats import GZIP_MAGIC, NIFTI1_MAGICS, NIFTI2_MAGICS, gunzip_head

HEADER_BYTES = 540
"""Enough leading (uncompressed) bytes for either header version."""
MAX_VOXELS = 1 << 31
"""A grid with more voxels than this (8 GiB as float32) is refused rather than decoded."""
REAL_TYPES = {2: "uint8", 4: "int16", 8: "int32", 16: "float32", 64: "float64", 256: "int8", 512: "uint16",
              768: "uint32", 1024: "int64", 1280: "uint64"}  # fmt: skip
"""NIfTI datatype codes that hold a real intensity per voxel: what ``decode`` reads."""
OTHER_TYPES = {0: "unknown", 1: "binary (1 bit)", 32: "complex64", 128: "RGB24", 1536: "float128",
               1792: "complex128", 2048: "complex256", 2304: "RGBA32"}  # fmt: skip
CIFTI_INTENTS = range(3000, 3100)


class UnusableNifti(ValueError):
    """A NIfTI file that cannot be decoded into an image; the message is the quarantine reason."""


@dataclass(frozen=True, slots=True)
class NiftiHeader:
    """The header fields that decide whether and how the voxels decode."""

    version: int
    pair: bool
    """A ``ni1``/``ni2`` header: the voxels are in a separate ``.img`` file."""
    dims: tuple[int, ...]
    """``dim[1..dim[0]]``: the grid, x first."""
    datatype: int
    bitpix: int
    vox_offset: int
    intent: int
    zooms: tuple[float, ...]
    """``pixdim[1..dim[0]]``: voxel size per axis (mm for the spatial ones)."""

    @property
    def voxels(self) -> int:
        count = 1
        for d in self.dims:
            count *= max(d, 1)
        return count


def uncompressed_head(head: bytes) -> bytes:
    """The first header bytes of a NIfTI file, decompressing a ``.nii.gz``."""
    return gunzip_head(head, HEADER_BYTES) if head.startswith(GZIP_MAGIC) else head[:HEADER_BYTES]


def parse_header(head: bytes) -> NiftiHeader:
    """The header of uncompressed NIfTI bytes; ``UnusableNifti`` when it cannot be read."""
    try:
        if head[4:12] in NIFTI2_MAGICS:
            order = "<" if struct.unpack("<i", head[:4])[0] == 540 else ">"
            datatype, bitpix = struct.unpack(order + "hh", head[12:16])
            dim = struct.unpack(order + "8q", head[16:80])
            pixdim = struct.unpack(order + "8d", head[104:168])
            (vox_offset,) = struct.unpack(order + "q", head[168:176])
            (intent,) = struct.unpack(order + "i", head[504:508])
            version, pair = 2, head[4:8] == b"ni2\x00"
        elif head[344:348] in NIFTI1_MAGICS:
            order = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
            dim = struct.unpack(order + "8h", head[40:56])
            intent, datatype, bitpix = struct.unpack(order + "hhh", head[68:74])
            pixdim = struct.unpack(order + "8f", head[76:108])
            vox_offset = int(struct.unpack(order + "f", head[108:112])[0])
            version, pair = 1, head[344:348] == b"ni1\x00"
        else:
            raise UnusableNifti("unreadable NIfTI header: no NIfTI-1 or NIfTI-2 magic")
    except struct.error as exc:
        raise UnusableNifti("truncated: the file ends inside the NIfTI header") from exc
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        raise UnusableNifti(f"unreadable NIfTI header: dim[0] = {ndim}, expected 1 to 7 dimensions")
    dims = tuple(int(d) for d in dim[1 : ndim + 1])
    zooms = tuple(abs(float(z)) for z in pixdim[1 : ndim + 1])
    return NiftiHeader(version, pair, dims, int(datatype), int(bitpix), int(vox_offset), int(intent), zooms)


def check_header(head: bytes, size: int | None = None) -> NiftiHeader:
    """The header of a NIfTI object whose first bytes are ``head`` (``size`` bytes in all, ``None``: unknown),
    or ``UnusableNifti`` naming what ``decode`` would fail on."""
    compressed = head.startswith(GZIP_MAGIC)
    header = parse_header(uncompressed_head(head))
    if header.pair:
        raise UnusableNifti(
            "NIfTI header without its image: a .hdr whose voxels are in a separate .img file, which train does "
            "not read; convert the pair to a single .nii or .nii.gz at the source"
        )
    if header.datatype not in REAL_TYPES:
        named = OTHER_TYPES.get(header.datatype, f"code {header.datatype}")
        raise UnusableNifti(f"NIfTI datatype {named} holds no real-valued intensity image")
    if header.intent in CIFTI_INTENTS:
        raise UnusableNifti(
            f"CIFTI file (NIfTI intent {header.intent}): a connectivity or surface data matrix, not an image volume"
        )
    if any(d < 1 for d in header.dims):
        raise UnusableNifti(f"NIfTI grid {'x'.join(map(str, header.dims))} has an empty dimension")
    if len(header.dims) < 2 or header.dims[0] * header.dims[1] < 2:
        raise UnusableNifti(
            f"NIfTI grid {'x'.join(map(str, header.dims))} has fewer than two spatial dimensions: not an image"
        )
    if header.voxels > MAX_VOXELS:
        raise UnusableNifti(f"NIfTI grid of {header.voxels} voxels is too large to decode (limit {MAX_VOXELS})")
    minimum = 352 if header.version == 1 else 544
    if header.vox_offset < minimum:
        raise UnusableNifti(f"unreadable NIfTI header: vox_offset {header.vox_offset} lies inside the header")
    needed = header.vox_offset + header.voxels * max(header.bitpix, 8) // 8
    if size is not None and not compressed and size < needed:
        raise UnusableNifti(f"truncated: the NIfTI voxels need {needed} bytes, the file holds {size}")
    return header


@dataclass(frozen=True)
class Grid:
    """A volume's shape ``(D, H, W)`` and voxel spacing ``(z, y, x)`` in mm after canonical reorientation."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]


def _image(data: bytes) -> Any:
    import nibabel

    raw = gzip.decompress(data) if data[:2] == GZIP_MAGIC else data
    image_class = nibabel.Nifti2Image if raw[4:12] in NIFTI2_MAGICS else nibabel.Nifti1Image
    return image_class.from_bytes(raw)


def _orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel's array-axis -> RAS-axis mapping (with flips); identity where the affine is degenerate."""
    from nibabel import orientations

    ornt = orientations.io_orientation(affine)
    if not np.isfinite(ornt).all():
        return np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    return ornt


def _canonical_grid(dims: tuple[int, ...], zooms: tuple[float, ...], ornt: np.ndarray) -> Grid:
    shape3 = [*dims[:3], 1, 1][:3]
    zoom3 = [*(z or 1.0 for z in zooms[:3]), 1.0, 1.0][:3]
    ras_shape, ras_zoom = [0, 0, 0], [1.0, 1.0, 1.0]
    for axis, (target, _) in enumerate(ornt):
        ras_shape[int(target)], ras_zoom[int(target)] = shape3[axis], zoom3[axis]
    x, y, z = ras_shape
    return Grid((z, y, x), (ras_zoom[2], ras_zoom[1], ras_zoom[0]))


def grid(head: bytes) -> Grid:
    """The ``(D, H, W)`` shape and spacing ``decode`` will return, from the header bytes alone."""
    import nibabel

    raw = uncompressed_head(head)
    header_class = nibabel.Nifti2Header if raw[4:12] in NIFTI2_MAGICS else nibabel.Nifti1Header
    try:
        hdr = header_class.from_fileobj(io.BytesIO(raw[:HEADER_BYTES]), check=False)
        affine = hdr.get_best_affine()
    except Exception as exc:  # a header nibabel cannot make an affine of: what decode would hit too
        raise UnusableNifti(f"unreadable NIfTI header: {type(exc).__name__}: {exc}") from exc
    parsed = parse_header(raw)
    return _canonical_grid(parsed.dims, parsed.zooms, _orientation(affine))


def decode(data: bytes, *, frame: str = "middle", labels: bool = False) -> tuple[np.ndarray, Grid]:
    """The volume as float32 ``(D, H, W)`` (canonical axes, see the module docstring) and its grid.

    ``labels``: a label map, read as stored (no scaling) and rounded to whole numbers.
    """
    from nibabel import orientations

    try:
        image = _image(data)
        arr = np.asanyarray(image.dataobj) if not labels else np.asanyarray(image.dataobj.get_unscaled())
    except (zlib.error, EOFError, OSError) as exc:
        raise UnusableNifti(f"compressed NIfTI data cannot be inflated: {exc}") from exc
    while arr.ndim > 4:  # dimensions beyond time: the first entry
        arr = arr[..., 0]
    if arr.ndim == 4:
        arr = arr[..., arr.shape[3] // 2 if frame == "middle" else 0]
    while arr.ndim < 3:
        arr = arr[..., np.newaxis]
    ornt = _orientation(image.affine)
    volume = orientations.apply_orientation(arr, ornt)
    volume = np.asarray(volume, dtype=np.float32)[::-1, ::-1, :].transpose(2, 1, 0)
    if labels:
        volume = np.rint(np.nan_to_num(volume, nan=0.0))
    elif not np.isfinite(volume).all():
        finite = volume[np.isfinite(volume)]
        volume = np.nan_to_num(volume, nan=float(finite.min()) if finite.size else 0.0,
                               posinf=float(finite.max()) if finite.size else 0.0,
                               neginf=float(finite.min()) if finite.size else 0.0)  # fmt: skip
    header = image.header
    dims = tuple(int(d) for d in header.get_data_shape())
    zooms = tuple(abs(float(z)) for z in header.get_zooms())
    return np.ascontiguousarray(volume, dtype=np.float32), _canonical_grid(dims, zooms, ornt)
