"""The ``irmsia`` command: one module per subcommand, each with ``add_subparser`` and ``do_command``.

The common options (``--store``, ``--log-format``) belong to every parser of the tree, so they may stand before or
after the sub-command and its action (``irmsia --store S registry list`` and ``irmsia registry list NAME --store
S`` are the same). ``main`` resolves them once: the flag, else ``IRMSIA_STORE`` / ``IRMSIA_LOG_FORMAT``, else the
default; every ``do_command`` reads ``args.store`` and ``args.log_format``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence

from jobs import __version__
from jobs.core.errors import IrmsiaError
from jobs.core.logs import redact
from jobs.core.settings import LOG_FORMATS
from jobs.core.store import DEFAULT_STORE

# Subcommand modules under pipeline.cli; each defines add_subparser(subparsers) and do_command(args) -> int.
SUBCOMMANDS = ("run", "status", "menu", "render", "submit", "templates", "datasets", "registry")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--store`` and ``--log-format`` on one parser; unset values stay unset (``SUPPRESS``), so a value given
    before the sub-command is not overwritten by the sub-command's parser."""
    group = parser.add_argument_group("common options (before or after the sub-command)")
    group.add_argument(
        "--store", default=argparse.SUPPRESS, help=f"store URI (env IRMSIA_STORE; default {DEFAULT_STORE})"
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="auto (text on a terminal, JSON lines otherwise), text or json (env IRMSIA_LOG_FORMAT)",
    )


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser below it, each once."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irmsia", description="IRMSIA Pipeline: datasets in, registered models out.")
    parser.add_argument("--version", action="version", version=f"irmsia {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"pipeline.cli.{name}").add_subparser(subparsers)
    for each in _parsers(parser):
        add_common_options(each)
    return parser


def resolve_common(args: argparse.Namespace, env: Mapping[str, str]) -> argparse.Namespace:
    """Fill ``args.store`` and ``args.log_format``: the flag, else the environment, else the default."""
    args.store = getattr(args, "store", None) or env.get("IRMSIA_STORE") or DEFAULT_STORE
    args.log_format = getattr(args, "log_format", None) or env.get("IRMSIA_LOG_FORMAT") or "auto"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``irmsia``; returns the exit code."""
    args = resolve_common(build_parser().parse_args(argv), os.environ)
    try:
        return int(args.do_command(args))
    except IrmsiaError as exc:
        print(f"irmsia {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
