"""``irmsia datasets list|search``: the recommended datasets, and search across Kaggle and TCIA."""

from __future__ import annotations

import argparse
import os
import sys

from jobs.core.errors import UsageError


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="recommended datasets and search", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="print the recommended datasets and the command that collects each")
    search = actions.add_parser("search", help="search Kaggle datasets and TCIA collections")
    search.add_argument("text", help="words to look for, e.g. 'brain mri'")
    search.add_argument("--source", choices=("all", "kaggle", "tcia"), default="all",
                        help="where to search (default all; Kaggle needs credentials)")  # fmt: skip
    parser.set_defaults(do_command=do_command)


def _table(rows: list[list[str]], out) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


def do_list(out=None) -> int:
    out = out or sys.stdout
    from jobs.collect.catalog import RECOMMENDED

    rows = [["NAME", "SOURCE", "ID", "MODALITY", "SIZE", "CLASSES", "LICENCE"]]
    rows += [[e.name, e.source, e.ref, e.modality, e.size, e.classes, e.license] for e in RECOMMENDED]
    _table(rows, out)
    print("\nCollect one with:", file=out)
    for e in RECOMMENDED:
        print(f"  {e.command}", file=out)
    return 0


def do_search(text: str, source: str, env=None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from jobs.collect.catalog import search_kaggle, search_tcia

    env = dict(os.environ if env is None else env)
    hits = []
    if source in ("all", "tcia"):
        hits += search_tcia(text, env)
    if source in ("all", "kaggle"):
        try:
            hits += search_kaggle(text, env)
        except UsageError as exc:
            if source == "kaggle":
                raise
            print(f"irmsia datasets: skipping Kaggle: {exc}", file=err)
    if not hits:
        print(f"no datasets match {text!r}", file=out)
        return 0
    rows = [["SOURCE", "ID", "TITLE", "COMMAND"]]
    rows += [[h["source"], h["ref"], str(h.get("title") or ""), h["command"]] for h in hits]
    _table(rows, out)
    return 0


def do_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        return do_list()
    return do_search(args.text, args.source)
