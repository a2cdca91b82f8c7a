"""``--verify-pixels``: decode an image's pixel data fully, so files whose pixels cannot be read are quarantined.

DICOM decodes through pydicom and its pixel backends (numpy for native data; pylibjpeg with the libjpeg,
openjpeg and rle plugins for JPEG, JPEG-LS, JPEG 2000 and RLE). PNG, JPEG and TIFF decode with Pillow and
NIfTI with nibabel. Decoding needs the whole object, so this reads it; the header-only path never does.
"""

from __future__ import annotations

import gzip
import io

from jobs.index.formats import DICOM, NIFTI


class UndecodablePixels(ValueError):
    """The pixel data cannot be decoded; the message is the quarantine reason."""


def verify_pixels(fmt: str, data: bytes) -> None:
    """Decode every pixel of ``data`` (an object of format ``fmt``); ``UndecodablePixels`` if that fails."""
    try:
        if fmt == DICOM:
            _dicom(data)
        elif fmt == NIFTI:
            _nifti(data)
        else:
            _pillow(data)
    except UndecodablePixels:
        raise
    except ImportError as exc:
        raise UndecodablePixels(f"cannot decode {fmt} pixels: {exc.name or exc} is not installed") from exc
    except Exception as exc:  # every decoder fails differently; the reason keeps its own words
        message = " ".join(str(exc).split())[:300]
        raise UndecodablePixels(f"pixel data cannot be decoded: {type(exc).__name__}: {message}") from exc


def _dicom(data: bytes) -> None:
    import warnings

    import pydicom

    with warnings.catch_warnings():  # tolerated oddities (padding, VR mismatches) are not failures
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        array = ds.pixel_array
    if array.size == 0:
        raise UndecodablePixels("pixel data decodes to an empty array")


def _pillow(data: bytes) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()


def _nifti(data: bytes) -> None:
    import nibabel
    import numpy as np

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    image_class = nibabel.Nifti2Image if data[4:8] in (b"n+2\x00", b"ni2\x00") else nibabel.Nifti1Image
    image = image_class.from_bytes(data)
    np.asanyarray(image.dataobj)
