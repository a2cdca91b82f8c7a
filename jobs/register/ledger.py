"""The hash-chained ledger of a model's registrations: one object per entry, each created exclusively.

Entry ``n`` is ``registry/<name>/ledger/<n>.json`` (canonical JSON). It holds the version it registers, the
SHA-256 of that version's ``configs/metadata.json``, the SHA-256 and content hash of its sealing
``_SUCCESS.json`` (which lists every file's SHA-256), and ``prev_sha256``: the SHA-256 of entry ``n-1``'s
bytes (64 zeros for entry 1). Changing any entry therefore breaks the link from its successor; ``verify.py``
walks the chain.

Appending reads the head, builds entry ``head+1`` and creates it with ``put_if_absent``. Only one writer can
create a given entry, so the chain never forks; a writer that loses rereads the head and links to the winner.
An entry is the commit point of a registration: a version exists for readers exactly when an entry names it.
This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import DataError, TransientError
from jobs.core.hashing import canonical_json, sha256_bytes
from jobs.core.store import Store
from jobs.register.layout import ledger_prefix, seq_key, seq_of

GENESIS = "0" * 64
MAX_APPEND_ATTEMPTS = 1000


@dataclass(frozen=True)
class LedgerEntry:
    """One stored ledger entry: its parsed fields, and the SHA-256 of its exact bytes (what the next links to)."""

    seq: int
    fields: dict[str, Any]
    sha256: str

    @property
    def version(self) -> int:
        return int(self.fields["version"])

    @property
    def prev_sha256(self) -> str:
        return str(self.fields.get("prev_sha256", ""))

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.fields.get("metrics") or {})


def entry_keys(store: Store, name: str) -> list[tuple[int, str]]:
    """``(seq, key)`` of every stored ledger entry, in sequence order."""
    prefix = ledger_prefix(name)
    found = [(seq_of(o.key, prefix), o.key) for o in store.list(prefix)]
    return sorted((seq, key) for seq, key in found if seq is not None)


def parse_entry(raw: bytes, seq: int, key: str) -> LedgerEntry:
    try:
        fields = json.loads(raw)
        if not isinstance(fields, dict) or int(fields["seq"]) != seq:
            raise ValueError(f"seq field is {fields.get('seq') if isinstance(fields, dict) else None}, key says {seq}")
        int(fields["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{key}: not a valid ledger entry ({exc}); run irmsia registry verify") from exc
    return LedgerEntry(seq, fields, sha256_bytes(raw))


def read_entry(store: Store, name: str, seq: int) -> LedgerEntry:
    key = seq_key(ledger_prefix(name), seq)
    # The chain, not the store's own checksum, is what proves integrity: read the bytes as they are.
    return parse_entry(store.get_bytes(key, verify=False), seq, key)


def read_entries(store: Store, name: str) -> list[LedgerEntry]:
    """Every ledger entry in order (parsed, not verified: ``verify.py`` checks the chain)."""
    return [parse_entry(store.get_bytes(key, verify=False), seq, key) for seq, key in entry_keys(store, name)]


def head(store: Store, name: str) -> LedgerEntry | None:
    """The last entry, or ``None`` for an empty ledger."""
    keys = entry_keys(store, name)
    return read_entry(store, name, keys[-1][0]) if keys else None


def append(store: Store, name: str, fields: dict[str, Any], token: str) -> LedgerEntry:
    """Append an entry holding ``fields`` (plus ``seq``, ``prev_sha256`` and ``token``) and return it."""
    for _ in range(MAX_APPEND_ATTEMPTS):
        last = head(store, name)
        seq = (last.seq if last else 0) + 1
        body = canonical_json({**fields, "seq": seq, "prev_sha256": last.sha256 if last else GENESIS, "token": token})
        if store.put_if_absent(seq_key(ledger_prefix(name), seq), body):
            return parse_entry(body, seq, seq_key(ledger_prefix(name), seq))
        mine = read_entry(store, name, seq)
        if mine.fields.get("token") == token:
            return mine  # a lost response: our write went through before the store said it exists
    raise TransientError(f"could not append to the ledger of {name!r} after {MAX_APPEND_ATTEMPTS} tries; retry later")


def find_version(entries: list[LedgerEntry], version: int) -> LedgerEntry | None:
    """The entry that registered ``version``, if any."""
    return next((e for e in entries if e.version == version), None)
