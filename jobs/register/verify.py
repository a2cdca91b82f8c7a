"""``irmsia registry verify``: recompute every hash of a model's registry and report the first break.

The chain: entry ``n`` must be stored under sequence ``n`` with no gaps, and its ``prev_sha256`` must equal the
SHA-256 of entry ``n-1``'s bytes. Each entry's version must be sealed by a ``_SUCCESS.json`` whose content hash
the entry records, every file that manifest lists must hash to its recorded SHA-256 (hashed here, not taken
from the store's metadata), and ``configs/metadata.json`` must hash to the entry's ``metadata_sha256``. Alias
values must name registered versions. The head hash it prints is the value to keep elsewhere to also detect a
rewrite of the newest entry. This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from jobs.core.errors import DataError, IrmsiaError, ObjectNotFound
from jobs.core.hashing import sha256_bytes, sha256_stream
from jobs.core.manifest import Manifest
from jobs.core.store import Store
from jobs.register.aliases import history
from jobs.register.layout import ALIASES, METADATA, version_manifest_key, version_prefix
from jobs.register.ledger import GENESIS, LedgerEntry, entry_keys, parse_entry
from jobs.register.versions import claimed_versions


class ChainBreak(Exception):
    """Where and how the registry stopped matching its recorded hashes (internal to ``verify_registry``)."""


@dataclass
class VerifyReport:
    """The outcome: entries and files checked, the chain's head hash, and the first break (``None`` if intact)."""

    name: str
    entries: int = 0
    files: int = 0
    head_sha256: str | None = None
    first_break: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_break is None


def _hash_object(store: Store, key: str) -> str:
    try:
        with store.open_read(key, verify=False) as fh:
            return sha256_stream(fh)[0]
    except ObjectNotFound as exc:
        raise ChainBreak(f"{key} is missing") from exc


def _check_version(store: Store, name: str, entry: LedgerEntry, report: VerifyReport) -> None:
    where = f"ledger entry {entry.seq} (v{entry.version})"
    key = version_manifest_key(name, entry.version)
    try:
        raw = store.get_bytes(key, verify=False)
    except ObjectNotFound as exc:
        raise ChainBreak(f"{where}: {key} is missing, so the version is not sealed") from exc
    try:
        manifest = Manifest.from_json(raw, key)
    except DataError as exc:
        raise ChainBreak(f"{where}: {exc}") from exc
    if sha256_bytes(raw) != entry.fields.get("manifest_file_sha256"):
        raise ChainBreak(f"{where}: {key} was changed: its bytes no longer hash to the ledger's manifest_file_sha256")
    if manifest.content_sha256 != entry.fields.get("manifest_sha256"):
        raise ChainBreak(
            f"{where}: {key} was changed: content hash {manifest.content_sha256}, "
            f"the ledger records {entry.fields.get('manifest_sha256')}"
        )
    if manifest.prefix != version_prefix(name, entry.version):
        raise ChainBreak(f"{where}: {key} seals {manifest.prefix!r}, not this version")
    for rec in manifest.outputs:
        actual = _hash_object(store, rec.key)
        report.files += 1
        if actual != rec.sha256:
            raise ChainBreak(f"{where}: {rec.key} SHA-256 is {actual}, recorded {rec.sha256}; the file was altered")
    meta_key = version_prefix(name, entry.version) + METADATA
    if _hash_object(store, meta_key) != entry.fields.get("metadata_sha256"):
        raise ChainBreak(f"{where}: {meta_key} does not hash to the ledger's metadata_sha256")
    meta = json.loads(store.get_bytes(meta_key, verify=False))
    recorded = {o.key[len(manifest.prefix) :]: o.sha256 for o in manifest.outputs}
    for path, sha in (meta.get("irmsia", {}).get("model_files") or {}).items():
        if recorded.get(path) != sha:
            raise ChainBreak(f"{where}: metadata lists {path} with SHA-256 {sha}, the manifest {recorded.get(path)}")


def _check_chain(store: Store, name: str, report: VerifyReport) -> dict[int, LedgerEntry]:
    registered: dict[int, LedgerEntry] = {}
    prev = GENESIS
    for expected, (seq, key) in enumerate(entry_keys(store, name), start=1):
        if seq != expected:
            raise ChainBreak(f"ledger entry {expected} is missing (next stored is {seq}); entries were deleted")
        try:
            entry = parse_entry(store.get_bytes(key, verify=False), seq, key)
        except DataError as exc:
            raise ChainBreak(f"ledger entry {seq}: {exc}") from exc
        if entry.prev_sha256 != prev:
            raise ChainBreak(
                f"ledger entry {seq}: prev_sha256 {entry.prev_sha256} does not match entry {seq - 1}'s hash {prev}; "
                f"entry {seq - 1} was changed after entry {seq} was written"
                if seq > 1
                else f"ledger entry 1: prev_sha256 is {entry.prev_sha256}, expected the genesis value"
            )
        if entry.version in registered:
            raise ChainBreak(f"ledger entry {seq}: v{entry.version} is already registered by entry "
                             f"{registered[entry.version].seq}")  # fmt: skip
        if entry.fields.get("model_name") != name:
            raise ChainBreak(f"ledger entry {seq}: names model {entry.fields.get('model_name')!r}, not {name!r}")
        _check_version(store, name, entry, report)
        registered[entry.version] = entry
        report.entries += 1
        report.head_sha256 = prev = entry.sha256
    return registered


def verify_registry(store: Store, name: str) -> VerifyReport:
    """Check ``registry/<name>/`` end to end; ``DataError`` if there is no such model at all."""
    report = VerifyReport(name)
    claims = claimed_versions(store, name)
    if not claims and not entry_keys(store, name):
        raise DataError(f"no model {name!r} in {store.uri}/registry/; check the name (irmsia registry list)")
    try:
        registered = _check_chain(store, name, report)
        for alias in ALIASES:
            for value in history(store, name, alias):
                if value.version not in registered:
                    raise ChainBreak(f"alias {alias} #{value.seq} names v{value.version}, which the ledger lacks")
    except ChainBreak as exc:
        report.first_break = str(exc)
        return report
    except (IrmsiaError, ValueError) as exc:
        report.first_break = f"unreadable registry object: {exc}"
        return report
    report.notes = [
        f"v{n} was claimed but never registered (a registration that failed or is still running); ignored"
        for n in claims
        if n not in registered
    ]
    return report
