"""``--verify-pixels``: decode an image's pixel data fully, so files whose pixels cannot be read are quarantined.

Every format decodes through train's own decoder (``jobs.ml.preprocess.decode``: pydicom and its pixel
backends, the DICOM display pipeline, Pillow and tifffile, nibabel for NIfTI), so what passes here is what train
can read: a ``(C, H, W)`` array with 1 or 3 channels and finite values. Decoding needs the whole object, so this
reads it; the header-only path never does.
"""

from __future__ import annotations

from jobs.core.errors import DataError


class UndecodablePixels(ValueError):
    """The pixel data cannot be decoded; the message is the quarantine reason."""


def verify_pixels(fmt: str, data: bytes) -> None:
    """Decode every pixel of ``data`` (an object of format ``fmt``); ``UndecodablePixels`` if that fails."""
    try:
        _as_train_decodes(fmt, data)
    except UndecodablePixels:
        raise
    except ImportError as exc:
        raise UndecodablePixels(f"cannot decode {fmt} pixels: {exc.name or exc} is not installed") from exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # every decoder fails differently (Rust panics too); the reason keeps its words
        if isinstance(exc, DataError) and isinstance(exc.__cause__, ImportError):
            missing = exc.__cause__
            raise UndecodablePixels(f"cannot decode {fmt} pixels: {missing.name or missing} is not installed") from exc
        cause = exc.__cause__ if isinstance(exc, DataError) and exc.__cause__ is not None else exc
        message = " ".join(str(cause).split())[:300]
        raise UndecodablePixels(f"pixel data cannot be decoded: {type(cause).__name__}: {message}") from exc


def _as_train_decodes(fmt: str, data: bytes) -> None:
    import numpy as np

    from jobs.ml.preprocess import decode

    image = decode(data, fmt)
    if image.ndim != 3 or image.shape[0] not in (1, 3) or 0 in image.shape:
        raise UndecodablePixels(f"pixel data decodes to shape {image.shape}, not one image of 1 or 3 channels")
    if not np.isfinite(image).all():
        raise UndecodablePixels("pixel data decodes to NaN or infinite values")
