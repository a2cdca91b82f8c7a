"""A tiny real stage on ``jobs.core.entrypoint.stage_main``: copies ``raw/<dataset>/in.bin`` twice into
``echo/<dataset>/`` through ``StageWriter``, counting two items. ``--fail data|bug`` makes it fail.

Used by the metrics tests in-process (``stage_main("echo", argv, parse_echo, run_echo)``) and by the runner
tests as a process (``python -m tests.support.echo_stage``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobs.core.entrypoint import stage_main
from jobs.core.errors import DataError
from jobs.core.manifest import StageWriter
from jobs.core.metrics import stage_metrics
from jobs.core.settings import CommonSettings, add_common_arguments, common_settings
from jobs.core.store import open_store


@dataclass(frozen=True, kw_only=True)
class EchoSettings:
    common: CommonSettings
    dataset: str
    fail: str


def parse_echo(argv: Sequence[str], env: Mapping[str, str]) -> EchoSettings:
    parser = argparse.ArgumentParser(prog="irmsia-echo")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--fail", default="")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return EchoSettings(common=common_settings(args, env), dataset=args.dataset, fail=args.fail)


def run_echo(settings: EchoSettings):
    if settings.fail == "data":
        raise DataError(f"raw/{settings.dataset}/in.bin is empty: replace it")
    if settings.fail == "bug":
        raise ZeroDivisionError("division by zero")
    store = open_store(settings.common.store)
    data = store.get_bytes(f"raw/{settings.dataset}/in.bin")
    writer = StageWriter(store, "echo", f"echo/{settings.dataset}/", {}, {})
    if (hit := writer.cached(settings.common.force)) is not None:
        return hit, True
    writer.begin()
    writer.put_bytes("a.bin", data)
    writer.put_bytes("b.bin", data)
    stage_metrics().items.inc(2)
    return writer.commit(summary={"copies": 2}), False


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("echo", argv, parse_echo, run_echo)


if __name__ == "__main__":
    sys.exit(main())
