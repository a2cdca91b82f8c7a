"""``irmsia registry verify``: recompute every hash of a model's registry and report the first break.

Walked in ledger order, so the break reported is the earliest: each entry must pass the chain rules of
``ledger.check_entry`` (stored under sequence ``n`` with no gaps, ``prev_sha256`` equal to the SHA-256 of entry
``n-1``'s bytes, this model, no version registered twice, every alias move naming a known alias and a registered
version). A ``register`` entry's version must be sealed by a ``_SUCCESS.json`` whose bytes and content hash the
entry records, every file that manifest lists must hash to its recorded SHA-256 (hashed here, not taken from the
store's metadata), and ``configs/metadata.json`` must hash to the entry's ``metadata_sha256``. Alias moves are
entries, so they are checked by the same links. Then every object under ``registry/<name>/`` must belong to the
layout (``layout.py``): anything else, such as an ``aliases/`` record outside the ledger, is a break, because a
forgery must not pass as intact; bundle folders of versions never claimed or registered are only notes. The
head hash it prints is the value to keep elsewhere to also detect a rewrite of the newest entry, or an entry
appended by someone with write access to the store. This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from jobs.core.errors import DataError, IrmsiaError, ObjectNotFound
from jobs.core.hashing import sha256_bytes, sha256_stream
from jobs.core.manifest import Manifest
from jobs.core.paths import registry_prefix
from jobs.core.store import Store
from jobs.register.keys import (
    METADATA,
    claims_prefix,
    ledger_prefix,
    seq_of,
    version_manifest_key,
    version_of_folder,
    version_prefix,
)
from jobs.register.ledger import REGISTER, ChainBroken, LedgerEntry, iter_chain
from jobs.register.versions import claimed_versions


class Break(Exception):
    """Where and how the registry stopped matching its recorded hashes (internal to ``verify_registry``)."""


@dataclass
class VerifyReport:
    """The outcome: entries and files checked, the chain's head hash, and the first break (``None`` if intact)."""

    name: str
    entries: int = 0
    versions: int = 0
    alias_moves: int = 0
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
        raise Break(f"{key} is missing") from exc


def _check_version(store: Store, name: str, entry: LedgerEntry, report: VerifyReport) -> None:
    where = f"ledger entry {entry.seq} (v{entry.version})"
    key = version_manifest_key(name, entry.version)
    try:
        raw = store.get_bytes(key, verify=False)
    except ObjectNotFound as exc:
        raise Break(f"{where}: {key} is missing, so the version is not sealed") from exc
    try:
        manifest = Manifest.from_json(raw, key)
    except DataError as exc:
        raise Break(f"{where}: {exc}") from exc
    if sha256_bytes(raw) != entry.fields.get("manifest_file_sha256"):
        raise Break(f"{where}: {key} was changed: its bytes no longer hash to the ledger's manifest_file_sha256")
    if manifest.content_sha256 != entry.fields.get("manifest_sha256"):
        raise Break(
            f"{where}: {key} was changed: content hash {manifest.content_sha256}, "
            f"the ledger records {entry.fields.get('manifest_sha256')}"
        )
    if manifest.prefix != version_prefix(name, entry.version):
        raise Break(f"{where}: {key} seals {manifest.prefix!r}, not this version")
    for rec in manifest.outputs:
        actual = _hash_object(store, rec.key)
        report.files += 1
        if actual != rec.sha256:
            raise Break(f"{where}: {rec.key} SHA-256 is {actual}, recorded {rec.sha256}; the file was altered")
    meta_key = version_prefix(name, entry.version) + METADATA
    if _hash_object(store, meta_key) != entry.fields.get("metadata_sha256"):
        raise Break(f"{where}: {meta_key} does not hash to the ledger's metadata_sha256")
    meta = json.loads(store.get_bytes(meta_key, verify=False))
    recorded = {o.key[len(manifest.prefix) :]: o.sha256 for o in manifest.outputs}
    for path, sha in (meta.get("irmsia", {}).get("model_files") or {}).items():
        if recorded.get(path) != sha:
            raise Break(f"{where}: metadata lists {path} with SHA-256 {sha}, the manifest {recorded.get(path)}")


def _check_chain(store: Store, name: str, report: VerifyReport) -> set[int]:
    """Walk the chain in order, checking each registered version's bundle; the versions registered."""
    registered: set[int] = set()
    try:
        for entry in iter_chain(store, name):
            if entry.kind == REGISTER:
                _check_version(store, name, entry, report)
                registered.add(entry.version)
                report.versions += 1
            if entry.alias is not None:
                report.alias_moves += 1
            report.entries += 1
            report.head_sha256 = entry.sha256
    except ChainBroken as exc:
        raise Break(exc.detail) from exc
    return registered


def _check_layout(keys: list[str], name: str, registered: set[int], claimed: set[int], report: VerifyReport) -> None:
    """Every object must be a claim, a ledger entry or a bundle file; stray bundle folders are noted."""
    prefix = registry_prefix(name)
    stray: set[int] = set()
    for key in keys:
        if seq_of(key, claims_prefix(name)) is not None or seq_of(key, ledger_prefix(name)) is not None:
            continue
        version = version_of_folder(name, key)
        if version is not None:
            if version not in registered and version not in claimed:
                stray.add(version)
            continue
        if key.startswith(prefix + "aliases/"):
            raise Break(
                f"{key} is an alias record outside the ledger, which no reader uses (alias moves are ledger "
                f"entries): a forgery or a leftover of an older layout; delete {prefix}aliases/ and promote "
                "again with irmsia registry promote"
            )
        raise Break(f"{key} is not part of the registry (claims/, ledger/, <version>/); something other than "
                         "irmsia wrote it: remove it")  # fmt: skip
    report.notes += [f"{prefix}{n}/ holds files of a version never claimed or registered; ignored" for n in
                     sorted(stray)]  # fmt: skip


def verify_registry(store: Store, name: str) -> VerifyReport:
    """Check ``registry/<name>/`` end to end; ``DataError`` if there is no such model at all."""
    report = VerifyReport(name)
    keys = list(store.keys(registry_prefix(name)))
    claims = claimed_versions(store, name)
    if not keys:
        raise DataError(f"no model {name!r} in {store.uri}/registry/; check the name (irmsia registry list)")
    try:
        registered = _check_chain(store, name, report)
        _check_layout(keys, name, registered, set(claims), report)
    except Break as exc:
        report.first_break = str(exc)
        return report
    except (IrmsiaError, ValueError) as exc:
        report.first_break = f"unreadable registry object: {exc}"
        return report
    report.notes = [
        f"v{n} was claimed but never registered (a registration that failed or is still running); ignored"
        for n in claims
        if n not in registered
    ] + report.notes
    return report
