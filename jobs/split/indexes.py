"""Reading the index stage's output: the manifests (for the cache key) and the verified, merged index rows.

Only what a manifest lists is read, and ``index.parquet``'s bytes must match the SHA-256 the manifest
recorded. When several datasets are merged, patient ids become ``<dataset>:<patient_id>`` so two datasets
never share a patient by accident (study and series UIDs, unique everywhere, stay as they are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
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
class IndexTable:
    """The rows of one or more indexes as one table sorted by key, and the order of their columns."""

    columns: tuple[str, ...]
    table: pa.Table


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
        table = pq.read_table(pa.BufferReader(data))  # read in place: BytesIO copies every column chunk
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{record.key}: not a readable Parquet file ({exc}); rerun irmsia-index --force") from exc
    if missing := [c for c in REQUIRED_COLUMNS if c not in table.column_names]:
        raise DataError(f"{record.key}: missing columns {missing}; rerun irmsia-index --force with this version")
    return table


def _combined(names: list[str], columns: list[pa.ChunkedArray]) -> pa.Table:
    """``combine_chunks()`` a column at a time, each column's chunks let go once joined (``columns`` must hold the
    only references): the whole table held twice was the split's peak at 1M rows. Then the decoders' freed buffers
    go back to the system (mimalloc keeps them otherwise: 540 MB of 1.1 GB resident after reading a 1M-row index)."""
    for i, chunked in enumerate(columns):
        columns[i] = pa.chunked_array([chunked.combine_chunks()]) if chunked.num_chunks != 1 else chunked
        del chunked
    pa.default_memory_pool().release_unused()
    return pa.Table.from_arrays(columns, names=names)


def _prepared(store: Store, prefix: str, manifest: Manifest, namespace_patients: bool) -> pa.Table:
    """One index's table without a ``split`` column, every row with a patient (namespaced by dataset if asked)."""
    table = _read_table(store, manifest)
    if "split" in table.column_names:
        table = table.drop_columns(["split"])
    patient = table["patient_id"]
    missing = pc.fill_null(pc.equal(pc.cast(patient, pa.string()), ""), True)
    if pc.any(missing).as_py():
        first = pc.index(missing, True).as_py()
        raise DataError(
            f"{manifest.output(INDEX_FILE).key}: row {table['key'][first].as_py()!r} has no patient_id; the "
            "index must give every row a patient (rerun irmsia-index --force)"
        )
    if namespace_patients:  # a UID is the same everywhere
        group_by = table["group_by"] if "group_by" in table.column_names else pa.nulls(table.num_rows, pa.string())
        global_ = pc.fill_null(pc.is_in(group_by, pa.array(GLOBAL_IDENTITIES)), False)
        dataset = prefix.split("/")[1]
        patient = pc.if_else(global_, patient, pc.binary_join_element_wise(f"{dataset}:", patient, ""))
        table = table.set_column(table.column_names.index("patient_id"), "patient_id", patient)
    return table


def load_index_table(store: Store, manifests: Mapping[str, Manifest], namespace_patients: bool) -> IndexTable:
    """All rows of the indexes, sorted by key; ``DataError`` on duplicate keys or rows without a patient."""
    tables = [_prepared(store, prefix, m, namespace_patients) for prefix, m in sorted(manifests.items())]
    columns = dict.fromkeys(name for table in tables for name in table.column_names)
    merged = pa.concat_tables(tables, promote_options="permissive").select(list(columns))  # optional columns differ
    del tables  # the merged table holds the only references to the columns, so combining them can free them
    names, chunked = merged.column_names, merged.columns
    del merged
    merged = _combined(names, chunked)
    del chunked
    keys = merged["key"].chunk(0)  # one chunk a column now (a take of it too)
    if len(keys) > 1 and not pc.all(pc.greater(keys[1:], keys[:-1])).as_py():  # the index stage writes them sorted
        merged = merged.take(pc.sort_indices(keys))
        keys = merged["key"].chunk(0)
    if len(keys) > 1:
        same = pc.equal(keys[1:], keys[:-1])
        if pc.any(same).as_py():
            raise DataError(
                f"key {keys[pc.index(same, True).as_py() + 1].as_py()!r} appears twice in the index; rerun "
                "irmsia-index --force"
            )
    return IndexTable(columns=tuple(columns), table=merged)
