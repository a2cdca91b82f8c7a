"""Decode every item once and cache the tensors on local disk, memory-mapped: the data the loop trains from.

Objects are read from the store by key (on S3 downloaded once into ``<cache-dir>/objects/``), decoded and
preprocessed by ``jobs.ml.preprocess`` in a process pool, and streamed, item by item as they arrive, into one
float16 ``.npy`` array per split under ``<cache-dir>/tensors/<key>/``, written with ``pwrite`` and trained from
memory-mapped: the decoded dataset is never held in RAM (nor mapped while it is written), so a 3-D dataset larger
than memory caches and trains. Segmentation masks go to a uint8 array of class indices beside it (the sorted label
values found in the masks, 0 = background, recorded in ``meta.json``). The key hashes the split manifest, the task
and the preprocessing, so a rerun, a resumed pod or a later epoch never decodes again. Unreadable items are counted
and skipped with a warning up to ``--max-unreadable``, then the run fails (exit 3). No torch here: decode workers
stay light.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.errors import ChecksumMismatch, DataError, IrmsiaError
from jobs.core.hashing import sha256_bytes, sha256_json
from jobs.core.store import Store, open_store
from jobs.ml.preprocess import Preprocessing, to_channels
from jobs.ml.quiet import quiet_decoders
from jobs.train.data import SPLITS, Item, Split

log = logging.getLogger("irmsia.train.cache")
CACHE_FORMAT = 2
MAX_LABEL_VALUES = 64
"""A mask with more distinct values than this is not a label map (a lossy or intensity image): unreadable."""
_CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class ImageSet:
    """One split's decoded inputs ``(N, C, *spatial)`` float16 in [0, 1] (memory-mapped), labels and names.

    ``labels``: class indices ``(N,)``, finding vectors ``(N, K)`` float32, or class-index masks ``(N, *spatial)``
    uint8 (memory-mapped). ``spacing``: each item's voxel spacing on the model grid (mm; ``None`` when unknown).
    """

    images: np.ndarray
    labels: np.ndarray
    keys: tuple[str, ...]
    spacing: tuple[tuple[float, ...] | None, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Decoded:
    """One item after decoding: its input in its own channels, its raw label map (segmentation) and spacing."""

    image: np.ndarray
    mask: np.ndarray | None
    spacing: tuple[float, ...] | None


# -- decoding ----------------------------------------------------------------------------------------------------
_WORKER_STORE: dict[str, Store] = {}


def _read(store_uri: str, key: str, objects_dir: str | None, sha256: str | None) -> bytes:
    """The raw bytes of ``key``, which must hash to ``sha256`` (the index's record, through the datalist): a byte
    changed after indexing is ``ChecksumMismatch`` (exit 3), never an image trained on or skipped as unreadable."""
    store = _WORKER_STORE.get(store_uri)
    if store is None:
        store = _WORKER_STORE[store_uri] = open_store(store_uri)
    if objects_dir is None:  # the file store: the object is already a local file
        data = store.get_bytes(key, verify=False)
    else:
        local = Path(objects_dir) / key
        if not local.exists():
            store.get_file(key, local, verify=False)
        data = local.read_bytes()
    if sha256 is not None and (actual := sha256_bytes(data)) != sha256:
        raise ChecksumMismatch(
            f"{key}: SHA-256 is {actual}, the index recorded {sha256}; the file changed after it was indexed: "
            "recollect it (irmsia-collect --force) and rerun irmsia-index and irmsia-split"
        )
    return data


def _decode(
    store_uri: str, item: Item, objects_dir: str | None, prep: Preprocessing, checksums: dict[str, str]
) -> Decoded:
    files = [_read(store_uri, key, objects_dir, checksums.get(key)) for key in item.keys]
    spacing: tuple[float, ...] | None = None
    if prep.dims == 3:
        image, spacing = prep.volume(files, item.name)
    else:
        image = prep.prepare(files, item.name)
    mask = None
    if item.masks:
        if len(item.masks) != len(item.keys):
            raise DataError(f"{item.name}: {len(item.masks)} mask file(s) for {len(item.keys)} image file(s)")
        masks = [_read(store_uri, key, objects_dir, checksums.get(key)) for key in item.masks]
        mask = prep.label_map(masks, item.masks[0] if len(masks) == 1 else f"the masks of {item.name}")
        values = np.unique(mask)
        if len(values) > MAX_LABEL_VALUES or values.min() < 0:
            raise DataError(
                f"{item.masks[0]}: {len(values)} distinct values from {values.min()}; a label map holds a few whole "
                "class values (0 = background) in a lossless format"
            )
    return Decoded(image.astype(np.float16), mask, spacing)


_Task = tuple[str, str | Item, str | None, dict[str, Any], dict[str, str] | str]
"""A worker's job: store URI, item (or key), local objects folder, preprocessing, the SHA-256 of each of its files
(of the key's file, for a key)."""


def _decode_one(task: _Task) -> tuple[Decoded | None, str]:
    """Worker: one item (or one key) to its decoded input, or ``(None, reason)`` if unreadable; bytes that differ
    from the index's record raise (they are corrupt data, not an unreadable image)."""
    store_uri, item, objects_dir, prep, checksums = task
    if isinstance(item, str):
        item = Item(item, (item,))
    if isinstance(checksums, str):
        checksums = {item.name: checksums}
    try:
        with quiet_decoders():
            return _decode(store_uri, item, objects_dir, Preprocessing.from_dict(prep), checksums), ""
    except IrmsiaError as exc:
        # transient storage failures and changed bytes must not be mistaken for bad images
        if exc.exit_code != 3 or isinstance(exc, ChecksumMismatch):
            raise
        return None, str(exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a decoder's Rust panic (pyo3's PanicException) is not an Exception
        return None, f"{item.name}: {type(exc).__name__}: {exc}"


def _decode_all(tasks: list[_Task], workers: int) -> Iterator[tuple[Any, str]]:
    """Decoded items in input order, as they come (never all at once); a pool only when it pays off: 64 images,
    or 8 volumes (each far more work than an image)."""
    volumes = bool(tasks) and tasks[0][3].get("dims") == 3
    if workers <= 1 or len(tasks) < (8 if volumes else 64):
        yield from (_decode_one(t) for t in tasks)
        return
    # forkserver: workers start from a clean interpreter, never from a process that has torch threads running.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver")) as pool:
        yield from pool.map(_decode_one, tasks, chunksize=max(1, min(8, len(tasks) // (workers * 8))))


# -- the on-disk arrays ------------------------------------------------------------------------------------------
def _shrink_npy(path: Path, rows: int) -> None:
    """Cut a ``.npy`` file to its first ``rows`` along axis 0: the header is rewritten in place at its own length
    (shorter shape text, more padding) and the file truncated after the kept rows."""
    fmt = np.lib.format
    with open(path, "r+b") as fh:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        data_at = fh.tell()
        text_at = len(fmt.magic(*version)) + (2 if version == (1, 0) else 4)
        header = {"descr": fmt.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (rows, *shape[1:])}
        text = repr(header).encode("latin1")
        room = data_at - text_at - 1  # the dictionary, its padding, then a newline
        fh.seek(text_at)
        fh.write(text.ljust(room) + b"\n")
        fh.truncate(data_at + rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def _chunk_rows(row_bytes: int) -> int:
    """Rows per read-back chunk: about ``_CHUNK_BYTES`` whatever the item size (64 images, or one 128³ volume)."""
    return max(1, _CHUNK_BYTES // max(1, row_bytes))


class _RowFile:
    """A ``.npy`` array of fixed capacity written row by row with ``pwrite`` and read back in chunks with
    ``pread``. Nothing of it is mapped into this process: pages written through a memory map stay resident in
    the writer until it unmaps them, so a mapped cache's RSS grew with the dataset; written like this, the
    decode's resident memory is a few items whatever the dataset's size (the page cache holds the rest)."""

    def __init__(self, path: Path, dtype: Any, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, np.dtype(dtype), shape
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
            )
            self.offset = fh.tell()
            self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
            fh.truncate(self.offset + shape[0] * self.row_bytes)  # sparse until written
        self.fd = os.open(path, os.O_RDWR)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Rows ``start..`` from ``rows`` (``(n, *shape[1:])``, cast to the file's dtype)."""
        if rows.shape[1:] != self.shape[1:] or start + len(rows) > self.shape[0]:
            raise ValueError(f"{self.path}: rows {rows.shape} at {start} do not fit {self.shape}")
        view = np.ascontiguousarray(rows, dtype=self.dtype).data.cast("B")
        at = self.offset + start * self.row_bytes
        while view:
            written = os.pwrite(self.fd, view, at)
            view, at = view[written:], at + written

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start..stop`` as a new array."""
        size = (stop - start) * self.row_bytes
        data = bytearray(size)
        view, at = memoryview(data), self.offset + start * self.row_bytes
        while view:
            got = os.preadv(self.fd, [view], at)
            if not got:
                raise DataError(f"{self.path}: cache file shorter than its header says; delete the cache folder")
            view, at = view[got:], at + got
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.shape[1:])

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        step = _chunk_rows(self.row_bytes)
        for start in range(0, rows, step):
            yield start, self.read(start, min(rows, start + step))

    def close(self) -> None:
        os.close(self.fd)


class _SplitArrays:
    """Streams one split's items into ``.npy`` files on disk: inputs (grey, widened to 3 channels when a colour
    item arrives), raw label maps, class labels and spacings."""

    def __init__(self, entry: Path, name: str, capacity: int, shape: tuple[int, ...], masks: bool) -> None:
        self.entry, self.name, self.capacity, self.shape = entry, name, capacity, shape
        self.rows = 0
        self.channels = 1
        self.images = self._open(f"{name}.npy", np.float16, (capacity, 1, *shape))
        self.masks = self._open(f"{name}.labels.npy", np.int32, (capacity, *shape)) if masks else None
        self.keys: list[str] = []
        self.labels: list[Any] = []
        self.spacing: list[Any] = []
        self.values: set[int] = set()

    def _open(self, file: str, dtype: Any, shape: tuple[int, ...]) -> _RowFile:
        return _RowFile(self.entry / f".{file}.part", dtype, shape)

    def _widen(self) -> None:
        """Move to three channels: replicate what is there (in chunks, so RAM stays flat)."""
        wide = self._open(f"{self.name}.rgb.npy", np.float16, (self.capacity, 3, *self.shape))
        for start, rows in self.images.chunks(self.rows):
            wide.write(start, np.repeat(rows, 3, axis=1))
        self.images.close()
        self.images.path.unlink()
        self.images, self.channels = wide, 3

    def add(self, key: str, label: Any, decoded: Decoded) -> None:
        image = decoded.image
        if image.shape[0] == 3 and self.channels == 1:
            self._widen()
        self.images.write(self.rows, to_channels(image, self.channels)[None])
        if self.masks is not None and decoded.mask is not None:
            self.masks.write(self.rows, decoded.mask[None])
            self.values.update(int(v) for v in np.unique(decoded.mask))
        self.keys.append(key)
        self.labels.append(label)
        self.spacing.append(list(decoded.spacing) if decoded.spacing is not None else None)
        self.rows += 1

    def finish(self, channels: int, values: list[int]) -> dict[str, Any]:
        """Seal the arrays under their final names (channels: the run's, values: every split's label values)."""
        if self.channels < channels:
            self._widen()
        self.images.close()
        _shrink_npy(self.images.path, self.rows)
        os.replace(self.images.path, self.entry / f"{self.name}.npy")
        if self.masks is not None:
            classes = self._open(f"{self.name}.masks.npy", np.uint8, (max(self.rows, 1), *self.shape))
            lookup = np.asarray(values, dtype=np.int64)
            for start, rows in self.masks.chunks(self.rows):
                classes.write(start, np.searchsorted(lookup, rows))
            classes.close()
            self.masks.close()
            self.masks.path.unlink()
            _shrink_npy(classes.path, self.rows)
            os.replace(classes.path, self.entry / f"{self.name}.masks.npy")
        return {"keys": self.keys, "labels": self.labels, "spacing": self.spacing}


def cache_key(split: Split, prep: Preprocessing) -> str:
    """The local tensor cache entry: same split content, items per split, task and preprocessing -> same decoded
    tensors. The items count apart from the split's content: ``--fold`` re-cuts train and val from the same split,
    and each fold must decode its own sets, not reuse another fold's (or the unfolded run's)."""
    return sha256_json(
        {
            "format": CACHE_FORMAT,
            "split": split.manifest.content_sha256,
            "items": sha256_json({name: [item.name for item in items] for name, items in sorted(split.items.items())}),
            "task": split.task,
            "preprocessing": {k: v for k, v in prep.to_dict().items() if k != "channels"},
        }
    )[:24]


def load_images(
    store: Store,
    split: Split,
    prep: Preprocessing,
    cache_dir: str,
    *,
    workers: int,
    max_unreadable: float,
) -> tuple[dict[str, ImageSet], int]:
    """Decoded sets per split and the model's input channel count (3 if any image is colour, else 1)."""
    entry = Path(cache_dir) / "tensors" / cache_key(split, prep)
    meta_path = entry / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        log.info("decoded images found in the local cache %s", entry)
    else:
        meta = _build_cache(store, split, prep, entry, workers, max_unreadable)
    sets = {}
    segmentation = split.task == "segmentation"
    for name in SPLITS:
        info = meta["splits"][name]
        present = bool(info["keys"])
        shape = (0, meta["channels"], *prep.input_shape)
        images = np.load(entry / f"{name}.npy", mmap_mode="r") if present else np.zeros(shape, np.float16)
        if segmentation:
            empty = np.zeros((0, *prep.input_shape), np.uint8)
            labels = np.load(entry / f"{name}.masks.npy", mmap_mode="r") if present else empty
        elif split.task == "multilabel":
            labels = np.asarray(info["labels"], np.float32).reshape(-1, len(split.classes))
        else:
            labels = np.asarray(info["labels"], np.int64)
        spacing = tuple(tuple(s) if s is not None else None for s in info.get("spacing") or [None] * len(info["keys"]))
        sets[name] = ImageSet(images=images, labels=labels, keys=tuple(info["keys"]), spacing=spacing)
    return sets, int(meta["channels"])


def label_values(cache_dir: str, split: Split, prep: Preprocessing) -> list[int]:
    """The sorted mask values of a cached segmentation split: class ``i`` is value ``label_values[i]``."""
    meta = json.loads((Path(cache_dir) / "tensors" / cache_key(split, prep) / "meta.json").read_text())
    return list(meta.get("label_values") or [])


def _build_cache(
    store: Store, split: Split, prep: Preprocessing, entry: Path, workers: int, max_unreadable: float
) -> dict[str, Any]:
    objects_dir = None
    if not store.is_local:
        # Keyed by the split's content hash, which covers every object's SHA-256 (through the index): a key whose
        # bytes changed upstream lands in a new folder instead of reusing a stale download.
        folder = sha256_bytes(f"{store.uri}|{split.manifest.content_sha256}".encode())[:24]
        objects_dir = str(Path(entry).parent.parent / "objects" / folder)
    prep_dict = prep.to_dict()
    tasks: list[_Task] = [
        (store.uri, item, objects_dir, prep_dict, {k: split.checksums[k] for k in (*item.keys, *item.masks)
                                                   if k in split.checksums})
        for name in SPLITS
        for item in split.items[name]
    ]  # fmt: skip
    total = len(tasks)
    log.info("decoding %d items with %d process(es) into %s", total, max(1, workers), entry)
    entry.mkdir(parents=True, exist_ok=True)
    segmentation = split.task == "segmentation"
    arrays = {
        name: _SplitArrays(entry, name, max(1, len(split.items[name])), prep.input_shape, segmentation)
        for name in SPLITS
    }
    results = _decode_all(tasks, workers)
    bad: list[str] = []
    for name in SPLITS:
        for item in split.items[name]:
            decoded, reason = next(results)
            if decoded is None:
                bad.append(reason)
                log.warning("skipping unreadable image: %s", reason)
            else:
                arrays[name].add(item.name, item.label, decoded)
    if total and len(bad) / total > max_unreadable:
        raise DataError(
            f"{len(bad)} of {total} images are unreadable (more than --max-unreadable {max_unreadable:g}); "
            f"first: {bad[0]}; fix or remove them and rerun irmsia-index and irmsia-split"
        )
    if bad:
        log.warning("%d of %d images were unreadable and skipped", len(bad), total)
    channels = max(a.channels for a in arrays.values())
    values = sorted(set().union(*(a.values for a in arrays.values())))
    meta: dict[str, Any] = {"channels": channels, "unreadable": bad, "splits": {}, "label_values": values}
    for name in SPLITS:
        meta["splits"][name] = arrays[name].finish(channels, values)
    # meta.json last: an entry without it is incomplete and is rebuilt.
    tmp = entry / f".meta.json.{uuid.uuid4().hex}.part"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, entry / "meta.json")
    return meta
