"""A mirror of NCI IDC's public buckets on a real SeaweedFS S3 server, filled with series named after real index rows.

IDC keeps every series under ``s3://<aws_bucket>/<crdc_series_uuid>/<crdc_instance_uuid>.dcm`` in public buckets
(``idc-open-data``, ``idc-open-data-two``, ``idc-open-data-cr``) that anyone may list and read without credentials.
``start_idc_mirror`` starts ``weed mini`` with exactly that: those buckets readable and listable anonymously, and
writable only with the server's own key. ``fill(rows)`` takes rows of the installed IDC index (``idc-index-data``)
and uploads, for each, ``instanceCount`` small valid DICOM files carrying the row's PatientID, Study and Series UIDs
and Modality, padded with DICOM's Data Set Trailing Padding so that the series adds up to exactly the index's
``series_size_MB`` bytes, as the collector checks. ``multipart`` uploads chosen objects in parts, so their ETags are
multipart ETags as S3 gives large files.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from tests.support.seaweedfs import SeaweedS3, start_seaweedfs

IDC_BUCKETS = ("idc-open-data", "idc-open-data-two", "idc-open-data-cr")
PART = 5 << 20
"""S3's smallest part size (every part but the last must be at least this)."""


def instance_uuid(series_uuid: str, number: int) -> str:
    """A stable stand-in for a crdc_instance_uuid: the same for the same series and instance number."""
    return str(uuid.uuid5(uuid.UUID(series_uuid), f"instance-{number}"))


def padded_dicom(row: dict[str, Any], number: int, size: int) -> bytes:
    """A DICOM file of exactly ``size`` bytes (even, and larger than a tiny image) for instance ``number`` of
    ``row``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    sop = "2.25." + str(uuid.UUID(instance_uuid(row["crdc_series_uuid"], number)).int)
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop
    ds.PatientID, ds.Modality = row["PatientID"], row["Modality"] or "OT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = row["StudyInstanceUID"], row["SeriesInstanceUID"]
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(number).integers(0, 4096, (8, 8), dtype="<u2").tobytes()
    ds.preamble = b"\x00" * 128
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    padding = size - len(buf.getvalue()) - 12  # explicit VR OB: tag, VR, reserved, 4-byte length
    if padding < 0 or padding % 2:
        raise ValueError(f"cannot pad a DICOM file to {size} bytes (base {len(buf.getvalue())})")
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * padding)  # Data Set Trailing Padding
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    assert len(buf.getvalue()) == size
    return buf.getvalue()


def instance_sizes(row: dict[str, Any]) -> list[int]:
    """Even sizes for the row's instances that add up to its ``series_size_MB`` (which must be even bytes)."""
    total, count = round(float(row["series_size_MB"]) * 1e6), int(row["instanceCount"] or 1)
    if total % 2:
        raise ValueError(f"series {row['SeriesInstanceUID']}: {total} bytes is odd; pick rows with even sizes")
    each = (total // count) & ~1
    return [each] * (count - 1) + [total - each * (count - 1)]


@dataclass
class IdcMirror:
    """A SeaweedFS server holding IDC-like buckets, and what was put into them."""

    server: SeaweedS3
    objects: dict[str, bytes] = field(default_factory=dict)
    """``<bucket>/<key>`` -> the bytes uploaded."""

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def fill(self, rows: list[dict[str, Any]], multipart: frozenset[str] = frozenset()) -> dict[str, dict[str, bytes]]:
        """Upload each row's series; returns ``SeriesInstanceUID -> {file name: bytes}``. Series whose
        crdc_series_uuid is in ``multipart`` are uploaded as multipart objects."""
        client = self.server.client()
        files: dict[str, dict[str, bytes]] = {}
        for row in rows:
            series = files.setdefault(row["SeriesInstanceUID"], {})
            for number, size in enumerate(instance_sizes(row), start=1):
                name = f"{instance_uuid(row['crdc_series_uuid'], number)}.dcm"
                key = f"{row['crdc_series_uuid']}/{name}"
                data = padded_dicom(row, number, size)
                if row["crdc_series_uuid"] in multipart:
                    self._put_multipart(client, row["aws_bucket"], key, data)
                else:
                    client.put_object(Bucket=row["aws_bucket"], Key=key, Body=data)
                self.objects[f"{row['aws_bucket']}/{key}"] = data
                series[name] = data
        return files

    @staticmethod
    def _put_multipart(client, bucket: str, key: str, data: bytes) -> None:
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, start in enumerate(range(0, len(data), PART), start=1):
            done = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                      Body=data[start : start + PART])  # fmt: skip
            parts.append({"ETag": done["ETag"], "PartNumber": number})
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})

    def replace(self, bucket_key: str, data: bytes) -> None:
        """Overwrite one object (a damaged mirror)."""
        bucket, key = bucket_key.split("/", 1)
        self.server.client().put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, bucket_key: str) -> None:
        bucket, key = bucket_key.split("/", 1)
        self.server.client().delete_object(Bucket=bucket, Key=key)

    def stop(self) -> None:
        self.server.stop()


def start_idc_mirror(workdir: Path) -> IdcMirror:
    """A fresh SeaweedFS with IDC's buckets, public for reading and listing."""
    server = start_seaweedfs(workdir, public_buckets=IDC_BUCKETS)
    client = server.client()
    for bucket in IDC_BUCKETS:
        client.create_bucket(Bucket=bucket)
    return IdcMirror(server)
