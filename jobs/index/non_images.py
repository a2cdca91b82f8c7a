"""What a whole DICOM file without Pixel Data is, so its quarantine reason names it (never "truncated").

A DICOM object without a Pixel Data element is usually complete and simply not an image: a DICOMDIR, a
structured report, a waveform, an encapsulated PDF, a presentation state or a radiotherapy object. The SOP class
(the data set's SOP Class UID, else the file meta's Media Storage SOP Class UID) says which; the reason's kind (up
to its first ``:`` or `` (``) is what the stage's summary counts.
"""

from __future__ import annotations

import pydicom.uid

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: the class of a DICOMDIR."""

_FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    # kind, words in the SOP class name, modalities, what it holds
    ("structured report", (" SR Storage", "Key Object Selection"), ("SR", "KO"), "coded text and measurements"),
    ("waveform", ("Waveform",), ("ECG", "HD", "EPS", "RESP", "AU"), "signal samples"),
    ("encapsulated document", ("Encapsulated",), ("DOC",), "a wrapped document (PDF, CDA, STL...)"),
    ("presentation state", ("Presentation State",), ("PR",), "display settings for other images"),
    ("radiotherapy object", ("RT ",), ("RTPLAN", "RTSTRUCT", "RTRECORD"), "a plan, structure set or record"),
)


def non_image_reason(sop_class: str | None, modality: str | None) -> str:
    """The quarantine reason for a complete DICOM object that holds no Pixel Data."""
    if sop_class == DICOMDIR_CLASS:
        return "DICOMDIR: a media directory listing other files, not an image"
    uid = pydicom.uid.UID(sop_class or "")
    name = uid.name if uid.is_valid and uid.name != str(uid) else None
    named = f"SOP class {name}" if name else (f"SOP class {sop_class}" if sop_class else "no SOP class")
    if name and "Image Storage" in name:  # an image class (RT Image too): the pixels are what is missing
        return f"no pixel data ({named}): an image header whose (7FE0,0010) Pixel Data element is absent"
    for kind, words, modalities, holds in _FAMILIES:
        if (name and any(word in name for word in words)) or (modality or "").upper() in modalities:
            return f"{kind} ({named}): holds {holds}, no Pixel Data; not an image"
    return f"DICOM without pixel data ({named}): not an image"
