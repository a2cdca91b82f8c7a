"""A tiny real stage on the scaffold (``PlannedStage`` under ``stage_main``): copies ``raw/<dataset>/in.bin`` twice
into ``echo/<dataset>/``, counting two items. ``--fail data|bug`` makes it fail.

Used by the metrics tests in-process (``stage_main(ECHO, argv)``) and by the runner tests as a process
(``python -m tests.support.echo_stage``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core.entrypoint import stage_main
from jobs.core.errors import DataError
from jobs.core.metrics import stage_metrics
from jobs.core.settings import StageSettings, option
from jobs.core.stage import PlannedStage, StageJob, StagePlan
from jobs.core.store import Store


@dataclass(frozen=True, kw_only=True)
class EchoSettings(StageSettings):
    prog = "irmsia-echo"

    dataset: str = option("demo", help="dataset to echo")
    fail: str = option("", help="data or bug: fail that way")

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "run_id": None}


class EchoStage(PlannedStage[EchoSettings, StagePlan]):
    name = "echo"
    settings_type = EchoSettings

    def plan(self, settings: EchoSettings, store: Store) -> StagePlan:
        if settings.fail == "data":
            raise DataError(f"raw/{settings.dataset}/in.bin is empty: replace it")
        if settings.fail == "bug":
            raise ZeroDivisionError("division by zero")
        return StagePlan(prefix=f"echo/{settings.dataset}/", params={})

    def produce(self, settings: EchoSettings, job: StageJob[StagePlan]) -> dict[str, Any]:
        data = job.store.get_bytes(f"raw/{settings.dataset}/in.bin")
        job.writer.put_bytes("a.bin", data)
        job.writer.put_bytes("b.bin", data)
        stage_metrics().items.inc(2)
        return {"copies": 2}


ECHO = EchoStage()


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(ECHO, argv)


if __name__ == "__main__":
    sys.exit(main())
