"""SHA-256 helpers and canonical JSON, so every hash in manifests and cache keys is computed one way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20  # 1 MiB: large enough to amortise syscalls, small enough to keep memory flat.


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a local file, read in chunks (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hex SHA-256 and size of everything left in ``stream``."""
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal data always gives equal bytes (and hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of ``canonical_json(obj)``."""
    return sha256_bytes(canonical_json(obj))


def pretty_json(obj: Any) -> bytes:
    """Deterministic, human-readable JSON for objects people open (manifests, metrics, stats)."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
