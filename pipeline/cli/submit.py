"""``irmsia submit``: start a run of the ``irmsia-pipeline`` WorkflowTemplate on an Argo Server."""

from __future__ import annotations

import argparse
import sys

from pipeline.argo.workflow import parse_parameters
from pipeline.cli.argo_options import add_server_arguments, optional_config_from_args, server_from_args
from pipeline.dag import PIPELINE
from pipeline.profiles import PROFILES, profile_values
from pipeline.values import require_dataset


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="submit a pipeline run to Argo Workflows", description=__doc__)
    add_server_arguments(parser)
    parser.add_argument(
        "-p", "--parameter", dest="parameters", action="append", default=[], metavar="KEY=VALUE",
        help="workflow parameter, repeatable (-p dataset=demo -p epochs=5)",
    )  # fmt: skip
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="start from a named set of parameter values (demo: the quick CPU demo); -p wins",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded")
    parser.set_defaults(do_command=do_command)


def do_command(args: argparse.Namespace) -> int:
    parameters = {**profile_values(args.profile, PIPELINE.defaults()), **parse_parameters(args.parameters)}
    require_dataset(parameters, named="dataset" in parameters)
    server = server_from_args(args, optional_config_from_args(args))
    created = server.submit(parameters)
    name = created.metadata.name or ""
    print(f"submitted {server.namespace}/{name}", file=sys.stderr)
    print(name)
    if not args.wait:
        return 0
    phase = server.wait(name)
    print(f"{server.namespace}/{name}: {phase}", file=sys.stderr)
    return 0 if phase == "Succeeded" else 1
