"""``irmsia status [--json] [--explain STAGE]``: what the store holds, and why a stage would rerun.

Without ``--explain``: datasets (files, bytes, rows, sealed stages), training runs (metrics), models (versions,
aliases), the last pipeline runs with each stage's state, and the cache hits and misses among them. With
``--explain STAGE`` and the same parameter flags as ``irmsia run``: whether STAGE (and each stage upstream of it)
would be a cache hit, and if not which parameter, input hash or code version changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobs.core.store import open_store
from pipeline.cli.run import add_parameter_arguments, values_from_args
from pipeline.dag import PIPELINE
from pipeline.explain import ExplainReport, explain
from pipeline.status import StoreStatus, store_status


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="what the store holds; why a stage would rerun", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--runs", type=int, default=10, metavar="N", help="how many pipeline runs to show (10)")
    parser.add_argument(
        "--explain",
        metavar="STAGE",
        choices=[s.name for s in PIPELINE.stages],
        help="say why STAGE would rerun with these parameters (the flags of irmsia run)",
    )
    parser.add_argument("--force", action="store_true", help="with --explain: as irmsia run --force would")
    add_parameter_arguments(parser)
    parser.set_defaults(do_command=do_command)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _number(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _console(out: Any) -> Any:
    from rich.console import Console

    terminal = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, width=None if terminal else 160, no_color=not terminal, highlight=False)


def print_status(status: StoreStatus, out: Any) -> None:
    """The status as tables."""
    from rich.table import Table

    console = _console(out)
    console.print(f"store: {status.store}")
    table = Table(title="datasets", title_justify="left")
    for column in ("dataset", "files", "size", "rows", "collect", "index", "split"):
        table.add_column(column)
    for d in status.datasets:
        marks = ["sealed" if stage in d.sealed else "-" for stage in ("collect", "index", "split")]
        table.add_row(d.name, str(d.files), _size(d.bytes), _number(d.rows), *marks)
    console.print(table)
    table = Table(title="training runs", title_justify="left")
    for column in ("run", "dataset", "model", "state", "val acc", "val auc", "test acc"):
        table.add_column(column)
    for r in status.runs:
        m = r.metrics
        table.add_row(r.run_id, r.dataset, r.model, "sealed" if r.sealed else "unfinished",
                      _number(m["val_accuracy"]), _number(m["val_auc"]), _number(m["test_accuracy"]))  # fmt: skip
    console.print(table)
    table = Table(title="models", title_justify="left")
    for column in ("model", "versions", "aliases", "latest run", "metric"):
        table.add_column(column)
    for model in status.models:
        if model.error:
            table.add_row(model.name, "-", "-", "-", f"unreadable: {model.error}")
            continue
        last = model.versions[-1] if model.versions else {}
        aliases = ", ".join(f"{a} v{v}" for a, v in sorted(model.aliases.items())) or "-"
        metric = f"{last.get('metric', '')} {_number(last.get('value'))}" if last else "-"
        table.add_row(model.name, str(len(model.versions)), aliases, str(last.get("run_id", "-")), metric)
    console.print(table)
    table = Table(title="pipeline runs (newest first)", title_justify="left")
    for column in ("started", "workflow", "exit", "stages"):
        table.add_column(column)
    for run in status.pipeline_runs:
        stages = " ".join(f"{s.name}:{s.state}" for s in run.stages)
        table.add_row(run.started_at, run.workflow_id, str(run.exit_code), stages)
    console.print(table)
    cache = status.cache
    console.print(f"cache: {cache['hits']} hits, {cache['misses']} misses, {cache['failed']} failed stages "
                  f"over {len(status.pipeline_runs)} pipeline runs")  # fmt: skip


def print_explanation(report: ExplainReport, out: Any) -> None:
    """One block per stage: its verdict, then each reason."""
    for item in report.explanations:
        where = f" ({item.prefix})" if item.prefix else ""
        print(f"{item.stage}{where}: {item.verdict}", file=out)
        for change in item.changes:
            print(f"  - {change}", file=out)


def do_command(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    if args.explain:
        values = values_from_args(args)
        report = ExplainReport(args.explain, explain(args.explain, values, args.store, force=args.force))
        if args.json:
            print(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str), file=out)
        else:
            print_explanation(report, out)
        return 0
    status = store_status(open_store(args.store), args.runs)
    if args.json:
        print(json.dumps(status.to_dict(), indent=2, sort_keys=True, default=str), file=out)
    else:
        print_status(status, out)
    return 0
