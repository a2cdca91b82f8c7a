"""The hash-chained ledger of a model: every registration and every alias move, one object per entry, each created
exclusively. It is the registry's only source of truth: readers know versions and aliases through it alone.

Entry ``n`` is ``registry/<name>/ledger/<n>.json`` (canonical JSON) with ``seq`` (= ``n``), ``model_name``,
``token`` (the writer's random token), ``prev_sha256`` (the SHA-256 of entry ``n-1``'s bytes; 64 zeros for entry
1) and a ``kind``:

- ``register``: version ``version`` exists. It records the SHA-256 of that version's ``configs/metadata.json``, the
  SHA-256 and content hash of its sealing ``_SUCCESS.json`` (which lists every file's SHA-256), the run, its
  train and split manifests, its metrics, and the promotion its registration decided: ``alias`` (``champion``,
  ``candidate`` or null: the alias this entry moves to ``version``) and ``promotion`` (why).
- ``alias``: alias ``alias`` now names ``version`` (a manual promotion, ``irmsia registry promote``), ``reason``.

Entries without ``kind`` (written before aliases joined the ledger) are registrations that moved no alias.

Changing any entry breaks the link from its successor, so rewriting a registration *or an alias move* is
detected. Reading validates the chain as it goes (``iter_chain``): entries ``1..n`` without gaps, each linked to
its predecessor's bytes, naming this model, of a known kind, no version registered twice, and every alias move
naming a known alias and a version an earlier entry registered. The first violation is ``ChainBroken`` (a
``DataError``), so no reader (``registry``, ``api.load_model``, ``registration``) acts on a tampered chain;
``verify.py`` reports the same break and also rehashes every bundle. Nothing links to the newest entry: keep the
head hash ``verify`` prints elsewhere to detect a rewrite of it, or an entry appended by someone with write access.

Appending (``append``) reads the chain, lets the caller build entry ``head+1`` from exactly the entries it will
link to, and creates it with ``put_if_absent``. Only one writer can create a given entry, so the chain never
forks, and a decision taken on the chain (is this run registered already? does it beat the champion?) is
committed in the same atomic step: a writer that loses rereads the new entries and builds again. A lost response
is settled by finding the writer's own token in the chain. This module imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import DataError, TransientError
from jobs.core.hashing import canonical_json, sha256_bytes
from jobs.core.store import Store
from jobs.register.keys import ALIASES, ledger_prefix, seq_key, seq_of

GENESIS = "0" * 64
MAX_APPEND_ATTEMPTS = 1000
REGISTER = "register"
ALIAS = "alias"
KINDS = (REGISTER, ALIAS)


class ChainBroken(DataError):
    """The ledger no longer holds together; ``detail`` says where, in one line (what ``verify`` reports)."""

    def __init__(self, name: str, detail: str) -> None:
        self.detail = detail
        super().__init__(f"the ledger of {name!r} is broken: {detail}; run irmsia registry verify {name}")


@dataclass(frozen=True)
class LedgerEntry:
    """One stored ledger entry: its parsed fields, and the SHA-256 of its exact bytes (what the next links to)."""

    seq: int
    fields: dict[str, Any]
    sha256: str

    @property
    def kind(self) -> str:
        return str(self.fields.get("kind", REGISTER))

    @property
    def version(self) -> int:
        """The version this entry registers, or the one its alias move points at."""
        return int(self.fields["version"])

    @property
    def alias(self) -> str | None:
        """The alias this entry moves to ``version``, if any."""
        return self.fields.get("alias") or None

    @property
    def prev_sha256(self) -> str:
        return str(self.fields.get("prev_sha256", ""))

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.fields.get("metrics") or {})


def entry_keys(store: Store, name: str) -> list[tuple[int, str]]:
    """``(seq, key)`` of every stored ledger entry, in sequence order."""
    prefix = ledger_prefix(name)
    found = [(seq_of(key, prefix), key) for key in store.keys(prefix)]
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


def registrations(entries: Sequence[LedgerEntry]) -> dict[int, LedgerEntry]:
    """``{version: the entry that registered it}``."""
    return {e.version: e for e in entries if e.kind == REGISTER}


def find_version(entries: Sequence[LedgerEntry], version: int) -> LedgerEntry | None:
    """The entry that registered ``version``, if any."""
    return registrations(entries).get(version)


def check_entry(name: str, entry: LedgerEntry, before: Sequence[LedgerEntry]) -> None:
    """``ChainBroken`` unless ``entry`` is a valid successor of the (valid) chain ``before``."""
    where = f"ledger entry {entry.seq}"
    prev = before[-1].sha256 if before else GENESIS
    if entry.prev_sha256 != prev:
        raise ChainBroken(
            name,
            f"{where}: prev_sha256 {entry.prev_sha256} does not match entry {entry.seq - 1}'s hash {prev}; "
            f"entry {entry.seq - 1} was changed after entry {entry.seq} was written"
            if before
            else f"{where}: prev_sha256 is {entry.prev_sha256}, expected the genesis value",
        )
    if entry.fields.get("model_name") != name:
        raise ChainBroken(name, f"{where}: names model {entry.fields.get('model_name')!r}, not {name!r}")
    if entry.kind not in KINDS:
        raise ChainBroken(name, f"{where}: unknown kind {entry.kind!r} (expected {' or '.join(KINDS)})")
    registered = registrations(before)
    if entry.kind == REGISTER and entry.version in registered:
        raise ChainBroken(name, f"{where}: v{entry.version} is already registered by entry "
                                f"{registered[entry.version].seq}")  # fmt: skip
    if entry.alias is not None:
        if entry.alias not in ALIASES:
            raise ChainBroken(name, f"{where}: moves alias {entry.alias!r}, which is not one of {', '.join(ALIASES)}")
        if entry.kind == ALIAS and entry.version not in registered:
            raise ChainBroken(name, f"{where}: moves {entry.alias} to v{entry.version}, which no earlier entry "
                                    "registers")  # fmt: skip
    elif entry.kind == ALIAS:
        raise ChainBroken(name, f"{where}: an alias move that names no alias")


def iter_chain(store: Store, name: str, known: Sequence[LedgerEntry] = ()) -> Iterator[LedgerEntry]:
    """The entries after ``known`` (a chain prefix already validated), each validated as it is read."""
    chain = list(known)
    skip = len(chain)
    for expected, (seq, key) in enumerate(entry_keys(store, name), start=1):
        if seq != expected:
            raise ChainBroken(name, f"ledger entry {expected} is missing (next stored is {seq}); entries were deleted")
        if seq <= skip:
            continue  # entries are immutable once created; verify rereads every one of them
        try:
            # The chain, not the store's own checksum, is what proves integrity: read the bytes as they are.
            entry = parse_entry(store.get_bytes(key, verify=False), seq, key)
        except DataError as exc:
            raise ChainBroken(name, f"ledger entry {seq}: {exc}") from exc
        check_entry(name, entry, chain)
        chain.append(entry)
        yield entry


def read_entries(store: Store, name: str) -> list[LedgerEntry]:
    """Every ledger entry in order, the chain validated (``ChainBroken`` at the first break)."""
    return list(iter_chain(store, name))


def head(store: Store, name: str) -> LedgerEntry | None:
    """The last entry, or ``None`` for an empty ledger."""
    entries = read_entries(store, name)
    return entries[-1] if entries else None


Builder = Callable[[list[LedgerEntry]], dict[str, Any] | None]


def append(store: Store, name: str, build: Builder, token: str) -> tuple[LedgerEntry | None, list[LedgerEntry]]:
    """Append the entry ``build(entries)`` returns, linked to exactly those entries; and the chain after it.

    ``build`` may be called again (after another writer won the sequence number) and returns ``None`` when there
    is nothing to write any more; the entry is then ``None``.
    """
    entries = read_entries(store, name)
    for _ in range(MAX_APPEND_ATTEMPTS):
        if (mine := next((e for e in entries if e.fields.get("token") == token), None)) is not None:
            return mine, entries  # a lost response: our create went through before the store said it exists
        fields = build(entries)
        if fields is None:
            return None, entries
        seq = len(entries) + 1
        key = seq_key(ledger_prefix(name), seq)
        prev = entries[-1].sha256 if entries else GENESIS
        body = canonical_json({**fields, "model_name": name, "seq": seq, "prev_sha256": prev, "token": token})
        entry = parse_entry(body, seq, key)
        try:
            check_entry(name, entry, entries)  # never write what would break the chain (e.g. a version twice)
        except ChainBroken as exc:
            raise DataError(f"refusing to append to the ledger of {name!r}: {exc.detail}") from exc
        if store.put_if_absent(key, body):
            return entry, [*entries, entry]
        entries = [*entries, *iter_chain(store, name, entries)]
    raise TransientError(f"could not append to the ledger of {name!r} after {MAX_APPEND_ATTEMPTS} tries; retry later")
