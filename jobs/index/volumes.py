"""Which index rows form a volume, with its shape and spacing: the ``volume`` columns of ``index.parquet``.

A NIfTI file with more than one slice is a volume of its own (its grid from the header, ``jobs.ml.nifti.grid``),
as is a multi-frame DICOM (frames x Rows x Columns, SpacingBetweenSlices or SliceThickness). Single-frame DICOM
slices of one SeriesInstanceUID form a volume when ``jobs.ml.series.order_slices`` (the rule train assembles
volumes with) accepts them: each row then gets the series as ``volume``, its place as ``slice_index`` and the
volume's shape and spacing. Series come together only once every row was seen, so the rows stream into the
Parquet file first and ``annotate`` rewrites it batch by batch with the series' columns filled in; what is held in
memory meanwhile is one small geometry record per DICOM slice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.index.dicom_header import DicomHeader
from jobs.index.formats import Geometry
from jobs.ml.series import NotAVolume, SliceGeometry, order_slices

VOLUME_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("volume", pa.string()),
    ("slice_index", pa.int32()),
    ("volume_depth", pa.int32()),
    ("volume_height", pa.int32()),
    ("volume_width", pa.int32()),
    ("spacing_z", pa.float64()),
    ("spacing_y", pa.float64()),
    ("spacing_x", pa.float64()),
)
"""The index columns this module fills: volume id (SeriesInstanceUID, or the key of a one-file volume), the row's
slice in it (series only), the volume's ``(D, H, W)`` and its ``(z, y, x)`` spacing in mm."""


def file_volume(key: str, dicom: DicomHeader | None, geometry: Geometry | None) -> dict[str, Any]:
    """The volume columns of a row that is a volume by itself (NIfTI, multi-frame DICOM); empty otherwise."""
    if geometry is not None and geometry.volume is not None and geometry.volume[0] > 1:
        depth, height, width = geometry.volume
        z, y, x = geometry.spacing or (None, None, None)
        return _columns(key, None, (depth, height, width), (z, y, x))
    if dicom is not None and (dicom.frames or 1) > 1 and dicom.rows and dicom.columns:
        spacing = (dicom.slice_spacing, dicom.pixel_spacing_row, dicom.pixel_spacing_col)
        return _columns(key, None, (dicom.frames or 1, dicom.rows, dicom.columns), spacing)
    return {}


def _columns(volume: str, index: int | None, shape: tuple[int, int, int], spacing: tuple) -> dict[str, Any]:
    z, y, x = spacing
    return {
        "volume": volume,
        "slice_index": index,
        "volume_depth": shape[0],
        "volume_height": shape[1],
        "volume_width": shape[2],
        "spacing_z": z,
        "spacing_y": y,
        "spacing_x": x,
    }


@dataclass(frozen=True, slots=True)
class _Slice:
    key: str
    geometry: SliceGeometry
    spacing: tuple[float | None, float | None]


class SeriesFinder:
    """Collects the slices of DICOM series while rows stream past; ``series()`` groups them into volumes."""

    def __init__(self) -> None:
        self._slices: dict[str, list[_Slice]] = defaultdict(list)

    def add(self, key: str, dicom: DicomHeader | None) -> None:
        """Remember a row's slice geometry if it can belong to a series volume (single frame, with a position)."""
        if dicom is None or dicom.series_uid is None or (dicom.frames or 1) > 1 or dicom.image_position is None:
            return
        geometry = SliceGeometry(dicom.image_position, dicom.image_orientation, dicom.rows, dicom.columns)  # type: ignore[arg-type]
        self._slices[dicom.series_uid].append(_Slice(key, geometry, (dicom.pixel_spacing_row, dicom.pixel_spacing_col)))

    def series(self) -> dict[str, dict[str, Any]]:
        """Key -> volume columns, for every slice of a series that forms a volume."""
        found: dict[str, dict[str, Any]] = {}
        for uid, slices in sorted(self._slices.items()):
            try:
                order = order_slices([s.geometry for s in slices])
            except NotAVolume:
                continue
            first = slices[order.order[0]]
            shape = (len(slices), first.geometry.rows or 0, first.geometry.columns or 0)
            spacing = (order.spacing, *first.spacing)
            for position, index in enumerate(order.order):
                found[slices[index].key] = _columns(uid, position, shape, spacing)
        return found


def annotate(partial: Path, final: Path, finder: SeriesFinder, schema: pa.Schema) -> int:
    """Copy ``partial`` to ``final`` row group by row group, filling the volume columns of series slices; returns
    how many volumes the index holds."""
    series = finder.series()
    volumes: set[str] = set()
    source = pq.ParquetFile(partial)
    with pq.ParquetWriter(final, schema, compression="zstd", write_statistics=True) as writer:
        for group in range(source.num_row_groups):
            rows = source.read_row_group(group).to_pylist()
            for row in rows:
                if (columns := series.get(row["key"])) is not None:
                    row.update(columns)
                if row["volume"] is not None:
                    volumes.add(row["volume"])
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        if source.num_row_groups == 0:
            writer.write_table(schema.empty_table())
    return len(volumes)
