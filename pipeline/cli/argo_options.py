"""Options shared by the subcommands that talk to an Argo Server: where it is, how to authenticate, the config."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from jobs.core.errors import UsageError
from pipeline.argo.submit import ArgoServer
from pipeline.config import DEFAULT_CONFIG, DeploymentConfig, load_config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"deployment configuration (default {DEFAULT_CONFIG})")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--argo-server", required=True, metavar="URL", help="Argo Server URL, e.g. https://localhost:2746"
    )
    parser.add_argument(
        "--token",
        help="bearer token; prefer the ARGO_TOKEN environment variable (a flag shows in the process list)",
    )
    parser.add_argument("--namespace", help="namespace (default: the configuration's namespace)")
    parser.add_argument("--insecure", action="store_true", help="skip TLS verification (a port-forwarded server)")


def server_from_args(
    args: argparse.Namespace, config: DeploymentConfig | None, env: Mapping[str, str] | None = None
) -> ArgoServer:
    """The server of ``--argo-server``; the namespace is ``--namespace`` or else the configuration's."""
    env = os.environ if env is None else env
    namespace = args.namespace or (config.namespace if config is not None else None)
    if namespace is None:
        raise UsageError("--namespace is required without a configuration file")
    return ArgoServer(
        url=args.argo_server,
        namespace=namespace,
        token=args.token or env.get("ARGO_TOKEN") or None,
        verify_ssl=not args.insecure,
    )


def config_from_args(args: argparse.Namespace) -> DeploymentConfig:
    return load_config(args.config)


def optional_config_from_args(args: argparse.Namespace) -> DeploymentConfig | None:
    """The configuration, or None when ``--namespace`` is given and the default file is absent (``irmsia submit``
    needs only the namespace, so it works from any folder)."""
    if args.namespace and args.config == DEFAULT_CONFIG and not Path(args.config).exists():
        return None
    return load_config(args.config)
