"""Aliases (``champion``, ``candidate``) and the promotion rules, updated with compare-and-swap on any store.

An alias is a sequence of small objects ``registry/<name>/aliases/<alias>/<n>.json``; its value is the one with
the highest ``n``. Moving an alias from the value read at ``n`` means creating ``n+1`` with ``put_if_absent``:
if someone moved it in between, the create fails and the caller rereads and decides again. That is a
conditional update (compare-and-swap) built on the one conditional write both backends have, with no lost
update and no lock, and it keeps every promotion as history.

Promotion with ``--promote auto``: the new version becomes champion only if there is none yet, or if its
metric strictly beats the champion's (lower is better for metrics whose name ends in ``loss``) *and* both were
evaluated on the same split (same split manifest content hash). Otherwise it becomes ``candidate``.
This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jobs.core.errors import DataError, TransientError
from jobs.core.hashing import canonical_json
from jobs.core.store import Store
from jobs.register.layout import alias_prefix, seq_key, seq_of
from jobs.register.ledger import LedgerEntry, read_entries
from jobs.register.versions import new_token, now_iso

PROMOTE_MODES = ("auto", "always", "never")
MAX_CAS_ATTEMPTS = 1000


@dataclass(frozen=True)
class AliasValue:
    """The current value of an alias: the version it names and the sequence number of that value."""

    alias: str
    version: int
    seq: int
    fields: dict


@dataclass(frozen=True)
class Decision:
    """Where a new version goes (``champion`` or ``candidate``) and why, in words for the log."""

    alias: str
    reason: str


def current(store: Store, name: str, alias: str) -> AliasValue | None:
    """The alias's value, or ``None`` if it was never set."""
    prefix = alias_prefix(name, alias)
    seqs = sorted(s for s in (seq_of(o.key, prefix) for o in store.list(prefix)) if s is not None)
    if not seqs:
        return None
    key = seq_key(prefix, seqs[-1])
    try:
        fields = json.loads(store.get_bytes(key))
        return AliasValue(alias, int(fields["version"]), seqs[-1], fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{key}: not a valid alias record ({exc}); run irmsia registry verify") from exc


def history(store: Store, name: str, alias: str) -> list[AliasValue]:
    """Every value the alias has had, oldest first."""
    prefix = alias_prefix(name, alias)
    out = []
    for obj in store.list(prefix):
        seq = seq_of(obj.key, prefix)
        if seq is not None:
            fields = json.loads(store.get_bytes(obj.key))
            out.append(AliasValue(alias, int(fields["version"]), seq, fields))
    return sorted(out, key=lambda v: v.seq)


def compare_and_set(
    store: Store, name: str, alias: str, expected: AliasValue | None, version: int, reason: str
) -> bool:
    """Set ``alias`` to ``version`` if its value is still ``expected``; ``False`` if it moved meanwhile."""
    seq = (expected.seq if expected else 0) + 1
    token = new_token()
    body = {
        "alias": alias,
        "version": version,
        "seq": seq,
        "previous_version": expected.version if expected else None,
        "reason": reason,
        "at": now_iso(),
        "token": token,
    }
    key = seq_key(alias_prefix(name, alias), seq)
    if store.put_if_absent(key, canonical_json(body)):
        return True
    return json.loads(store.get_bytes(key)).get("token") == token  # a lost response that did go through


def set_alias(store: Store, name: str, alias: str, version: int, reason: str) -> AliasValue:
    """Point ``alias`` at ``version`` unconditionally (manual promotion), retrying the swap on contention."""
    for _ in range(MAX_CAS_ATTEMPTS):
        value = current(store, name, alias)
        if value is not None and value.version == version:
            return value
        if compare_and_set(store, name, alias, value, version, reason):
            return current(store, name, alias)  # type: ignore[return-value]
    raise TransientError(f"alias {alias!r} of {name!r} kept moving; retry the promotion")


def lower_is_better(metric: str) -> bool:
    return metric.endswith("loss")


def decide(mode: str, metric: str, new: LedgerEntry, champion: LedgerEntry | None) -> Decision:
    """Apply the promotion rule for ``mode`` to a new version against the current champion's ledger entry."""
    if mode == "always":
        return Decision("champion", "--promote always")
    if mode == "never":
        return Decision("candidate", "--promote never")
    if champion is None:
        return Decision("champion", "no champion yet")
    if champion.fields.get("split_manifest_sha256") != new.fields.get("split_manifest_sha256"):
        return Decision(
            "candidate",
            f"champion v{champion.version} was evaluated on a different split, so {metric} is not comparable; "
            "promote by hand with irmsia registry promote if intended",
        )
    ours, theirs = new.metrics.get(metric), champion.metrics.get(metric)
    if theirs is None:
        return Decision("candidate", f"champion v{champion.version} has no {metric} to compare with")
    better = ours < theirs if lower_is_better(metric) else ours > theirs  # type: ignore[operator]
    verdict = "beats" if better else "does not beat"
    return Decision(
        "champion" if better else "candidate",
        f"{metric} {ours:.6g} {verdict} champion v{champion.version}'s {theirs:.6g}",
    )


def apply_promotion(
    store: Store, name: str, mode: str, metric: str, new: LedgerEntry, entries_by_version: dict[int, LedgerEntry]
) -> Decision:
    """Decide and move the alias with compare-and-swap; on contention reread the champion and decide again."""
    for _ in range(MAX_CAS_ATTEMPTS):
        champion = current(store, name, "champion")
        champ_entry = entries_by_version.get(champion.version) if champion else None
        if champion is not None and champ_entry is None:
            entries_by_version.update({e.version: e for e in read_entries(store, name)})
            champ_entry = entries_by_version.get(champion.version)
        decision = decide(mode, metric, new, champ_entry)
        if decision.alias == "champion":
            if compare_and_set(store, name, "champion", champion, new.version, decision.reason):
                return decision
            continue  # the champion moved: compare against the new one
        candidate = current(store, name, "candidate")
        if candidate is not None and candidate.version >= new.version:
            return decision  # a newer version is already the candidate; never move it backwards
        if compare_and_set(store, name, "candidate", candidate, new.version, decision.reason):
            return decision
    raise TransientError(f"aliases of {name!r} kept moving; retry the registration")
