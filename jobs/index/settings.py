"""Settings of the index stage: its options, declared once (see ``jobs.core.settings``)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.core.paths import check_name
from jobs.core.settings import StageSettings, option
from jobs.core.shards import check_shard
from jobs.index.layouts import AUTO, LAYOUTS


@dataclass(frozen=True, kw_only=True)
class IndexSettings(StageSettings):
    """What one index run needs."""

    prog = "irmsia-index"
    about = "Hash, sniff and read every raw file; write the index."

    dataset: str = option(
        help="dataset name: reads raw/<dataset>/, writes index/<dataset>/",
        check=check_name,
        result=True,
        parameter="dataset",
    )
    labels: str | None = option(
        None,
        result=True,
        parameter="labels",
        help="labels CSV: a store key (also relative to raw/<dataset>/) or a local path",
    )
    layout: str = option(
        AUTO,
        choices=(AUTO, *LAYOUTS),
        result=True,
        parameter="layout",
        help="layout adapter, or auto to detect it from the tree",
    )
    verify_pixels: bool = option(
        False,
        result=True,
        parameter="verify_pixels",
        help="also decode every image's pixel data and quarantine those that fail (slower)",
    )
    workers: int = option(0, minimum=0, help="worker processes; 0 means one per usable CPU (the pod's CPU limit)")
    shard: str | None = option(
        None,
        check=check_shard,
        metavar="plan|K/N|gather",
        help="sharded run (jobs/index/shards.py): plan the shards, inspect part K of N, or gather (merge) them into "
        "the same index.parquet an unsharded run writes",
    )

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "run_id": None}
