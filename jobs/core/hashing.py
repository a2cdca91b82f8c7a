"""SHA-256 helpers and canonical JSON, so every hash in manifests and cache keys is computed one way."""

from __future__ import annotations

import hashlib
import json
import json.encoder
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
    """Deterministic, human-readable JSON for objects people open (manifests, metrics, stats, datalists).

    The bytes of ``json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)`` plus a newline,
    built faster: with ``indent`` the standard library encodes in pure Python, one generator per container, which
    was 37 % of a split of a million rows. Scalars are still encoded by ``json``'s own C functions; anything beyond
    plain JSON types (a non-string key, a subclass, a NaN) is left to ``json.dumps`` itself.
    """
    parts: list[str] = []
    try:
        _pretty(obj, "\n", parts)
    except (_Unusual, RecursionError):
        return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()
    parts.append("\n")
    return "".join(parts).encode()


class _Unusual(Exception):
    """A value ``_pretty`` leaves to ``json.dumps`` (which encodes it, or raises its own error)."""


_encode_str = json.encoder.encode_basestring  # the C encoder where available (ensure_ascii=False)
_INFINITY = float("inf")
_FLAT = frozenset({str, int, float, bool, type(None)})
_flat_encoders: dict[str, Any] = {}
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _unencodable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _flat(value: dict[str, Any] | list[Any], inner: str) -> str:
    """The items of a container of scalars as ``indent=2`` writes them at ``inner``, in one call of the C encoder
    (its item separator carries the newline and indentation), without the brackets."""
    encoder = _flat_encoders.get(inner)
    if encoder is None:
        if _c_make_encoder is None:  # an interpreter without json's C speedups: the encoder object does the same
            plain = json.JSONEncoder(sort_keys=True, ensure_ascii=False, allow_nan=False,
                                     separators=("," + inner, ": "))  # fmt: skip
            encoder = lambda v, _level: (plain.encode(v),)  # noqa: E731
        else:  # the scanner JSONEncoder.iterencode builds on every call, built once per indentation
            encoder = _c_make_encoder(None, _unencodable, _encode_str, None, ": ", "," + inner, True, False, False)
        _flat_encoders[inner] = encoder
    try:
        return "".join(encoder(value, 0))[1:-1]
    except ValueError as exc:  # a NaN or infinity: json.dumps raises its own error for it
        raise _Unusual from exc


def _scalar(value: Any) -> str | None:
    """The JSON of a plain scalar, or ``None`` for a container; ``_Unusual`` for anything else."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        if value != value or value in (_INFINITY, -_INFINITY):
            raise _Unusual  # json.dumps raises its own error for it (allow_nan=False)
        return float.__repr__(value)
    if kind is dict or kind is list or kind is tuple:
        return None
    raise _Unusual


def _pretty(value: Any, newline: str, out: list[str]) -> None:
    """Append ``value`` as ``json.dumps(..., indent=2, sort_keys=True)`` writes it at the indentation ``newline``."""
    text = _scalar(value)
    if text is not None:
        out.append(text)
        return
    inner = newline + "  "
    if type(value) is dict:
        if not value:
            out.append("{}")
            return
        if any(type(k) is not str for k in value):
            raise _Unusual  # json converts such keys to strings (and may not sort them): leave it to json
        if all(type(v) in _FLAT for v in value.values()):  # a datalist's item, a summary: one C call
            out.append("{" + inner + _flat(value, inner) + newline + "}")
            return
        out.append("{")
        first = True
        for key in sorted(value):
            out.append(inner if first else "," + inner)
            first = False
            out.append(_encode_str(key))
            out.append(": ")
            item = value[key]
            scalar = _scalar(item)
            if scalar is not None:
                out.append(scalar)
            else:
                _pretty(item, inner, out)
        out.append(newline + "}")
        return
    if not value:
        out.append("[]")
        return
    if all(type(v) in _FLAT for v in value):
        out.append("[" + inner + _flat(list(value), inner) + newline + "]")
        return
    out.append("[")
    first = True
    for item in value:
        out.append(inner if first else "," + inner)
        first = False
        scalar = _scalar(item)
        if scalar is not None:
            out.append(scalar)
        else:
            _pretty(item, inner, out)
    out.append(newline + "]")
