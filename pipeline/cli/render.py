"""``irmsia render``: write the WorkflowTemplate and CronWorkflows for a configuration as YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.argo.render import render_files, write_files
from pipeline.cli.argo_options import add_config_argument, config_from_args


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="write the Argo YAML (WorkflowTemplate, CronWorkflows)", description=__doc__
    )
    add_config_argument(parser)
    parser.add_argument("-o", "--output", type=Path, help="directory to write (a kustomize base); default: stdout")
    parser.set_defaults(do_command=do_command)


def do_command(args: argparse.Namespace) -> int:
    files = render_files(config_from_args(args), source=str(args.config))
    if args.output is None:
        documents = [text for name, text in sorted(files.items()) if name != "kustomization.yaml"]
        sys.stdout.write("---\n".join(documents))
        return 0
    for path in write_files(files, args.output):
        print(path, file=sys.stderr)
    return 0
