"""Integer version numbers, allocated without races by an exclusive create of a claim object, never onto a version
that exists.

A registration claims version ``n`` by creating ``registry/<name>/claims/<n>.json`` with ``put_if_absent``
(S3 ``If-None-Match: *``; an exclusive ``link(2)`` on the file store). Exactly one writer can create a given
claim, so two concurrent registrations never get the same number, and a writer that loses simply tries the next.
Each claim carries a random token: when the store reports "already exists" (or a lost response was retried by
the client and then refused), reading the claim back and finding our own token means the earlier attempt won.

The claims alone are not trusted to know every number in use: they can be lost (a lifecycle rule, a partial copy,
a hand clean-up), and a number handed out again would overwrite a registered version. So the first number tried
is above every claim, every version the ledger registers and every bundle folder that holds an object, and a
number whose folder holds objects once claimed (a lost claim's leftover) is skipped, never written into.

A number is never reused, even when the registration that claimed it dies: the version then simply never
reaches the ledger (see ``registration.py``) and readers, which go by the ledger, never see it.
This module imports no torch.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime

from jobs.core.errors import DataError, TransientError
from jobs.core.hashing import canonical_json
from jobs.core.paths import registry_prefix
from jobs.core.store import Store
from jobs.register.keys import claims_prefix, seq_key, seq_of, version_of_folder, version_prefix
from jobs.register.ledger import read_entries, registrations

MAX_CLAIM_ATTEMPTS = 1000
log = logging.getLogger("irmsia.register")


def new_token() -> str:
    """A random token that identifies one registration attempt in the objects it creates."""
    return secrets.token_hex(16)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def claimed_versions(store: Store, name: str) -> list[int]:
    """Every version number ever claimed for ``name`` (registered or abandoned), ascending."""
    prefix = claims_prefix(name)
    found = (seq_of(key, prefix) for key in store.keys(prefix))
    return sorted(n for n in found if n is not None)


def versions_in_use(store: Store, name: str) -> set[int]:
    """Every number claimed, registered in the ledger, or holding objects in its bundle folder."""
    claims = claims_prefix(name)
    used = set(registrations(read_entries(store, name)))
    for key in store.keys(registry_prefix(name)):
        n = seq_of(key, claims) if key.startswith(claims) else version_of_folder(name, key)
        if n is not None:
            used.add(n)
    return used


def read_claim(store: Store, name: str, version: int) -> dict:
    key = seq_key(claims_prefix(name), version)
    try:
        return json.loads(store.get_bytes(key))
    except ValueError as exc:
        raise DataError(f"{key}: not a valid version claim ({exc}); run irmsia registry verify") from exc


def _folder_is_empty(store: Store, name: str, version: int) -> bool:
    return next(iter(store.keys(version_prefix(name, version))), None) is None


def claim_version(store: Store, name: str, run_id: str, token: str) -> int:
    """Claim the next free version number for ``name`` and return it."""
    version = max(versions_in_use(store, name), default=0) + 1
    for _ in range(MAX_CLAIM_ATTEMPTS):
        body = canonical_json({"version": version, "token": token, "run_id": run_id, "claimed_at": now_iso()})
        won = store.put_if_absent(seq_key(claims_prefix(name), version), body)
        # A lost response: our own earlier attempt won, only its answer never arrived.
        won = won or read_claim(store, name, version).get("token") == token
        if won and _folder_is_empty(store, name, version):
            return version
        if won:
            log.warning("%s v%d holds objects but had no claim (claims were lost?); skipping it", name, version)
        version += 1
    raise TransientError(f"could not claim a version of {name!r} after {MAX_CLAIM_ATTEMPTS} tries; retry later")
