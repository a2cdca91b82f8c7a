"""De-identification of DICOM files on their way into the store (``irmsia-collect --deidentify``).

Every source writes through the collect stage's ``RawSink``; with ``--deidentify`` the sink hands each DICOM file
to ``DeidFilter`` before it is stored, so no source can bypass it: the file is de-identified by the PS3.15 Annex E
Basic Application Level Confidentiality Profile (``profile``: the standard's table as dicom-anonymizer ships it;
``deidentify``: the actions, with keyed pseudonyms from ``pseudonyms``), scanned for anything identifying that is
left (``phi_scan``), and stored only if the scan finds nothing. Files that may carry identifying text in their
pixels (``BurnedInAnnotation``) are left out unless allowed.
"""
