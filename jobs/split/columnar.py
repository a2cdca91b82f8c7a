"""The split's rows as Arrow columns: dedup by image, usable rows, units, per-split bookkeeping and the files' bytes.

A split of a million rows held every row as a Python dict (46.8 s, 5 GB; issue 18). Here the rows stay one Arrow
table, sorted by key; per-row work is Arrow or numpy kernels, and Python loops run over patients, labels or the
few rows that share an image. Each output is rendered column by column into the bytes ``jobs.split.exports``,
``jobs.split.groups`` and ``jobs.split.stats`` produce from dicts (those stay the readable reference:
``tests/jobs/split/test_columnar.py`` compares the two on random indexes, ``bench/split_digests.py`` on the demos).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.core.errors import DataError
from jobs.core.hashing import pretty_json
from jobs.core.store import Part
from jobs.split.assign import SPLIT_NAMES, PatientGroup
from jobs.split.exports import DATALIST_SECTIONS
from jobs.split.groups import IMAGE_FIELDS, Duplicate, _Groups, join_shared_images

TEXT = pa.large_string()
ROWS_PER_PART = 1 << 16
"""Rows an output part is rendered from at a time: a render holds one part's cells, not every row's (at 1M rows
the whole index's cells and lines were ~1 GB beside the index)."""


def column(table: pa.Table, name: str) -> pa.Array:
    """``name`` as one array, all nulls when the table lacks it (a dict row's ``row.get``)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, TEXT)
    return table[name].combine_chunks()


def truthy(values: pa.Array) -> np.ndarray:
    """Rows whose string is neither null nor empty (Python's ``if row.get(name)``)."""
    if pa.types.is_null(values.type):
        return np.zeros(len(values), dtype=bool)
    return pc.fill_null(pc.not_equal(values, ""), False).to_numpy(zero_copy_only=False)


def identities(table: pa.Table) -> pa.Array:
    """``jobs.split.groups.identity`` of every row: ``patient_id``, or ``<group_by>:<patient_id>`` for fallbacks."""
    patient = pc.cast(column(table, "patient_id"), TEXT)
    group_by = pc.cast(column(table, "group_by"), TEXT)
    plain = pc.or_(pc.is_null(group_by), pc.is_in(group_by, pa.array(["", "patient_id", "labels"], TEXT)))
    joined = pc.binary_join_element_wise(group_by, pa.scalar(":", TEXT), patient, pa.scalar("", TEXT))
    return pc.if_else(plain, patient, joined)


def _codes(values: pa.Array) -> np.ndarray:
    """A distinct number per distinct value (nulls share 0 with another value: mask them)."""
    return pc.fill_null(pc.dictionary_encode(values).indices, 0).to_numpy(zero_copy_only=False)


def _shared_rows(table: pa.Table, field: str) -> np.ndarray:
    """Positions of the rows whose non-empty ``field`` another row has too."""
    values = column(table, field)
    if pa.types.is_null(values.type) or not len(values):
        return np.zeros(0, dtype=np.int64)
    codes = _codes(values)
    present = truthy(values)
    counts = np.bincount(codes[present], minlength=1)
    return np.flatnonzero(present & (counts[np.where(present, codes, 0)] > 1))


@dataclass(frozen=True)
class Grouped:
    """The rows to split (one per image, sorted by key), each row's group, the rows left out as duplicates, and
    which rows had an image value (SOPInstanceUID, SHA-256) that another row of the index had too."""

    table: pa.Table
    group: pa.Array
    duplicates: list[Duplicate]
    shared: np.ndarray

    def filter(self, mask: np.ndarray) -> Grouped:
        """Only the rows ``mask`` keeps (a filter copies every column)."""
        return Grouped(self.table.filter(pa.array(mask)).combine_chunks(), self.group.filter(pa.array(mask)),
                       self.duplicates, self.shared[mask])  # fmt: skip


def group_table(table: pa.Table) -> Grouped:
    """``jobs.split.groups.group_rows`` on columns: only the rows sharing an image go through the union-find."""
    ident = identities(table)
    shared = np.union1d(*(_shared_rows(table, field) for field in IMAGE_FIELDS))
    if not len(shared):
        return Grouped(table, ident, [], np.zeros(table.num_rows, dtype=bool))
    involved = table.take(pa.array(shared)).select(
        [c for c in ("key", "lossy_compression", *IMAGE_FIELDS) if c in table.column_names]
    )
    rows = [
        {**row, "identity": i}
        for row, i in zip(involved.to_pylist(), ident.take(pa.array(shared)).to_pylist(), strict=True)
    ]
    groups = _Groups()
    dropped = join_shared_images(rows, lambda r: r["identity"], groups)
    encoded = pc.dictionary_encode(ident)
    names = encoded.dictionary.to_pylist()
    renamed = pa.array([groups.find(n) for n in names], TEXT)
    group = renamed.take(encoded.indices)
    keep = pc.invert(pc.is_in(column(table, "key"), pa.array(list(dropped), table.schema.field("key").type)))
    marked = np.zeros(table.num_rows, dtype=bool)
    marked[shared] = True
    kept = keep.to_numpy(zero_copy_only=False)
    return Grouped(
        table.filter(keep).combine_chunks(),
        group.filter(keep),
        sorted(dropped.values(), key=lambda d: d.key),
        marked[kept],
    )


def unit_positions(table: pa.Table, order: np.ndarray) -> np.ndarray:
    """Of the rows at ``order``, those ``jobs.split.tasks.units`` counts: every image outside a volume, and the
    first row (in that order) of each volume."""
    volume = column(table, "volume").take(pa.array(order))
    has = truthy(volume)
    if not has.any():
        return order
    codes = _codes(volume)
    first = np.full(int(codes.max()) + 1, len(order), dtype=np.int64)
    at = np.flatnonzero(has)
    np.minimum.at(first, codes[at], at)
    first_of = np.zeros(len(order), dtype=bool)
    first_of[first[first < len(order)]] = True
    return order[~has | first_of]


def patient_groups(patients: pa.Array, labels: pa.Array) -> list[PatientGroup]:
    """``jobs.split.assign.patient_groups`` on columns: per patient (sorted) its majority label and row count."""
    counts = (
        pa.table({"p": pc.cast(patients, TEXT), "l": pc.cast(labels, TEXT)})
        .group_by(["p", "l"])
        .aggregate([("p", "count")])
        .sort_by([("p", "ascending"), ("p_count", "descending"), ("l", "ascending")])
    )
    if not counts.num_rows:
        return []
    patient = counts["p"].combine_chunks()
    n = counts["p_count"].to_numpy()
    starts = np.flatnonzero(np.r_[True, pc.not_equal(patient[1:], patient[:-1]).to_numpy(zero_copy_only=False)])
    rows = np.add.reduceat(n, starts).tolist()
    take = pa.array(starts)
    return [
        PatientGroup(patient=p, stratum=s, rows=r)
        for p, s, r in zip(patient.take(take).to_pylist(), counts["l"].take(take).to_pylist(), rows, strict=True)
    ]


def lookup(keys: pa.Array, mapping: dict[str, int]) -> np.ndarray:
    """``mapping[key]`` for every row, looked up once per distinct key."""
    encoded = pc.dictionary_encode(keys)
    values = np.array([mapping[k] for k in encoded.dictionary.to_pylist()], dtype=np.int64)
    return values[encoded.indices.to_numpy(zero_copy_only=False)]


def _leaked(codes: np.ndarray, split: np.ndarray, size: int) -> np.ndarray:
    """The codes whose rows are in more than one split: a row that differs from the split written last for its code."""
    last = np.zeros(size, dtype=split.dtype)
    last[codes] = split
    return np.unique(codes[last[codes] != split])


def check_disjoint(table: pa.Table, group: pa.Array, split: np.ndarray, shared: np.ndarray | None = None) -> None:
    """``jobs.split.stats.check_patients_disjoint`` and ``jobs.split.groups.check_images_disjoint`` on columns, with
    their messages: ``DataError`` if a patient (each row's group) or an image (a non-empty SOPInstanceUID or SHA-256)
    has rows in two splits. The identities the groups were made from need no pass of their own: each identity has one
    group (``group_table``), so groups disjoint across splits keep their identities disjoint. The assignment cannot do
    that by construction; this is the last guard before anything is written. ``shared`` marks the rows whose image
    value another row of the index had (``Grouped.shared``): only those can clash, so only those are hashed again
    (all rows when not given)."""
    encoded = pc.dictionary_encode(pc.cast(group, TEXT))
    codes = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
    if len(leaked := _leaked(codes, split, len(encoded.dictionary))):
        names = sorted(encoded.dictionary.take(pa.array(leaked)).to_pylist())
        at = encoded.dictionary.to_pylist().index(names[0])
        in_splits = sorted({SPLIT_NAMES[i] for i in np.unique(split[codes == at])})
        raise DataError(
            f"patient {names[0]!r} is in splits {in_splits} ({len(leaked)} patients leak); "
            "nothing was written; fix the index's patient ids or the official split"
        )
    rows = np.arange(len(split)) if shared is None else np.flatnonzero(shared)
    if not len(rows):
        return
    # the reference visits splits in order, rows in order, sop_uid before sha256: report its first clash
    order = rows[np.lexsort((rows, split[rows]))]
    subset = table.take(pa.array(order))
    in_order = split[order]
    clashes = []
    for rank, field in enumerate(IMAGE_FIELDS):
        values = column(subset, field)
        if pa.types.is_null(values.type):
            continue
        present = truthy(values)
        codes = _codes(values)
        first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
        values_at, first_row = np.unique(codes[present], return_index=True)
        first[values_at] = in_order[present][first_row]  # each value's split where the reference first meets it
        clash = np.flatnonzero(present & (first[codes] != in_order))
        if len(clash):
            clashes.append((int(clash[0]), rank, field, int(first[codes[clash[0]]])))
    if clashes:
        k, _, field, other = min(clashes)
        raise DataError(
            f"{field} {column(subset, field)[k].as_py()} is in splits {SPLIT_NAMES[other]!r} and "
            f"{SPLIT_NAMES[int(in_order[k])]!r} (row {column(subset, 'key')[k].as_py()!r}); nothing was written; "
            "the index must list each image once (rerun irmsia-index --force)"
        )


def _probe_quoted() -> bytes:
    """The ASCII characters that make ``csv.writer`` quote a field (this Python's rules, asked once)."""
    quoted = []
    for code in range(128):
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([f"a{chr(code)}", ""])
        if out.getvalue().startswith('"'):
            quoted.append(code)
    return bytes(quoted)


_CSV_QUOTED = _probe_quoted()
_CSV_QUOTED_RE = "[" + "".join(f"\\x{c:02x}" for c in _CSV_QUOTED) + "]"
_JSON_ESCAPED = bytes([*range(0x20), ord('"'), ord("\\")])
_JSON_ESCAPED_RE = r'["\\\x00-\x1f]'
_SCAN = 1 << 20


def _may_contain(text: pa.Array, special: bytes) -> bool:
    """Whether any byte of ``special`` is in the array's character data: a scan at memory speed before a regex."""
    data = text.buffers()[2]
    if data is None or not special:
        return False
    view = memoryview(data)
    for start in range(0, view.nbytes, _SCAN):  # a slice at a time: a copy of the whole column is fresh memory
        raw = bytes(view[start : start + _SCAN])
        if len(special) <= 4:  # a few memchr scans beat one translate
            if any(raw.find(byte) >= 0 for byte in special):
                return True
        elif len(raw.translate(None, special)) != len(raw):
            return True
    return False


def _python_cells(values: pa.Array, render: Callable[[Any], str]) -> pa.Array:
    """``render`` once per distinct value."""
    encoded = pc.dictionary_encode(values)
    return pa.array([render(v) for v in encoded.dictionary.to_pylist()], TEXT).take(encoded.indices)


def _csv_cells(values: pa.Array) -> pa.Array:
    """One column as ``jobs.split.exports._cell`` and ``csv.writer`` write it: quoted where needed, ``""`` for null."""
    kind = values.type
    if pa.types.is_null(kind):
        return pa.array([""] * len(values), TEXT)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.cast(values, TEXT)
        if _may_contain(text, _CSV_QUOTED) and pc.any(quote := pc.match_substring_regex(text, _CSV_QUOTED_RE)).as_py():
            quote = pc.fill_null(quote, False)
            escaped = pc.binary_join_element_wise(
                pa.scalar('"', TEXT), pc.replace_substring(text, '"', '""'), pa.scalar('"', TEXT), pa.scalar("", TEXT)
            )
            text = pc.if_else(quote, escaped, text)
        return pc.fill_null(text, "")
    if pa.types.is_integer(kind):
        return pc.fill_null(pc.cast(values, TEXT), "")
    from jobs.split.exports import _cell

    def render(value: Any) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow([_cell(value), ""])
        return out.getvalue()[:-2]

    return pc.fill_null(_python_cells(values, render), "")


def _joined(pieces: Sequence[pa.Array | str]) -> pa.Array:
    return pc.binary_join_element_wise(
        *(pa.scalar(p, TEXT) if isinstance(p, str) else p for p in pieces), pa.scalar("", TEXT)
    )


def _text_bytes(lines: pa.Array) -> memoryview:
    """The concatenated strings of ``lines`` (each already ending in its separator), viewed in place."""
    if not len(lines):
        return memoryview(b"")
    lines = pa.concat_arrays([lines]) if lines.offset else lines
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])))


def csv_prefixes(table: pa.Table, columns: Sequence[str]) -> pa.Array:
    """Every row's CSV line up to its ``split`` cell: its cells in ``columns``, each followed by a comma."""
    cells = [_csv_cells(column(table, name)) for name in columns]
    return pc.binary_join_element_wise(*cells, pa.scalar("", TEXT), pa.scalar(",", TEXT))


def csv_header(columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(columns)
    return out.getvalue().encode()


def chunks(positions: np.ndarray) -> list[pa.Array]:
    """``positions`` in runs of ``ROWS_PER_PART``: the rows one part of an output is rendered from."""
    return [pa.array(positions[i : i + ROWS_PER_PART]) for i in range(0, len(positions), ROWS_PER_PART)]


def split_csv(
    header: bytes,
    table: pa.Table,
    columns: Sequence[str],
    positions: np.ndarray,
    split: str,
    fold: pa.Array | None,
    map_: Callable[..., Iterable[memoryview]] = map,
) -> list[Part]:
    """A split's CSV, in parts: the header, then a part per chunk of its rows (``positions`` in ``table``), each
    row's line (``csv_prefixes``) ending in ``split`` (and the row's ``fold``). ``map_`` renders the chunks (an
    executor's ``map`` renders them side by side)."""

    rows = table.select(list(columns))

    def part(take: pa.Array) -> memoryview:
        ends: list[pa.Array | str] = [f"{split}\n"]
        if fold is not None:
            ends = [f"{split},", pc.fill_null(fold.take(take), ""), "\n"]
        return _text_bytes(_joined([csv_prefixes(rows.take(take), columns), *ends]))

    return [header, *map_(part, chunks(positions))]


def txt(keys: pa.Array) -> list[Part]:
    """A split's TXT (a key a line), in parts."""
    return [_text_bytes(_joined([pc.cast(keys, TEXT), "\n"]))]


def json_strings(values: pa.Array) -> pa.Array:
    """Each string as ``json.dumps(ensure_ascii=False)`` writes it; ``null`` for a null."""
    from jobs.core.hashing import _encode_str

    text = pc.cast(values, TEXT)
    plain = _joined(['"', text, '"'])
    if _may_contain(text, _JSON_ESCAPED):
        special = pc.fill_null(pc.match_substring_regex(text, _JSON_ESCAPED_RE), False)
        plain = pc.if_else(special, _python_cells(text, lambda v: _encode_str(v) if v is not None else "null"), plain)
    return pc.fill_null(plain, "null")


def _json_ints(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.cast(values, TEXT), "null")


def _optional(present: np.ndarray, text: pa.Array, prefix: str) -> pa.Array:
    """``prefix + text`` where ``present``, else the empty string."""
    return pc.if_else(pa.array(present), _joined([prefix, text]), pa.scalar("", TEXT))


def datalist_items(table: pa.Table, label: pa.Array, fold: pa.Array | None) -> pa.Array:
    """Every row's datalist item (``jobs.split.exports._item``) as ``pretty_json`` indents it in a section."""
    at = ",\n      "
    volume = column(table, "volume")
    has_volume = pc.is_valid(volume).to_numpy(zero_copy_only=False)
    slice_ = column(table, "slice_index")
    has_slice = has_volume & pc.is_valid(slice_).to_numpy(zero_copy_only=False)
    has_mask = truthy(column(table, "mask_key")) & truthy(column(table, "mask_sha256"))
    empty = pa.scalar("", TEXT)
    pieces: list[pa.Array | str] = ["    {\n      "]
    if fold is not None:
        pieces += [pc.if_else(pc.is_valid(fold), _joined(['"fold": ', fold, at]), empty)]
    pieces += ['"image": ', json_strings(column(table, "key")), at, '"label": ', label, at, '"label_name": ',
               json_strings(column(table, "label"))]  # fmt: skip
    pieces += [_optional(has_mask, json_strings(column(table, "mask_sha256")), at + '"label_sha256": ')]
    pieces += [at, '"patient_id": ', json_strings(column(table, "patient_id")), at, '"sha256": ',
               json_strings(column(table, "sha256"))]  # fmt: skip
    pieces += [_optional(has_slice, _json_ints(slice_), at + '"slice": ')]
    pieces += [_optional(has_volume, json_strings(volume), at + '"volume": ')]
    pieces += ["\n    },\n"]
    return _joined(pieces)


def datalist(
    classes: Sequence[str],
    task: str,
    items: Callable[[pa.Array], pa.Array],
    positions: dict[str, np.ndarray],
    map_: Callable[..., Iterable[memoryview]] = map,
) -> list[Part]:
    """``jobs.split.exports.datalist_bytes``'s bytes, in parts: a part per chunk of each split's rows (``positions``),
    ``items(take)`` rendering those rows' items (``datalist_items``); ``map_`` renders the chunks."""
    head = pretty_json({"labels": list(classes), "task": task})[:-3]  # without "\n}\n"
    parts: list[Part] = [head]
    for split, section in sorted(DATALIST_SECTIONS.items(), key=lambda item: item[1]):
        parts.append(f',\n  "{section}": '.encode())
        if not len(positions[split]):
            parts.append(b"[]")
            continue
        body: list[memoryview] = [*map_(lambda take: _text_bytes(items(take)), chunks(positions[split]))]
        body[-1] = body[-1][: body[-1].nbytes - 2]  # without the last item's ",\n"
        parts += [b"[\n", *body, b"\n  ]"]
    parts.append(b"\n}\n")
    return parts


def per_label(labels: pa.Array, render: Callable[[Any], Any]) -> pa.Array:
    """``render(label)`` as JSON text at an item key's indentation, computed once per distinct label."""
    from jobs.core.hashing import _pretty

    def text(value: Any) -> str:
        out: list[str] = []
        _pretty(render(value), "\n      ", out)
        return "".join(out)

    return _python_cells(labels, text)


def class_counts(labels: pa.Array, classes_of: Callable[[Any], Iterable[str]]) -> Counter[str]:
    """How many rows count for each class (``classes_of`` a label), computed once per distinct label."""
    counts: Counter[str] = Counter()
    if not len(labels):
        return counts
    for entry in pc.value_counts(labels).to_pylist():
        for name in classes_of(entry["values"]):
            counts[name] += entry["counts"]
    return counts


def distinct(values: pa.Array) -> int:
    """Distinct non-empty values (``len({v for v in values if v})``)."""
    present = truthy(values)
    if not present.any():
        return 0
    return len(pc.unique(values.filter(pa.array(present))))
