"""Image preprocessing shared by index, training and serving: file bytes in, a float32 array in [0, 1] out.

DICOM goes through the display pipeline a radiologist's viewer applies: modality LUT (rescale slope/intercept or
Modality LUT Sequence), VOI LUT (VOI LUT Sequence or window centre/width) when the file has one, then
MONOCHROME1 inverted so that bright always means dense. PALETTE COLOR is expanded through its colour LUT; YBR is
converted to RGB by pydicom. PNG, JPEG and TIFF (8/16-bit, grey or RGB) go through the same intensity path, and
NIfTI gives its middle slice (``jobs.ml.nifti``). The format is found by ``jobs.ml.formats.sniff``, the index's
own sniffer. A fixed ``window`` (centre, width in modality units, e.g. Hounsfield) replaces the file's VOI. The
image is resized to a square ``image_size`` with antialiasing and each image is scaled to [0, 1] (between the
configured percentiles, or the window).

Volumes (``dims=3``: a NIfTI file, a multi-frame DICOM or the slices of a DICOM series, ``jobs.ml.volume``) are
scaled over the whole volume and resampled to ``depth x image_size x image_size``, optionally at a target voxel
spacing first (``jobs.ml.resample``); with ``dims=2`` a volume becomes one image by its middle slice or its
maximum intensity projection (``slices``). Segmentation label maps take the same geometry with nearest-neighbour
resampling (``label_map``).

Pure numpy + pydicom + Pillow (+ nibabel for NIfTI), no torch: the index and the register stage use exactly this
code, and the ``Preprocessing`` record in ``config.json`` is all serving needs to rebuild it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.errors import DataError, UsageError
from jobs.ml.formats import FORMATS, NIFTI, detect_format
from jobs.ml.formats import SNIFF_BYTES as _SNIFF_BYTES

__all__ = ["FORMATS", "SLICE_MODES", "Preprocessing", "decode", "detect_format", "read_source", "resize",
           "scale_intensity", "to_channels"]  # fmt: skip

SLICE_MODES = ("each", "middle", "mip")
"""How ``dims=2`` turns a volume into an image: each file on its own (a multi-slice file's middle slice), the
volume's middle slice, or its maximum intensity projection."""
Source = bytes | str | os.PathLike | Sequence[bytes]
"""What serving hands in: a file's bytes, a path to a file or to a series folder, or a series' file bytes."""


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value in (None, "", []) else (float(value[0]), float(value[1]))


def _triple(value: Any) -> tuple[float, float, float] | None:
    return None if value in (None, "", []) else (float(value[0]), float(value[1]), float(value[2]))


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
    dims: int = 2
    """2: one image per input; 3: one volume (``depth x image_size x image_size``)."""
    depth: int = 0
    """Slices of a ``dims=3`` input (0: ``image_size``)."""
    slices: str = "each"
    """``dims=2``: how a volume becomes an image (``SLICE_MODES``)."""
    window: tuple[float, float] | None = None
    """(centre, width) in modality units mapped to [0, 1], instead of the file's VOI and the percentiles."""
    spacing: tuple[float, float, float] | None = None
    """``dims=3``: resample to this (z, y, x) voxel spacing in mm first, then crop or pad to the size."""

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
        if self.dims not in (2, 3):
            raise UsageError(f"--dims {self.dims}: use 2 or 3")
        if not 0 <= self.depth <= 1024:
            raise UsageError(f"--depth {self.depth}: use 0 (the image size) up to 1024 slices")
        if self.slices not in SLICE_MODES:
            raise UsageError(f"--slices {self.slices!r}: use one of {', '.join(SLICE_MODES)}")
        if self.window is not None and not self.window[1] > 0:
            raise UsageError(f"--window {self.window[0]:g},{self.window[1]:g}: the width must be positive")
        if self.spacing is not None and not all(s > 0 for s in self.spacing):
            raise UsageError(f"--spacing {self.spacing}: every voxel size must be positive (mm)")

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of a ``dims=3`` input."""
        return (self.depth or self.image_size, self.image_size, self.image_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model input of one item, without the channel axis."""
        return self.volume_shape if self.dims == 3 else (self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["percentiles"] = list(self.percentiles)
        data["window"] = list(self.window) if self.window is not None else None
        data["spacing"] = list(self.spacing) if self.spacing is not None else None
        data["output"] = f"float32 (C, {', '.join(('D', 'H', 'W') if self.dims == 3 else ('H', 'W'))}) in [0, 1]"
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
            dims=int(data.get("dims", 2)),
            depth=int(data.get("depth", 0)),
            slices=str(data.get("slices", "each")),
            window=_pair(data.get("window")),
            spacing=_triple(data.get("spacing")),
        )

    # -- intensities ---------------------------------------------------------------------------------------------
    def scale(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Modality or display values to [0, 1]: the fixed window when set, else the percentiles of this input."""
        try:
            if self.window is not None:
                centre, width = self.window
                lo = centre - width / 2
                if not np.isfinite(image).all():
                    raise DataError("image holds NaN or infinite values")
                return np.clip((image - lo) / width, 0.0, 1.0).astype(np.float32)
            return scale_intensity(image, self.percentiles)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from exc

    # -- one 2-D image ---------------------------------------------------------------------------------------------
    def native(self, data: bytes, name: str = "image") -> np.ndarray:
        """Decode and preprocess keeping the file's own channel count (1 or 3): ``(C, S, S)`` float32."""
        image = decode(data, name, frame=self.frame, voi_lut=self.voi_lut and self.window is None)
        return resize(self.scale(image, name), self.image_size)

    # -- volumes ---------------------------------------------------------------------------------------------------
    def volume(self, files: Sequence[bytes], name: str = "volume") -> tuple[np.ndarray, tuple[float, ...] | None]:
        """A ``dims=3`` input: ``(1, D, S, S)`` float32 and its voxel spacing (mm, ``None`` when unknown)."""
        from jobs.ml.resample import fit
        from jobs.ml.volume import read_volume

        found = read_volume(files, name, frame=self.frame)
        grey = to_channels(found.array, 1)[0]
        scaled = self.scale(grey, name)
        fitted, spacing = fit(scaled, self.volume_shape, spacing=found.spacing, target_spacing=self.spacing)
        return fitted[np.newaxis].astype(np.float32), spacing

    def projected(self, files: Sequence[bytes], name: str = "volume") -> np.ndarray:
        """A ``dims=2`` input from a volume (``slices`` middle or mip): ``(C, S, S)`` in the file's channels."""
        from jobs.ml.volume import read_volume

        found = read_volume(files, name, frame=self.frame)
        array = found.array  # (C, D, H, W)
        image = array.max(axis=1) if self.slices == "mip" else array[:, array.shape[1] // 2]
        return resize(self.scale(image, name), self.image_size)

    def label_map(self, files: Sequence[bytes], name: str = "mask") -> np.ndarray:
        """A segmentation label map on the model's grid, values as stored: ``(S, S)`` or ``(D, S, S)`` int32.

        ``files`` is one mask file (2-D or a volume) or a series; the image it belongs to takes the same path.
        """
        from jobs.ml.resample import fit
        from jobs.ml.resample import resize as resize_nd
        from jobs.ml.volume import read_volume

        found = read_volume(files, name, frame=self.frame, labels=True)
        values = found.array[0]  # (D, H, W): the first channel of a colour mask
        if self.dims == 3:
            fitted, _ = fit(values, self.volume_shape, spacing=found.spacing, target_spacing=self.spacing, nearest=True)
            return fitted.astype(np.int32)
        if self.slices == "mip":
            raise UsageError("--slices mip projects intensities; a segmentation mask has no projection, use middle")
        plane = values[values.shape[0] // 2]
        return resize_nd(plane, (self.image_size, self.image_size), nearest=True).astype(np.int32)

    def prepare(self, files: Sequence[bytes], name: str = "image") -> np.ndarray:
        """The model input of one item given its files (one, or a series' slices), in the file's channels."""
        if self.dims == 3:
            return self.volume(files, name)[0]
        if self.slices != "each" or len(files) > 1:
            return self.projected(files, name)
        return self.native(files[0], name)

    def __call__(self, source: Source, name: str = "image") -> np.ndarray:
        """Decode and preprocess to the model's input: ``(channels, image_size, image_size)`` float32 (``dims=2``),
        ``(1, D, image_size, image_size)`` (``dims=3``). ``source``: bytes, a file or series folder, or the bytes
        of a series' files."""
        files, name = read_source(source, name)
        image = self.prepare(files, name)
        return to_channels(image, self.channels) if self.dims == 2 else image


def read_source(source: Source, name: str = "image") -> tuple[list[bytes], str]:
    """The files of ``source`` as bytes (a folder: every regular file in it, sorted by name) and a name for errors."""
    if isinstance(source, bytes | bytearray | memoryview):
        return [bytes(source)], name
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            if path.is_dir():
                files = [p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
                if not files:
                    raise DataError(f"{path}: an empty folder; pass a file or a folder of one series' DICOM files")
                return files, str(path)
            return [path.read_bytes()], str(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    files = [bytes(f) for f in source]
    if not files:
        raise DataError(f"{name}: no files given")
    return files, name


def decode(data: bytes, name: str = "image", *, frame: str = "middle", voi_lut: bool = True) -> np.ndarray:
    """Pixel values as float32 ``(C, H, W)`` with C in {1, 3}, after the DICOM display pipeline.

    ``DataError`` names ``name`` when the bytes are not a readable image.
    """
    fmt = detect_format(data[:_SNIFF_BYTES])
    try:
        if fmt == "dicom":
            return _decode_dicom(data, frame, voi_lut)
        if fmt in ("png", "jpeg", "tiff"):
            return decode_bitmap(data, fmt, frame)
        if fmt == NIFTI:
            return _decode_nifti(data, frame)
    except DataError as exc:  # the decoders' own findings (no pixel data, odd shape) do not know the file
        raise DataError(f"{name}: {exc}") from exc
    except Exception as exc:
        raise DataError(f"{name}: cannot decode {fmt} image ({type(exc).__name__}: {exc})") from exc
    raise DataError(f"{name}: not a DICOM, PNG, JPEG, TIFF or NIfTI image")


def _decode_nifti(data: bytes, frame: str) -> np.ndarray:
    from jobs.ml.nifti import UnusableNifti
    from jobs.ml.nifti import decode as decode_nifti

    try:
        volume, _ = decode_nifti(data, frame=frame)
    except UnusableNifti as exc:
        raise DataError(str(exc)) from exc
    return volume[volume.shape[0] // 2 if frame == "middle" else 0][np.newaxis]


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

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError("DICOM file has no pixel data")
    _infer_transfer_syntax(ds)
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return dicom_values(ds, _pick_frame(arr, frames, frame), voi_lut)


def dicom_values(ds: Any, arr: np.ndarray, voi_lut: bool) -> np.ndarray:
    """One frame's stored values ``arr`` through the display pipeline: ``(C, H, W)`` float32.

    Grey: modality LUT, the VOI LUT when ``voi_lut`` and the file has one, MONOCHROME1 inverted; PALETTE COLOR
    expanded to RGB; colour as pydicom decoded it (YBR already converted to RGB).
    """
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

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


def decode_bitmap(data: bytes, fmt: str, frame: str, *, labels: bool = False) -> np.ndarray:
    """A PNG, JPEG or TIFF as float32 ``(C, H, W)``; ``labels``: the stored values (palette indices kept).

    TIFF samples are read by tifffile at their stored depth and layout: Pillow reduces 16-bit RGB to 8 bits and
    cannot open planar or float images. Pillow takes the TIFFs tifffile leaves to it (palette, CMYK, codecs)."""
    arr = _tiff_by_axes(data, frame) if fmt == "tiff" else None
    if arr is None:
        arr = _pillow(data, frame, labels=labels)
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        return arr[np.newaxis]
    if arr.ndim == 3:
        return np.moveaxis(arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1], -1, 0)
    raise DataError(f"{fmt} image has unsupported shape {arr.shape}")


def _pillow(data: bytes, frame: str, *, labels: bool = False) -> np.ndarray:
    from PIL import Image

    img: Image.Image = Image.open(io.BytesIO(data))
    n = getattr(img, "n_frames", 1)
    if n > 1:
        img.seek(n // 2 if frame == "middle" else 0)
    if labels and img.mode in ("P", "PA", "L", "LA", "I", "I;16", "F", "1"):  # a label map: values as stored
        arr = np.asarray(img)
        return arr if arr.ndim == 2 else arr[..., 0]
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
    """Grey to ``channels`` by replication, RGB to grey by ITU-R 601 luminance (channels first, any spatial axes)."""
    have = image.shape[0]
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, channels, axis=0)
    if channels == 1:
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape((3,) + (1,) * (image.ndim - 1))
        return (image[:3] * weights).sum(axis=0, keepdims=True).astype(np.float32)
    raise DataError(f"cannot convert a {have}-channel image to {channels} channels")
