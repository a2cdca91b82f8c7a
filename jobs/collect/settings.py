"""The collect stage's settings: its own options, and the option group of the source it runs.

Every source owns its options (``jobs/collect/sources/<source>.py``); the parser accepts all of them, grouped by
source, and the settings hold only the chosen source's, validated there. A flag that belongs to another source is a
usage error, so ``--modality CT --source kaggle`` fails before anything is downloaded. Argo passes every flag of the
DAG, so an empty value means "not set".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from jobs.collect.sources import SOURCES, options_types
from jobs.collect.sources.base import SourceOptions
from jobs.collect.sources.demo import DemoOptions
from jobs.core.errors import UsageError
from jobs.core.paths import check_name
from jobs.core.settings import (
    CommonSettings,
    Options,
    StageArgumentParser,
    StageSettings,
    check_value,
    is_given,
    option,
    options_of,
)


@dataclass(frozen=True, kw_only=True)
class CollectSettings(StageSettings):
    """Everything one collect run needs: where from (``source`` and its ``options``), into which dataset."""

    prog = "irmsia-collect"
    about = "Download a dataset (demo, local folder, URL, TCIA, Kaggle, NIH) into raw/<dataset>/."

    source: str = option("demo", choices=SOURCES, parameter="source", help="where the data comes from")
    dataset: str = option(
        "demo",
        check=check_name,
        parameter="dataset",
        help="dataset name in the store: files go to raw/<dataset>/ (required unless --source demo)",
    )
    workers: int = option(8, minimum=1, maximum=256, parameter="collect_workers", help="parallel downloads and uploads")
    options: SourceOptions = field(default_factory=DemoOptions)
    """The chosen source's own options."""

    def validate(self) -> None:
        expected = options_types()[self.source]
        if not isinstance(self.options, expected):
            raise UsageError(f"--source {self.source}: its options must be {expected.__name__}")

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "run_id": None}

    @classmethod
    def add_extra_arguments(cls, parser: StageArgumentParser, seen: set[str]) -> None:
        for name, group in options_types().items():
            group.add_arguments(parser.add_argument_group(f"--source {name}"), seen)

    @classmethod
    def option_groups(cls) -> tuple[type[Options], ...]:
        return (cls, *options_types().values())

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], env: Mapping[str, str]) -> Self:
        common = CommonSettings.from_flags(flags, env)
        values = cls.values_from(flags, env)
        source = values.get("source", "demo")
        check_value(next(o for o in options_of(cls) if o.name == "source"), source)
        if "dataset" not in values and source != "demo":
            raise UsageError(f"--source {source} needs --dataset NAME: the store folder raw/<NAME>/ to collect into")
        groups = options_types()
        chosen = groups[source]
        own = {o.name for o in options_of(chosen)}
        for other, group in groups.items():
            for opt in options_of(group):
                if opt.name not in own and opt.flag and is_given(flags.get(opt.name)):
                    raise UsageError(
                        f"{opt.flag} is an option of --source {other}, not of --source {source}; "
                        "drop it or change --source"
                    )
        options = chosen.from_values(chosen.values_from(flags, env), env)
        return cls.build(values, common=common, options=options)
