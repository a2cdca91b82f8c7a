"""``irmsia registry list|show|promote|verify``: read, check and promote models in the store's registry.

Uses only ``jobs.register.registry``, the register stage's public, torch-free face, so the CLI image
needs neither torch nor monai. ``promote`` appends an alias move to the ledger; ``verify`` exits 3 at the first
break it finds, reported in one line.
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.core.errors import ExitCode
from jobs.core.store import open_store
from jobs.register import registry
from jobs.register.registry import ALIASES, verify_registry


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "registry", help="list, show, promote or verify registered models", description=__doc__
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="models, or the versions of one model with their aliases")
    p.add_argument("name", nargs="?", help="model name; without it, list every model")
    p = actions.add_parser("show", help="one version's ledger entry, files and metadata as JSON")
    p.add_argument("name")
    p.add_argument("version", nargs="?", default="latest", help="number, 'latest' (default) or an alias")
    p.add_argument(
        "--lineage",
        action="store_true",
        help="print where its data came from instead: every manifest with its SHA-256, sources, releases, licences, "
        "de-identification, counts per split, and the test set's series UIDs",
    )
    p = actions.add_parser("promote", help="point an alias (champion by default) at a version")
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.add_argument("--alias", default="champion", choices=ALIASES)
    p = actions.add_parser("verify", help="recompute every hash of the ledger and bundles; exit 3 at a break")
    p.add_argument("name")
    parser.set_defaults(do_command=do_command)


def _list(store, name: str | None, out) -> int:
    if not name:
        for model in registry.model_names(store):
            print(model, file=out)
        return 0
    print(f"{'version':>7}  {'aliases':<20} {'metric':<16} {'value':>8}  {'run':<30} registered", file=out)
    for row in registry.list_versions(store, name):
        value = f"{row.value:.4f}" if row.value is not None else "-"
        aliases = ",".join(row.aliases) or "-"
        print(f"{row.version:>7}  {aliases:<20} {row.metric:<16} {value:>8}  {row.run_id:<30} {row.registered_at}",
              file=out)  # fmt: skip
    return 0


def _verify(store, name: str, out) -> int:
    report = verify_registry(store, name)
    for note in report.notes:
        print(f"note: {note}", file=out)
    if not report.ok:
        print(f"BROKEN {name}: {report.first_break}", file=out)
        print(f"  checked before the break: {report.entries} ledger entries, {report.files} files", file=out)
        return int(ExitCode.DATA)
    print(f"OK {name}: {report.entries} ledger entries ({report.versions} versions, {report.alias_moves} alias "
          f"moves), {report.files} files verified", file=out)  # fmt: skip
    print(f"  head {report.head_sha256}", file=out)
    return 0


def _counts(lineage: dict, what: str) -> str:
    counts = lineage.get(f"{what}_per_split") or {}
    return " / ".join(f"{split} {n}" for split, n in counts.items()) or "-"


def _lineage(report: dict, out) -> None:
    """The chain from the model down to the test set's series, one fact a line."""
    lineage = report["lineage"]
    aliases = f" ({', '.join(report['aliases'])})" if report["aliases"] else ""
    print(f"{report['model_name']} v{report['version']}{aliases}: bundle manifest {report['manifest_sha256']}",
          file=out)  # fmt: skip
    for m in lineage.get("manifests") or []:
        print(f"  {m['stage']:<8} {m['prefix']:<32} sha256 {m['content_sha256']}", file=out)
    for stale in lineage.get("stale") or []:
        print(f"  stale    {stale:<32} rewritten since the run used it: its counts are left out", file=out)
    for what in ("rows", "patients", "studies", "series"):
        print(f"  {what:<8} {_counts(lineage, what)}", file=out)
    for d in lineage.get("datasets") or []:
        release = ", ".join(f"{k}={v}" for k, v in (d.get("release") or {}).items()) or "not recorded"
        print(f"  source   {d['dataset']}: {d.get('source')} ({release})", file=out)
        print(f"  licence  {d.get('license') or 'unknown'}", file=out)
        if text := d.get("attribution"):
            for line in text.splitlines()[:6]:
                print(f"           > {line}", file=out)
        deid = d.get("deidentification")
        if deid:
            options = ", ".join(f"{k}={v}" for k, v in (deid.get("options") or {}).items())
            scan = deid.get("phi_scan") or {}
            print(f"  de-id    {deid.get('profile')} ({deid.get('standard')}); {options}; PHI scan "
                  f"{scan.get('headers', 0)} headers, {scan.get('findings', 0)} findings", file=out)  # fmt: skip
        else:
            print("  de-id    none at collect", file=out)
    series = report["test_series"]
    if series is None:
        print(f"  test set series: {report['test_series_note']}; they cannot be listed", file=out)
        return
    if not series:
        print("  test set series: none (the test set's images carry no SeriesInstanceUID)", file=out)
        return
    print(f"  test set series ({len(series)}):", file=out)
    for uid in series:
        print(f"    {uid}", file=out)


def do_command(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    store = open_store(args.store)
    if args.action == "list":
        return _list(store, args.name, out)
    if args.action == "show" and args.lineage:
        _lineage(registry.lineage(store, args.name, args.version), out)
        return 0
    if args.action == "show":
        print(json.dumps(registry.show(store, args.name, args.version), indent=2, sort_keys=True), file=out)
        return 0
    if args.action == "promote":
        value = registry.promote(store, args.name, args.version, args.alias)
        print(f"{args.name} {value.alias} -> v{value.version}", file=out)
        return 0
    return _verify(store, args.name, out)
