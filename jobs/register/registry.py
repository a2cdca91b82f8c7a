"""Reading the registry as people and serving code see it: models, their versions, aliases, one version's record.

A version is visible here only once its ledger entry exists (the commit point of a registration), and an alias
has the value the ledger's last move of it gives; the chain is validated on every read, so a rewritten entry or
alias move is an error here, never an answer. This is the register stage's public face for readers and operators
(``irmsia registry list|show|promote|verify``); it imports no torch, so the ``pipeline`` CLI can use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import read_manifest
from jobs.core.paths import check_dns_label, run_prefix
from jobs.core.store import Store
from jobs.register import aliases
from jobs.register.keys import ALIASES, METADATA, version_prefix
from jobs.register.ledger import LedgerEntry, find_version, read_entries, registrations
from jobs.register.lineage import series_of_test_set
from jobs.register.verify import VerifyReport, verify_registry

__all__ = [
    "ALIASES",
    "VerifyReport",
    "VersionRow",
    "alias_map",
    "lineage",
    "list_versions",
    "model_names",
    "promote",
    "resolve",
    "show",
    "verify_registry",
    "version_of_run",
]


@dataclass(frozen=True)
class VersionRow:
    """One line of ``irmsia registry list NAME``."""

    version: int
    run_id: str
    metric: str
    value: float | None
    registered_at: str
    aliases: tuple[str, ...]


def model_names(store: Store) -> list[str]:
    """Every model that has at least one ledger entry."""
    names = set()
    for obj in store.list("registry/"):
        parts = obj.key.split("/")
        if len(parts) >= 4 and parts[2] == "ledger":
            names.add(parts[1])
    return sorted(names)


def _entries(store: Store, name: str) -> list[LedgerEntry]:
    check_dns_label(name, "model name")
    entries = read_entries(store, name)
    if not registrations(entries):
        raise DataError(f"no registered versions of {name!r} in {store.uri}; see irmsia registry list")
    return entries


def alias_map(store: Store, name: str) -> dict[str, int]:
    """``{"champion": 3, ...}`` for the aliases that are set."""
    return aliases.alias_map_in(read_entries(store, name))


def list_versions(store: Store, name: str) -> list[VersionRow]:
    """Every registered version of ``name``, ascending."""
    entries = _entries(store, name)
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.alias_map_in(entries).items():
        by_version.setdefault(version, []).append(alias)
    rows = []
    for e in sorted(registrations(entries).values(), key=lambda e: e.version):
        metric = str(e.fields.get("metric", ""))
        rows.append(
            VersionRow(
                version=e.version,
                run_id=str(e.fields.get("run_id", "")),
                metric=metric,
                value=e.metrics.get(metric),
                registered_at=str(e.fields.get("registered_at", "")),
                aliases=tuple(by_version.get(e.version, ())),
            )
        )
    return rows


def resolve(store: Store, name: str, spec: str | int = "champion") -> LedgerEntry:
    """The ``register`` ledger entry ``spec`` names: an alias, ``latest``, or a version number."""
    return _resolve_in(_entries(store, name), name, spec)


def _resolve_in(entries: list[LedgerEntry], name: str, spec: str | int) -> LedgerEntry:
    text = str(spec)
    if text in ALIASES:
        value = aliases.current_in(entries, text)
        if value is None:
            raise DataError(f"{name!r} has no {text}; promote a version with irmsia registry promote")
        version = value.version
    elif text == "latest":
        version = max(registrations(entries))
    elif text.isdigit():
        version = int(text)
    else:
        raise UsageError(f"version {text!r}: use a number, 'latest' or one of {', '.join(ALIASES)}")
    entry = find_version(entries, version)
    if entry is None:
        raise DataError(f"{name!r} has no registered v{version}; see irmsia registry list {name}")
    return entry


def show(store: Store, name: str, spec: str | int = "latest") -> dict[str, Any]:
    """A version's ledger entry, its aliases, its sealed files and its metadata, as one JSON-able record."""
    entries = _entries(store, name)
    entry = _resolve_in(entries, name, spec)
    prefix = version_prefix(name, entry.version)
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise DataError(f"{prefix} is not sealed; run irmsia registry verify {name}")
    metadata = json.loads(store.get_bytes(prefix + METADATA))
    intervals = (metadata.get("irmsia", {}).get("evaluation") or {}).get("intervals") or {}
    return {
        "model_name": name,
        "version": entry.version,
        "aliases": sorted(a for a, v in aliases.alias_map_in(entries).items() if v == entry.version),
        # each metric with its patient-bootstrap 95 % interval (None: the run recorded none)
        "metrics": {k: {"value": v, "interval": intervals.get(k)} for k, v in entry.metrics.items()},
        # the folds of the run's settings: per-fold metrics, each metric's mean and sd (None: registered without)
        "cross_validation": entry.fields.get("cross_validation"),
        "ledger": {"seq": entry.seq, "sha256": entry.sha256, **entry.fields},
        "files": {o.key[len(prefix) :]: {"size": o.size, "sha256": o.sha256} for o in manifest.outputs},
        # --quantize int8: kept or not and why, sizes, latencies, fp32 vs int8 val metrics (None: not asked)
        "quantization": metadata.get("irmsia", {}).get("quantization"),
        "metadata": metadata,
    }


def _split_prefix(store: Store, recorded: dict[str, Any], run_id: str) -> str | None:
    """Where the version's split lives: as its lineage recorded it, else (metadata written before the lineage
    named every manifest) as the run's own manifest names it."""
    for m in recorded.get("manifests") or []:
        if m.get("stage") == "split":
            return str(m["prefix"])
    run = read_manifest(store, run_prefix(run_id))
    found = sorted(p for p, h in (run.inputs if run else {}).items() if h == recorded.get("split_manifest_sha256"))
    return found[0] if found else None


def lineage(store: Store, name: str, spec: str | int = "latest") -> dict[str, Any]:
    """A version's lineage as its metadata recorded it, plus the SeriesInstanceUIDs of its test set (read from the
    split it names, when that split still has the recorded content; ``test_series`` is ``None`` otherwise, and
    ``test_series_note`` says why)."""
    record = show(store, name, spec)
    ours = record["metadata"]["irmsia"]
    recorded = ours["lineage"]
    split_sha = recorded.get("split_manifest_sha256")
    split_prefix = _split_prefix(store, recorded, ours["run_id"]) if split_sha else None
    split = read_manifest(store, split_prefix) if split_prefix else None
    series, note = None, None
    if split_prefix is None:
        note = "the run recorded no split"
    elif split is None or split.content_sha256 != split_sha:
        note = f"{split_prefix} was rewritten or removed since the run used it"
    else:
        series = series_of_test_set(store, split)
    return {
        "model_name": name,
        "version": record["version"],
        "aliases": record["aliases"],
        "manifest_sha256": record["ledger"].get("manifest_sha256"),
        "run_id": ours["run_id"],
        "lineage": recorded,
        "test_series": series,
        "test_series_note": note,
    }


def promote(store: Store, name: str, version: int, alias: str = "champion") -> aliases.AliasValue:
    """Point ``alias`` at a registered, sealed ``version`` (a manual promotion, always applied: an alias entry)."""
    entry = resolve(store, name, version)
    manifest = read_manifest(store, version_prefix(name, entry.version))
    if manifest is None or manifest.content_sha256 != entry.fields.get("manifest_sha256"):
        raise DataError(f"v{version} of {name!r} does not match its ledger entry; run irmsia registry verify {name}")
    return aliases.set_alias(store, name, alias, entry.version, f"promoted by hand to {alias}")


def version_of_run(store: Store, name: str, train_manifest_sha256: str) -> int | None:
    """The version of ``name`` that registers the training run whose train manifest has this content hash (what
    makes registering that run again a cache hit), or ``None``; an empty or absent ledger has none."""
    check_dns_label(name, "model name")
    for entry in reversed(list(registrations(read_entries(store, name)).values())):
        if entry.fields.get("train_manifest_sha256") == train_manifest_sha256:
            return entry.version
    return None
