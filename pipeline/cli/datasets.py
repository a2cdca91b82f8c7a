"""``irmsia datasets list|search|show``: the dataset catalogue (offline), and search across Kaggle and TCIA online."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from jobs.core.errors import UsageError

SEARCH_SOURCES = ("all", "catalog", "kaggle", "tcia")


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="the dataset catalogue and search", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every catalogued dataset (reviewed entries and IDC's collections)")
    listing.add_argument("--source", help="only this source (kaggle, kaggle-competition, idc, tcia, nih, url, local…)")
    listing.add_argument("--modality", help="only entries whose modality mentions this (CT, MR, DX…)")
    listing.add_argument("--access", help="only this access level (public, account, rules, registration, "
                                          "credentialed)")  # fmt: skip
    search = actions.add_parser("search", help="search the catalogue (and, with --online, Kaggle and TCIA)")
    search.add_argument("text", help="words to look for, e.g. 'brain mri'")
    search.add_argument("--online", action="store_true", help="also ask Kaggle (needs credentials) and TCIA")
    search.add_argument("--source", choices=SEARCH_SOURCES, default="all",
                        help="where to search: all (the catalogue; Kaggle and TCIA too with --online), catalog, "
                             "kaggle or tcia (online)")  # fmt: skip
    show = actions.add_parser("show", help="everything about one dataset, and the command that collects it")
    show.add_argument("name", help="the dataset's catalogue name, e.g. lidc-idri")
    parser.set_defaults(do_command=do_command)


def _table(rows: list[list[str]], out, widths: tuple[int, ...] = ()) -> None:
    cut = [[c if i >= len(widths) or len(c) <= widths[i] else c[: widths[i] - 1] + "…" for i, c in enumerate(r)]
           for r in rows]  # fmt: skip
    sizes = [max(len(r[i]) for r in cut) for i in range(len(cut[0]))]
    for row in cut:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, sizes, strict=True)).rstrip(), file=out)


def _rows(entries) -> list[list[str]]:
    rows = [["NAME", "SOURCE", "ID", "MODALITY", "SIZE", "LICENCE", "ACCESS"]]
    rows += [[e.name, e.source, e.ref, e.modality, e.size, e.license, e.access] for e in entries]
    return rows


def do_list(source: str | None = None, modality: str | None = None, access: str | None = None, out=None) -> int:
    out = out or sys.stdout
    from jobs.collect.catalog import TOP_TEN, catalogue, find, idc_entries

    entries = [e for e in catalogue() if (source is None or e.source == source)
               and (modality is None or modality.lower() in e.modality.lower())
               and (access is None or e.access == access)]  # fmt: skip
    if not entries:
        print("no dataset matches these filters", file=out)
        return 0
    _table(_rows(entries), out, widths=(40, 18, 44, 28, 40, 34, 12))
    idc = sum(1 for e in entries if e.origin != "reviewed")
    note = "" if idc_entries() else " (install idc-index-data for IDC's collections)"
    print(f"\n{len(entries)} datasets: {len(entries) - idc} reviewed, {idc} from IDC's collection metadata{note}.",
          file=out)  # fmt: skip
    shown = entries if len(entries) <= 20 else [find(n) for n in TOP_TEN]
    print("Collect one with:" if len(entries) <= 20 else "Start with one of these:", file=out)
    for e in shown:
        print(f"  {e.command}", file=out)
    print("irmsia datasets show NAME says what each needs and what the pipeline can do with it.", file=out)
    return 0


def do_show(name: str, out=None) -> int:
    out = out or sys.stdout
    from jobs.collect.catalog import ACCESS, find

    e = find(name)
    lines = [
        ("name", e.name), ("title", e.title), ("source", f"{e.source} ({e.ref})"), ("modality", e.modality),
        ("task", e.task), ("labels", e.labels), ("size", e.size), ("licence", e.license),
        ("citation", e.citation), ("doi", f"https://doi.org/{e.doi}" if e.doi else "-"),
        ("access", f"{e.access}: {ACCESS[e.access]}"), ("how to get it", e.how_to_access),
        ("pipeline can", e.can), ("pipeline cannot", e.cannot), ("catalogue", e.origin),
    ]  # fmt: skip
    for label, value in lines:
        wrapped = textwrap.wrap(str(value), width=100) or [""]
        print(f"{label + ':':<17}{wrapped[0]}", file=out)
        for more in wrapped[1:]:
            print(" " * 17 + more, file=out)
    print(f"\ncollect with:\n  {e.command}", file=out)
    return 0


def do_search(text: str, source: str, online: bool = False, env=None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from jobs.collect.catalog import search, search_kaggle, search_tcia

    env = dict(os.environ if env is None else env)
    found = search(text) if source in ("all", "catalog") else []
    if found:
        _table(_rows(found), out, widths=(40, 18, 44, 28, 40, 34, 12))
    hits = []
    if source == "tcia" or (source == "all" and online):
        hits += search_tcia(text, env)
    if source == "kaggle" or (source == "all" and online):
        try:
            hits += search_kaggle(text, env)
        except UsageError as exc:
            if source == "kaggle":
                raise
            print(f"irmsia datasets: skipping Kaggle: {exc}", file=err)
    if hits:
        print(("\nonline:" if found else "online:"), file=out)
        rows = [["SOURCE", "ID", "TITLE", "COMMAND"]]
        rows += [[h["source"], h["ref"], str(h.get("title") or ""), h["command"]] for h in hits]
        _table(rows, out)
    if not found and not hits:
        hint = "" if online or source != "all" else "; try --online to ask Kaggle and TCIA too"
        print(f"no datasets match {text!r}{hint}", file=out)
    elif found:
        print("\nirmsia datasets show NAME gives the collect command and what the pipeline can do.", file=out)
    return 0


def do_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        return do_list(args.source, args.modality, args.access)
    if args.action == "show":
        return do_show(args.name)
    return do_search(args.text, args.source, args.online)
