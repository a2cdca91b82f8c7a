"""Reading the index stage's output: the manifests (for the cache key) and the verified, merged index rows.

Only what a manifest lists is read, and ``index.parquet``'s bytes must match the SHA-256 the manifest
recorded. When several datasets are merged, patient ids become ``<dataset>:<patient_id>`` so two datasets
never share a patient by accident (study and series UIDs, unique everywhere, stay as they are).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.core.errors import DataError
from jobs.core.hashing import sha256_bytes
from jobs.core.manifest import Manifest, read_manifest
from jobs.core.paths import index_prefix
from jobs.core.store import Store
from jobs.split.groups import GLOBAL_IDENTITIES

INDEX_FILE = "index.parquet"
REQUIRED_COLUMNS = ("key", "dataset", "label", "patient_id")
OFFICIAL_COLUMN = "official_split"
"""Optional index column set by layout adapters with an official split (NIH): ``train``, ``val`` or ``test``."""


@dataclass(frozen=True)
class IndexRows:
    """The rows of one or more indexes, sorted by key, and the order of their columns."""

    columns: tuple[str, ...]
    rows: list[dict[str, Any]]


def index_manifests(store: Store, datasets: Sequence[str], flag: str) -> dict[str, Manifest]:
    """``index/<dataset>/`` -> its manifest, for each dataset; ``DataError`` naming a dataset never indexed."""
    manifests = {}
    for dataset in datasets:
        prefix = index_prefix(dataset)
        manifest = read_manifest(store, prefix)
        if manifest is None:
            raise DataError(
                f"{flag} {dataset!r}: no index at {store.uri}/{prefix} (no sealed _SUCCESS.json); "
                f"run irmsia-index --dataset {dataset} first"
            )
        manifests[prefix] = manifest
    return manifests


def _read_table(store: Store, manifest: Manifest) -> pa.Table:
    record = manifest.output(INDEX_FILE)
    data = store.get_bytes(record.key)
    if sha256_bytes(data) != record.sha256:
        raise DataError(
            f"{record.key}: SHA-256 differs from the one its manifest recorded; the index changed after it was "
            f"sealed, rerun irmsia-index --force for {manifest.prefix}"
        )
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{record.key}: not a readable Parquet file ({exc}); rerun irmsia-index --force") from exc
    if missing := [c for c in REQUIRED_COLUMNS if c not in table.column_names]:
        raise DataError(f"{record.key}: missing columns {missing}; rerun irmsia-index --force with this version")
    return table


def load_index_rows(store: Store, manifests: Mapping[str, Manifest], namespace_patients: bool) -> IndexRows:
    """All rows of the indexes, sorted by key; ``DataError`` on duplicate keys or rows without a patient."""
    columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    for prefix, manifest in sorted(manifests.items()):
        table = _read_table(store, manifest)
        columns.update(dict.fromkeys(c for c in table.column_names if c != "split"))
        dataset = prefix.split("/")[1]
        for row in table.to_pylist():
            row.pop("split", None)
            if row["patient_id"] is None or row["patient_id"] == "":
                raise DataError(
                    f"{manifest.output(INDEX_FILE).key}: row {row['key']!r} has no patient_id; the index must "
                    "give every row a patient (rerun irmsia-index --force)"
                )
            if namespace_patients and row.get("group_by") not in GLOBAL_IDENTITIES:  # a UID is the same everywhere
                row["patient_id"] = f"{dataset}:{row['patient_id']}"
            rows.append(row)
    rows.sort(key=lambda r: r["key"])
    for before, after in pairwise(rows):
        if before["key"] == after["key"]:
            raise DataError(f"key {after['key']!r} appears twice in the index; rerun irmsia-index --force")
    for row in rows:  # merged indexes may differ in optional columns
        for column in columns:
            row.setdefault(column, None)
    return IndexRows(columns=tuple(columns), rows=rows)
