"""Image preprocessing shared by training and serving: file bytes in, a ``(C, H, W)`` float32 array in [0, 1] out.

DICOM goes through the display pipeline a radiologist's viewer applies: modality LUT (rescale slope/intercept or
Modality LUT Sequence), VOI LUT (VOI LUT Sequence or window centre/width) when the file has one, then
MONOCHROME1 inverted so that bright always means dense. PALETTE COLOR is expanded through its colour LUT; YBR is
converted to RGB by pydicom. PNG, JPEG and TIFF (8/16-bit, grey or RGB) go through the same intensity path. The
image is resized to a square ``image_size`` with antialiasing and each image is min-max scaled to [0, 1] (between
the configured percentiles).

Pure numpy + pydicom + Pillow, no torch: the register stage serves models with exactly this code, and the
``Preprocessing`` record in ``config.json`` is all it needs to rebuild it.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from jobs.core.errors import DataError, UsageError

FORMATS = ("dicom", "png", "jpeg", "tiff")


def detect_format(head: bytes) -> str | None:
    """The image format from the first bytes (``dicom``, ``png``, ``jpeg``, ``tiff``), or ``None``."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    # DICOM without the 128-byte preamble starts with a group 0x0002 or 0x0008 tag (little endian).
    if len(head) >= 4 and head[:2] in (b"\x02\x00", b"\x08\x00"):
        return "dicom"
    return None


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Everything that decides how file bytes become a model input; stored in ``config.json``."""

    image_size: int
    """Output height and width in pixels."""
    channels: int = 1
    """Output channels: 1 (RGB converted to luminance) or 3 (grey replicated)."""
    percentiles: tuple[float, float] = (0.0, 100.0)
    """Intensity range mapped to [0, 1] per image; (0, 100) is min-max, (0.5, 99.5) clips outliers."""
    voi_lut: bool = True
    """Apply the DICOM VOI LUT / window when present."""
    frame: str = "middle"
    """Which frame of a multi-frame image is used: ``first`` or ``middle``."""

    def __post_init__(self) -> None:
        if not 1 <= self.image_size <= 4096:
            raise UsageError(f"--image-size {self.image_size}: use a size between 1 and 4096 pixels")
        if self.channels not in (1, 3):
            raise UsageError(f"preprocessing channels {self.channels}: use 1 or 3")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise UsageError(f"percentiles {self.percentiles}: need 0 <= low < high <= 100")
        if self.frame not in ("first", "middle"):
            raise UsageError(f"frame {self.frame!r}: use 'first' or 'middle'")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["percentiles"] = list(self.percentiles)
        data["output"] = "float32 (C, H, W) in [0, 1]"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Rebuild from ``config.json["preprocessing"]`` (unknown keys such as ``output`` are ignored)."""
        return cls(
            image_size=int(data["image_size"]),
            channels=int(data.get("channels", 1)),
            percentiles=tuple(float(v) for v in data.get("percentiles", (0.0, 100.0))),  # type: ignore[arg-type]
            voi_lut=bool(data.get("voi_lut", True)),
            frame=str(data.get("frame", "middle")),
        )

    def native(self, data: bytes, name: str = "image") -> np.ndarray:
        """Decode and preprocess keeping the file's own channel count (1 or 3): ``(C, S, S)`` float32."""
        image = decode(data, name, frame=self.frame, voi_lut=self.voi_lut)
        try:
            image = scale_intensity(image, self.percentiles)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from exc
        return resize(image, self.image_size)

    def __call__(self, data: bytes, name: str = "image") -> np.ndarray:
        """Decode and preprocess to the model's input: ``(channels, image_size, image_size)`` float32."""
        return to_channels(self.native(data, name), self.channels)


def decode(data: bytes, name: str = "image", *, frame: str = "middle", voi_lut: bool = True) -> np.ndarray:
    """Pixel values as float32 ``(C, H, W)`` with C in {1, 3}, after the DICOM display pipeline.

    ``DataError`` names ``name`` when the bytes are not a readable image.
    """
    fmt = detect_format(data[:132])
    try:
        if fmt == "dicom":
            return _decode_dicom(data, frame, voi_lut)
        if fmt in ("png", "jpeg", "tiff"):
            return _decode_bitmap(data, fmt, frame)
    except DataError as exc:  # the decoders' own findings (no pixel data, odd shape) do not know the file
        raise DataError(f"{name}: {exc}") from exc
    except Exception as exc:
        raise DataError(f"{name}: cannot decode {fmt} image ({type(exc).__name__}: {exc})") from exc
    raise DataError(f"{name}: not a DICOM, PNG, JPEG or TIFF image")


_IMPLIED_SYNTAX = {
    (False, True): "1.2.840.10008.1.2",  # Implicit VR Little Endian
    (True, True): "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    (True, False): "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
}


def implied_syntax(explicit: bool, little: bool) -> str | None:
    """The transfer syntax a file without one in its meta was written in, as pydicom read its data set; only
    native (not encapsulated) pixel data can be decoded that way. ``None`` for an impossible combination."""
    return _IMPLIED_SYNTAX.get((explicit, little))


def _infer_transfer_syntax(ds: Any) -> None:
    """Give a data set whose file meta lacks (0002,0010) the syntax pydicom read it in, when its pixels are native:
    pydicom reads such files (no preamble, no meta) but refuses to decode their pixels without one."""
    if str(ds.file_meta.get("TransferSyntaxUID") or "").strip():
        return
    pixels = next((ds[k] for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds), None)
    implicit, little = ds.original_encoding
    if pixels is None or pixels.is_undefined_length or implicit is None or little is None:
        return  # encapsulated pixels need their compression named; pydicom's own error says so
    if (syntax := implied_syntax(not implicit, bool(little))) is not None:
        ds.file_meta.TransferSyntaxUID = syntax


def _pick_frame(arr: np.ndarray, frames: int, frame: str) -> np.ndarray:
    if frames > 1:
        return arr[frames // 2 if frame == "middle" else 0]
    return arr


def _decode_dicom(data: bytes, frame: str, voi_lut: bool) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError("DICOM file has no pixel data")
    _infer_transfer_syntax(ds)
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = _pick_frame(arr, frames, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1 and photometric != "PALETTE COLOR":
        out = apply_modality_lut(arr, ds)
        if voi_lut and ("VOILUTSequence" in ds or "WindowCenter" in ds):
            if out.dtype.kind == "f" and "VOILUTSequence" in ds:
                out = np.rint(out).astype(np.int64)  # a VOI LUT is indexed by integer stored values
            out = apply_voi_lut(out, ds)
        out = out.astype(np.float32)
        if photometric == "MONOCHROME1":
            # Inverted relative to its own range, so scaling later sees bright = dense like MONOCHROME2.
            out = out.max() + out.min() - out
        return out[np.newaxis]
    # Colour: pydicom already converted YBR to RGB; LUTs do not apply to colour images.
    return np.moveaxis(arr.astype(np.float32), -1, 0)[:3]


def _decode_bitmap(data: bytes, fmt: str, frame: str) -> np.ndarray:
    # TIFF samples are read by tifffile at their stored depth and layout: Pillow reduces 16-bit RGB to 8 bits and
    # cannot open planar or float images. Pillow takes the TIFFs tifffile leaves to it (palette, CMYK, codecs).
    arr = _tiff_by_axes(data, frame) if fmt == "tiff" else None
    if arr is None:
        arr = _pillow(data, frame)
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        return arr[np.newaxis]
    if arr.ndim == 3:
        return np.moveaxis(arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1], -1, 0)
    raise DataError(f"{fmt} image has unsupported shape {arr.shape}")


def _pillow(data: bytes, frame: str) -> np.ndarray:
    from PIL import Image

    img: Image.Image = Image.open(io.BytesIO(data))
    n = getattr(img, "n_frames", 1)
    if n > 1:
        img.seek(n // 2 if frame == "middle" else 0)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA"):
        img = img.convert("L")
    if img.mode in ("RGBA", "CMYK", "YCbCr"):
        img = img.convert("RGB")
    return np.asarray(img)


_TIFF_VALUES = (1, 2)
"""Photometric interpretations whose samples are the image as stored: BlackIsZero grey and RGB."""


def _tiff_by_axes(data: bytes, frame: str) -> np.ndarray | None:
    """A grey or RGB TIFF's first series through tifffile as ``(H, W)`` or ``(H, W, S)``: samples last whether
    stored contiguous (``YXS``) or planar (``SYX``), one frame picked from any other axis (pages, Z, time).
    ``None`` when tifffile cannot read it or its values need a mapping (palette, WhiteIsZero, CMYK)."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series[0]
            if int(series.keyframe.photometric) not in _TIFF_VALUES:
                return None
            arr, axes = series.asarray(), series.axes
    except Exception:  # a compression it has no codec for, a file it does not understand: Pillow may
        return None
    if "S" in axes:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    frame_axes = len(axes) - (3 if axes.endswith("S") else 2)
    if frame_axes > 0:  # pages, slices or time points: flatten them and take one, as for DICOM frames
        arr = arr.reshape(-1, *arr.shape[frame_axes:])
        arr = arr[arr.shape[0] // 2 if frame == "middle" else 0]
    return arr


def scale_intensity(image: np.ndarray, percentiles: tuple[float, float] = (0.0, 100.0)) -> np.ndarray:
    """Map the ``percentiles`` range of the whole image to [0, 1], clipped; a constant image becomes zeros."""
    lo_p, hi_p = percentiles
    if (lo_p, hi_p) == (0.0, 100.0):
        lo, hi = float(image.min()), float(image.max())
    else:
        lo, hi = (float(v) for v in np.percentile(image, [lo_p, hi_p]))
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise DataError("image holds NaN or infinite values")
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(C, H, W)`` to ``(C, size, size)`` per channel, antialiased (Pillow's float bilinear)."""
    from PIL import Image

    if image.shape[1:] == (size, size):
        return image.astype(np.float32, copy=False)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32), mode="F").resize((size, size), 2))
        for c in image
    ]  # 2 = Image.BILINEAR, which Pillow antialiases when shrinking
    return np.stack(channels).astype(np.float32)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey to ``channels`` by replication, RGB to grey by ITU-R 601 luminance."""
    have = image.shape[0]
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=0)
    if channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None, None]
        return (image[:3] * weights).sum(axis=0, keepdims=True).astype(np.float32)
    raise DataError(f"cannot convert a {have}-channel image to {channels} channels")
