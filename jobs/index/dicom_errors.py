"""The two outcomes of reading a DICOM header other than a header: read further, or quarantine the file."""

from __future__ import annotations


class NeedMoreBytes(Exception):
    """The header did not end within the bytes given: read more of the object and try again."""


class UnusableDicom(ValueError):
    """A DICOM file the index cannot use; the message is the quarantine reason (``<kind>: <details>``)."""
