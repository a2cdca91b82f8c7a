"""A local NBIA v4 server (TCIA's REST API) on 127.0.0.1: the GET endpoints and ZIP bodies the collector uses.

``getCollectionValues``, ``getPatient``, ``getSeries`` (filters ``Collection``, ``PatientID``, ``Modality``,
``BodyPartExamined``, ``SeriesInstanceUID``; an empty body when nothing matches, as NBIA does) and
``getImage?SeriesInstanceUID=…`` (a ZIP of the series' DICOM files plus a ``LICENSE`` member). Faults from
``FaultyHttpServer`` apply to ``getImage`` per series: queue them with ``fault_series(uid, …)``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_server import FaultyHandler, FaultyHttpServer

API = "/nbia-api/services/v4/"
LICENSE_TEXT = (
    b"Creative Commons Attribution 4.0 International (CC BY 4.0)\nhttps://creativecommons.org/licenses/by/4.0/\n"
)


def dicom_bytes(patient: str, study: str, series: str, sop: str, modality: str, size: int = 16) -> bytes:
    """A small valid DICOM file with the given identifiers."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = patient, study, series, modality
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    seed = sum(map(ord, sop))
    ds.PixelData = np.random.default_rng(seed).integers(0, 4096, (size, size), dtype="<u2").tobytes()
    ds.preamble = b"\x00" * 128
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def series_zip(files: dict[str, bytes], license_text: bytes | None = LICENSE_TEXT,
               compression: int = zipfile.ZIP_DEFLATED) -> bytes:  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
        if license_text is not None:
            zf.writestr("LICENSE", license_text)
    return buf.getvalue()


@dataclass
class TciaServer(FaultyHttpServer):
    """An NBIA v4 API over an in-memory catalogue of series."""

    series: list[dict[str, Any]] = field(default_factory=list)
    zips: dict[str, bytes] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.url(API)

    def add_series(self, collection: str, patient: str, study: str, uid: str, modality: str = "CT",
                   body_part: str = "CHEST", images: int = 3, image_size: int = 16,
                   zip_bytes: bytes | None = None, compression: int = zipfile.ZIP_DEFLATED,
                   ) -> dict[str, bytes]:  # fmt: skip
        """Add a series of ``images`` DICOM files; returns the files (name -> bytes) its ZIP holds."""
        files = {f"1-{i:02d}.dcm": dicom_bytes(patient, study, uid, f"{uid}.{i}", modality, image_size)
                 for i in range(1, images + 1)}  # fmt: skip
        self.zips[uid] = zip_bytes if zip_bytes is not None else series_zip(files, compression=compression)
        self.series.append({
            "SeriesInstanceUID": uid, "StudyInstanceUID": study, "PatientID": patient, "Collection": collection,
            "Modality": modality, "BodyPartExamined": body_part, "ImageCount": images,
            "LicenseName": "CC BY 4.0", "FileSize": len(self.zips[uid]),
            "CollectionURI": f"https://doi.org/10.7937/tcia.{collection.lower()}",
            "DateReleased": "2024-05-01 00:00:00.0",
        })  # fmt: skip
        return files

    def fault_series(self, uid: str, *names: str) -> None:
        self.fault(f"{API}getImage?{uid}", *names)

    def __post_init__(self) -> None:
        self.routes.update({
            API + "getCollectionValues": self._collections,
            API + "getPatient": self._patients,
            API + "getSeries": self._series,
            API + "getImage": self._image,
        })  # fmt: skip

    @staticmethod
    def _answer(handler: FaultyHandler, rows: list[dict[str, Any]]) -> bool:
        if rows:
            handler.send_json(rows)
        else:  # NBIA answers "no matches" with an empty body
            handler.send_body(200, b"", "application/json")
        return True

    def _collections(self, handler, query, body) -> bool:
        names = sorted({s["Collection"] for s in self.series})
        return self._answer(handler, [{"Collection": n} for n in names])

    def _patients(self, handler, query, body) -> bool:
        coll = query.get("Collection", [None])[0]
        ids = sorted({(s["PatientID"], s["Collection"]) for s in self.series if coll in (None, s["Collection"])})
        return self._answer(handler, [{"PatientId": p, "Collection": c} for p, c in ids])

    def _series(self, handler, query, body) -> bool:
        keys = ("Collection", "PatientID", "Modality", "BodyPartExamined", "SeriesInstanceUID")
        wanted = {k: query[k][0] for k in keys if k in query}
        rows = [s for s in self.series if all(str(s.get(k)) == v for k, v in wanted.items())]
        return self._answer(handler, rows)

    def _image(self, handler, query, body) -> bool:
        uid = query.get("SeriesInstanceUID", [""])[0]
        queue = self.faults.get(f"{API}getImage?{uid}")
        fault = queue.popleft() if queue else handler.fault_now
        if fault in ("429", "500", "503", "404"):
            extra = {"Retry-After": self.retry_after} if fault == "429" else {}
            handler.send_body(int(fault), b"fault", "text/plain", extra)
            return True
        if uid not in self.zips:
            handler.send_body(404, b"no such series", "text/plain")
            return True
        handler.serve_bytes(self.zips[uid], fault, "application/zip")
        return True
