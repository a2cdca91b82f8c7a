"""``irmsia menu``: the full-screen terminal menu (``pipeline.menu``)."""

from __future__ import annotations

import argparse


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("menu", help="full-screen menu: collect, datasets, train, models, status, docs",
                                   description=__doc__)  # fmt: skip
    parser.set_defaults(do_command=do_command)


def do_command(args: argparse.Namespace) -> int:
    from pipeline.menu.app import MenuApp

    return MenuApp(store=args.store).run() or 0
