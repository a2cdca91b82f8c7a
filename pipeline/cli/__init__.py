"""The ``irmsia`` command: one module per subcommand, each with ``add_subparser`` and ``do_command``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from jobs import __version__
from jobs.core.errors import IrmsiaError
from jobs.core.logs import redact

# Subcommand modules under pipeline.cli; each defines add_subparser(subparsers) and do_command(args) -> int.
SUBCOMMANDS = ("run", "render", "submit", "templates", "datasets", "registry")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irmsia", description="IRMSIA Pipeline: datasets in, registered models out.")
    parser.add_argument("--version", action="version", version=f"irmsia {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"pipeline.cli.{name}").add_subparser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``irmsia``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.do_command(args))
    except IrmsiaError as exc:
        print(f"irmsia {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
