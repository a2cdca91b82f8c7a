"""The training data: read the sealed split, decode every image once, and cache the tensors on local disk.

Images are read from the store by key (on S3 they are downloaded once into ``<cache-dir>/objects/``), decoded and
preprocessed by ``jobs.ml.preprocess`` in a process pool, and written as one float16 array per split to
``<cache-dir>/tensors/<key>/``. The key hashes the split manifest and the preprocessing, so a rerun, a resumed pod
or a later epoch never decodes DICOM again; arrays are memory-mapped, so RAM does not have to hold the dataset.
Unreadable images are counted and skipped with a warning up to ``--max-unreadable``, then the run fails (exit 3).
No torch here: decode workers stay light.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.errors import ChecksumMismatch, DataError, IrmsiaError, UsageError
from jobs.core.hashing import sha256_bytes, sha256_json
from jobs.core.manifest import Manifest, read_output, require_manifest
from jobs.core.paths import splits_prefix
from jobs.core.store import Store, open_store
from jobs.ml.preprocess import Preprocessing, to_channels
from jobs.ml.quiet import quiet_decoders

log = logging.getLogger("irmsia.train.data")
SPLITS = ("train", "val", "test")
_DATALIST_SECTIONS = {"train": "training", "val": "validation", "test": "test"}
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Split:
    """The sealed split: its manifest, class names (index order), ``(key, label)`` items per split, and the SHA-256
    the index recorded for every image (what the raw bytes train reads must hash to)."""

    manifest: Manifest
    classes: tuple[str, ...]
    items: dict[str, list[tuple[str, int]]]
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSet:
    """One split's decoded images ``(N, C, S, S)`` float16 in [0, 1] (possibly memory-mapped) and labels."""

    images: np.ndarray
    labels: np.ndarray
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_split(store: Store, dataset: str, fold: int | None = None) -> Split:
    """The split's manifest and items, from ``datalist.json`` (the MONAI-style list the split stage writes); with
    ``fold``, train is every train and val image outside that fold and val the images in it (cross-validation)."""
    prefix = splits_prefix(dataset)
    manifest = require_manifest(store, prefix, "split")
    where = f"{prefix}datalist.json"
    try:
        datalist = json.loads(read_output(store, manifest, "datalist.json"))  # verified against the manifest
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({exc}); rerun irmsia-split --force") from exc
    classes = datalist.get("labels") if isinstance(datalist, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{where}: 'labels' must be the list of class names; rerun irmsia-split --force")
    items: dict[str, list[tuple[str, int]]] = {}
    checksums: dict[str, str] = {}
    folds: dict[str, int] = {}
    for split, section in _DATALIST_SECTIONS.items():
        rows = datalist.get(section, [])
        parsed = []
        for n, row in enumerate(rows):
            try:
                key, label = str(row["image"]), int(row["label"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{where}: {section}[{n}] needs 'image' and an integer 'label'") from exc
            if not 0 <= label < len(classes):
                raise DataError(f"{where}: {section}[{n}] label {label} is not an index into labels {classes}")
            sha = row.get("sha256")
            if not isinstance(sha, str) or len(sha) != 64:
                raise DataError(
                    f"{where}: {section}[{n}] ({key}) has no sha256, so its bytes cannot be verified; the split was "
                    "made by an older version: rerun irmsia-split --force"
                )
            parsed.append((key, label))
            checksums[key] = sha
            if isinstance(row.get("fold"), int):
                folds[key] = row["fold"]
        items[split] = sorted(parsed)
    if fold is not None:
        items = _fold_items(items, folds, fold, where)
    return Split(manifest=manifest, classes=tuple(classes), items=items, checksums=checksums)


def _fold_items(
    items: dict[str, list[tuple[str, int]]], folds: dict[str, int], fold: int, where: str
) -> dict[str, list[tuple[str, int]]]:
    pool = items["train"] + items["val"]
    if not pool or any(key not in folds for key, _ in pool):
        raise DataError(f"{where}: --fold {fold}, but the split has no folds; rerun irmsia-split --folds K")
    count = max(folds.values()) + 1
    if fold >= count:
        raise UsageError(f"--fold {fold}: the split has {count} folds (0 to {count - 1})")
    return {
        "train": sorted(x for x in pool if folds[x[0]] != fold),
        "val": sorted(x for x in pool if folds[x[0]] == fold),
        "test": items["test"],
    }


def check_split(split: Split, where: str) -> None:
    """Refuse splits a classifier cannot learn from or be judged on (exit 3, naming what is wrong)."""
    if len(split.classes) < 2:
        raise DataError(f"{where}: {len(split.classes)} class(es) {list(split.classes)}; a classifier needs >= 2")
    for name in ("train", "val"):
        if not split.items[name]:
            raise DataError(f"{where}: the {name} split is empty; add data or change the split ratios")
    present = {label for _, label in split.items["train"]}
    missing = [c for i, c in enumerate(split.classes) if i not in present]
    if missing:
        raise DataError(
            f"{where}: class(es) {missing} have no training images; add data for them or drop them from the labels"
        )


# -- decoding --------------------------------------------------------------------------------------------------
_WORKER_STORE: dict[str, Store] = {}


def _read(store_uri: str, key: str, objects_dir: str | None, sha256: str) -> bytes:
    """The raw bytes of ``key``, which must hash to ``sha256`` (the index's record): a byte changed after indexing is
    ``ChecksumMismatch`` (exit 3), never an image trained on or skipped as unreadable."""
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
    if (actual := sha256_bytes(data)) != sha256:
        raise ChecksumMismatch(
            f"{key}: SHA-256 is {actual}, the index recorded {sha256}; the file changed after it was indexed: "
            "recollect it (irmsia-collect --force) and rerun irmsia-index and irmsia-split"
        )
    return data


def _decode_one(task: tuple[str, str, str | None, dict[str, Any], str]) -> tuple[np.ndarray | None, str]:
    """Worker: one key to a native-channel float16 array, or ``(None, reason)`` if unreadable; bytes that differ
    from the index's record raise (they are corrupt data, not an unreadable image)."""
    store_uri, key, objects_dir, prep, sha256 = task
    try:
        data = _read(store_uri, key, objects_dir, sha256)
        with quiet_decoders():
            return Preprocessing.from_dict(prep).native(data, key).astype(np.float16), ""
    except IrmsiaError as exc:
        # transient storage failures and changed bytes must not be mistaken for bad images
        if exc.exit_code != 3 or isinstance(exc, ChecksumMismatch):
            raise
        return None, str(exc)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a decoder's Rust panic (pyo3's PanicException) is not an Exception
        return None, f"{key}: {type(exc).__name__}: {exc}"


def _decode_all(tasks: list[tuple[str, str, str | None, dict[str, Any], str]], workers: int) -> list[tuple[Any, str]]:
    if workers <= 1 or len(tasks) < 64:
        return [_decode_one(t) for t in tasks]
    # forkserver: workers start from a clean interpreter, never from a process that has torch threads running.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver")) as pool:
        return list(pool.map(_decode_one, tasks, chunksize=max(1, len(tasks) // (workers * 8))))


def _save_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache_key(split: Split, prep: Preprocessing) -> str:
    """The local tensor cache entry: same split content and preprocessing -> same decoded tensors."""
    return sha256_json(
        {
            "format": CACHE_FORMAT,
            "split": split.manifest.content_sha256,
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
    """Decoded image sets per split and the model's input channel count (3 if any image is colour, else 1)."""
    entry = Path(cache_dir) / "tensors" / cache_key(split, prep)
    meta_path = entry / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        log.info("decoded images found in the local cache %s", entry)
    else:
        meta = _build_cache(store, split, prep, entry, workers, max_unreadable)
    sets = {}
    for name in SPLITS:
        info = meta["splits"][name]
        images = (
            np.load(entry / f"{name}.npy", mmap_mode="r")
            if info["keys"]
            else np.zeros((0, meta["channels"], prep.image_size, prep.image_size), np.float16)
        )
        sets[name] = ImageSet(images=images, labels=np.asarray(info["labels"], np.int64), keys=tuple(info["keys"]))
    return sets, int(meta["channels"])


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
    tasks = [
        (store.uri, key, objects_dir, prep_dict, split.checksums[key])
        for name in SPLITS
        for key, _ in split.items[name]
    ]
    total = len(tasks)
    log.info("decoding %d images with %d process(es) into %s", total, max(1, workers), entry)
    results = iter(_decode_all(tasks, workers))
    decoded: dict[str, list[tuple[str, int, np.ndarray]]] = {}
    bad: list[str] = []
    for name in SPLITS:
        decoded[name] = []
        for key, label in split.items[name]:
            array, reason = next(results)
            if array is None:
                bad.append(reason)
                log.warning("skipping unreadable image: %s", reason)
            else:
                decoded[name].append((key, label, array))
    if total and len(bad) / total > max_unreadable:
        raise DataError(
            f"{len(bad)} of {total} images are unreadable (more than --max-unreadable {max_unreadable:g}); "
            f"first: {bad[0]}; fix or remove them and rerun irmsia-index and irmsia-split"
        )
    if bad:
        log.warning("%d of %d images were unreadable and skipped", len(bad), total)
    channels = max((a.shape[0] for rows in decoded.values() for _, _, a in rows), default=1)
    entry.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"channels": channels, "unreadable": bad, "splits": {}}
    for name in SPLITS:
        rows = decoded[name]
        if rows:
            stacked = np.stack([to_channels(a, channels) for _, _, a in rows]).astype(np.float16)
            _save_atomic(entry / f"{name}.npy", lambda p, arr=stacked: _write_npy(p, arr))
        meta["splits"][name] = {"keys": [k for k, _, _ in rows], "labels": [lab for _, lab, _ in rows]}
    # meta.json last: an entry without it is incomplete and is rebuilt.
    _save_atomic(entry / "meta.json", lambda p: p.write_text(json.dumps(meta)))
    return meta


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def class_counts(labels: Sequence[int] | np.ndarray, num_classes: int) -> list[int]:
    """How many items of each class index."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()
