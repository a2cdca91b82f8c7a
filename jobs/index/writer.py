"""The ``index.parquet`` schema and a writer that appends rows in batches, so memory stays flat.

Rows arrive sorted by key and are written as row groups of ``BATCH_ROWS``; the schema is fixed and no
timestamps or host names go into the file, so the same rows always give byte-identical Parquet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.index.masks import MASK_COLUMNS
from jobs.index.volumes import VOLUME_COLUMNS

BATCH_ROWS = 1024
"""Rows per row group: the only per-row state the writer holds, so memory stays flat as files grow."""

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("dataset", pa.string()),
        ("sha256", pa.string()),
        ("size", pa.int64()),
        ("format", pa.string()),
        ("label", pa.string()),
        ("patient_id", pa.string()),
        ("group_by", pa.string()),
        ("study_uid", pa.string()),
        ("series_uid", pa.string()),
        ("sop_uid", pa.string()),
        ("modality", pa.string()),
        ("body_part", pa.string()),
        ("photometric", pa.string()),
        ("transfer_syntax", pa.string()),
        ("rows", pa.int32()),
        ("columns", pa.int32()),
        ("bits_allocated", pa.int32()),
        ("bits_stored", pa.int32()),
        ("samples_per_pixel", pa.int32()),
        ("frames", pa.int32()),
        ("pixel_spacing_row", pa.float64()),
        ("pixel_spacing_col", pa.float64()),
        ("lossy_compression", pa.bool_()),
        ("official_split", pa.string()),
        ("manufacturer", pa.string()),
        ("view_position", pa.string()),
        ("patient_sex", pa.string()),
        ("patient_age", pa.string()),
        *VOLUME_COLUMNS,
        *MASK_COLUMNS,
    ]
)
COLUMNS = tuple(SCHEMA.names)


class IndexWriter:
    """Appends index rows (dicts keyed by ``COLUMNS``) to a local Parquet file, one row group per batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._batch: list[dict[str, Any]] = []
        self._writer = pq.ParquetWriter(self.path, SCHEMA, compression="zstd", write_statistics=True)

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row (missing columns are null); a full batch is written as a row group."""
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._writer.write_table(pa.Table.from_pylist(self._batch, schema=SCHEMA))
            self._batch = []

    def close(self) -> None:
        """Write the last batch and the footer (an empty index still gets the full schema)."""
        self._flush()
        self._writer.close()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
