"""Integer version numbers, allocated without races by an exclusive create of a claim object.

A registration claims version ``n`` by creating ``registry/<name>/claims/<n>.json`` with ``put_if_absent``
(S3 ``If-None-Match: *``; an exclusive ``link(2)`` on the file store). Exactly one writer can create a given
claim, so two concurrent registrations never get the same number, and a writer that loses simply tries the next.
Each claim carries a random token: when the store reports "already exists" (or a lost response was retried by
the client and then refused), reading the claim back and finding our own token means the earlier attempt won.

A number is never reused, even when the registration that claimed it dies: the version then simply never
reaches the ledger (see ``registration.py``) and readers, which go by the ledger, never see it.
This module imports no torch.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from jobs.core.errors import DataError, TransientError
from jobs.core.hashing import canonical_json
from jobs.core.store import Store
from jobs.register.layout import claims_prefix, seq_key, seq_of

MAX_CLAIM_ATTEMPTS = 1000


def new_token() -> str:
    """A random token that identifies one registration attempt in the objects it creates."""
    return secrets.token_hex(16)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def claimed_versions(store: Store, name: str) -> list[int]:
    """Every version number ever claimed for ``name`` (registered or abandoned), ascending."""
    prefix = claims_prefix(name)
    found = (seq_of(o.key, prefix) for o in store.list(prefix))
    return sorted(n for n in found if n is not None)


def read_claim(store: Store, name: str, version: int) -> dict:
    key = seq_key(claims_prefix(name), version)
    try:
        return json.loads(store.get_bytes(key))
    except ValueError as exc:
        raise DataError(f"{key}: not a valid version claim ({exc}); run irmsia registry verify") from exc


def claim_version(store: Store, name: str, run_id: str, token: str) -> int:
    """Claim the next free version number for ``name`` and return it."""
    claimed = claimed_versions(store, name)
    version = (claimed[-1] if claimed else 0) + 1
    for _ in range(MAX_CLAIM_ATTEMPTS):
        body = canonical_json({"version": version, "token": token, "run_id": run_id, "claimed_at": now_iso()})
        if store.put_if_absent(seq_key(claims_prefix(name), version), body):
            return version
        if read_claim(store, name, version).get("token") == token:
            return version  # our own earlier attempt won; only its response was lost
        version += 1
    raise TransientError(f"could not claim a version of {name!r} after {MAX_CLAIM_ATTEMPTS} tries; retry later")
