"""Split inputs built the way the index stage seals them: ``index/<dataset>/index.parquet`` plus a manifest."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.core.manifest import Manifest, StageWriter
from jobs.core.store import Store
from jobs.index.writer import SCHEMA

# The index stage's own schema, so these fixtures cannot drift from what it writes. ``official_split`` is the
# contract's optional column: left out here, added by the tests that use it (as an older index lacks it).
INDEX_SCHEMA = SCHEMA.remove(SCHEMA.get_field_index("official_split"))


def index_row(dataset: str, patient: str, n: int, label: str | None, **extra: Any) -> dict[str, Any]:
    """One index row as the index stage writes it (geometry filled so every column type is exercised)."""
    key = f"raw/{dataset}/{label or 'unlabelled'}/{patient}/img{n:03d}.dcm"
    return {
        "key": key,
        "dataset": dataset,
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
        "size": 1000 + n,
        "format": "dicom",
        "label": label,
        "patient_id": patient,
        "modality": "CR",
        "photometric": "MONOCHROME2",
        "rows": 64,
        "columns": 64,
        "bits_allocated": 16,
        "bits_stored": 12,
        "samples_per_pixel": 1,
        "frames": 1,
        "pixel_spacing_row": 0.139,
        "pixel_spacing_col": 0.139,
        **extra,
    }


def random_rows(
    seed: int, dataset: str = "ds", classes: Sequence[str] = ("NORMAL", "PNEUMONIA"), patients: int = 40
) -> list[dict[str, Any]]:
    """A random index: patients with 1-6 images each, one class per patient, each class with >= 3 patients."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        label = classes[p % len(classes)] if p < 3 * len(classes) else classes[int(rng.integers(len(classes)))]
        for n in range(int(rng.integers(1, 7))):
            rows.append(index_row(dataset, f"P{p:04d}", n, label))
    return rows


def write_index(store: Store, dataset: str, rows: Sequence[dict[str, Any]], extra: pa.Schema | None = None) -> Manifest:
    """Seal ``rows`` as ``index/<dataset>/index.parquet`` with the index stage's manifest."""
    schema = INDEX_SCHEMA if extra is None else pa.unify_schemas([INDEX_SCHEMA, extra])
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["key"]), schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    writer = StageWriter(store, "index", f"index/{dataset}/", {"dataset": dataset}, {f"raw/{dataset}/": "0" * 64})
    writer.begin()
    writer.put_bytes("index.parquet", buffer.getvalue())
    writer.put_bytes("quarantine.csv", b"key,reason\n")
    return writer.commit(summary={"rows": len(rows)})


@pytest.fixture
def seal_index() -> Callable[..., Manifest]:
    return write_index
