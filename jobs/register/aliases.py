"""Aliases (``champion``, ``candidate``): their values as the ledger records them, and the promotion rules.

An alias has no object of its own. Its value is the version named by the last ledger entry that moved it: a
``register`` entry whose ``alias`` field names it (the registration decided the promotion and committed it in the
same exclusive create that commits the version, so a crash can never leave a version without the alias it
earned), or an ``alias`` entry (a manual promotion, ``irmsia registry promote``). Every move is therefore in the
hash chain: rewriting or deleting one breaks the link from the next entry, which every reader and ``verify``
check, and an object dropped into the store outside the ledger is never read.

A move is a compare-and-swap without a lock: the entry is built from the chain it will link to (``ledger.append``);
if another entry took that sequence number first, the writer rereads and decides again against the new values.
No update is lost, and the chain keeps every move as history.

Promotion with ``--promote auto``: the new version becomes champion only if there is none yet, or if both were
evaluated on the same split (same split manifest content hash) and its metric beats the champion's (lower is
better for metrics whose name ends in ``loss`` or ``hd95``): by a paired patient bootstrap on that split when both
kept classification predictions (``comparison.py``: the 95 % interval of the difference must exclude zero), by
the bare numbers otherwise (a champion registered before predictions were kept, another task). Otherwise it
becomes ``candidate`` (unless a newer version already is: the candidate never moves backwards). This module
imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import DataError, TransientError
from jobs.core.store import Store
from jobs.ml.evaluation import PairedResult
from jobs.register import ledger
from jobs.register.comparison import Comparison
from jobs.register.keys import ALIASES, check_alias
from jobs.register.ledger import LedgerEntry, registrations
from jobs.register.versions import new_token, now_iso

PROMOTE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class AliasValue:
    """One value of an alias: the version it names, the ledger entry that set it, the value before, and why."""

    alias: str
    version: int
    seq: int
    previous_version: int | None
    reason: str


@dataclass(frozen=True)
class Decision:
    """Where a new version goes (``champion`` or ``candidate``) and why, in words for the log, and the paired
    test it rests on (``PairedResult.to_dict()``), if one was run."""

    alias: str
    reason: str
    test: dict[str, Any] | None = None


Comparer = Callable[[LedgerEntry], Comparison]
"""The paired test of the new version against a champion's ledger entry."""


def history_in(entries: Sequence[LedgerEntry], alias: str) -> list[AliasValue]:
    """Every value ``alias`` has had in the (validated) chain ``entries``, oldest first."""
    check_alias(alias)
    values: list[AliasValue] = []
    for entry in entries:
        if entry.alias == alias:
            reason = entry.fields.get("reason") or entry.fields.get("promotion") or ""
            previous = values[-1].version if values else None
            values.append(AliasValue(alias, entry.version, entry.seq, previous, str(reason)))
    return values


def current_in(entries: Sequence[LedgerEntry], alias: str) -> AliasValue | None:
    """The value of ``alias`` at the end of ``entries``, or ``None`` if it was never set."""
    values = history_in(entries, alias)
    return values[-1] if values else None


def alias_map_in(entries: Sequence[LedgerEntry]) -> dict[str, int]:
    """``{"champion": 3, ...}`` for the aliases that are set."""
    return {a: value.version for a in ALIASES if (value := current_in(entries, a)) is not None}


def current(store: Store, name: str, alias: str) -> AliasValue | None:
    """The alias's value, or ``None`` if it was never set."""
    check_alias(alias)
    return current_in(ledger.read_entries(store, name), alias)


def history(store: Store, name: str, alias: str) -> list[AliasValue]:
    """Every value the alias has had, oldest first."""
    check_alias(alias)
    return history_in(ledger.read_entries(store, name), alias)


def set_alias(store: Store, name: str, alias: str, version: int, reason: str) -> AliasValue:
    """Point ``alias`` at a registered ``version`` unconditionally (manual promotion): an ``alias`` ledger entry."""
    check_alias(alias)

    def build(entries: list[LedgerEntry]) -> dict | None:
        if version not in registrations(entries):
            raise DataError(f"{name!r} has no registered v{version}; see irmsia registry list {name}")
        value = current_in(entries, alias)
        if value is not None and value.version == version:
            return None  # already there: nothing to move
        return {"kind": ledger.ALIAS, "alias": alias, "version": version, "reason": reason, "at": now_iso()}

    try:
        _, entries = ledger.append(store, name, build, new_token())
    except TransientError as exc:
        raise TransientError(f"alias {alias!r} of {name!r} kept moving; retry the promotion") from exc
    return current_in(entries, alias)  # type: ignore[return-value]  # set above, or already set


def lower_is_better(metric: str) -> bool:
    """Losses and distances (a segmentation's HD95) are better when lower."""
    return metric.endswith(("loss", "hd95"))


def decide(
    mode: str, metric: str, new: LedgerEntry, champion: LedgerEntry | None, compare: Comparer | None = None
) -> Decision:
    """Apply the promotion rule for ``mode`` to a new version against the current champion's ledger entry;
    ``compare`` runs the paired test (without one, or when it cannot run, the bare numbers decide)."""
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
    comparison = compare(champion) if compare is not None else None
    if comparison is not None and comparison.result is not None:
        return _paired_decision(metric, champion, comparison.result)
    fallback = f" (no paired test: {comparison.why_not})" if comparison is not None else ""
    better = ours < theirs if lower_is_better(metric) else ours > theirs  # type: ignore[operator]
    verdict = "beats" if better else "does not beat"
    return Decision(
        "champion" if better else "candidate",
        f"{metric} {ours:.6g} {verdict} champion v{champion.version}'s {theirs:.6g}{fallback}",
    )


def _paired_decision(metric: str, champion: LedgerEntry, result: PairedResult) -> Decision:
    better = result.better(lower_is_better(metric))
    verdict = "beats" if better else "does not significantly beat"
    return Decision(
        "champion" if better else "candidate",
        f"{metric} {verdict} champion v{champion.version}: difference {result.difference:+.4g}, "
        f"{result.level:.0%} interval [{result.low:+.4g}, {result.high:+.4g}], one-sided p {result.p_value:.3g} "
        f"(paired bootstrap over {result.patients} patients, {result.resamples} resamples)",
        result.to_dict(),
    )


def promotion(
    mode: str, metric: str, new: LedgerEntry, entries: Sequence[LedgerEntry], compare: Comparer | None = None
) -> tuple[str | None, Decision]:
    """The alias a new version's ``register`` entry moves (``None``: none), and the decision, on ``entries``."""
    champion = current_in(entries, "champion")
    decision = decide(mode, metric, new, registrations(entries).get(champion.version) if champion else None, compare)
    if decision.alias == "candidate":
        candidate = current_in(entries, "candidate")
        if candidate is not None and candidate.version >= new.version:
            return None, decision  # a newer version is already the candidate; never move it backwards
    return decision.alias, decision
