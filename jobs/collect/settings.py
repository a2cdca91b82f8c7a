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

from jobs.collect.deid.options import DeidOptions, PrivateTag
from jobs.collect.deid.pseudonyms import MIN_SECRET_BYTES, SECRET_ENV
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
from jobs.core.shards import check_shard


def check_safe_private(entries: tuple[str, ...], flag: str) -> None:
    """Each entry names a private attribute as ``gggg:CREATOR:ee`` (odd group, hexadecimal)."""
    for entry in entries:
        try:
            PrivateTag.parse(entry)
        except ValueError as exc:
            raise UsageError(
                f"{flag} {entry!r}: expected GGGG:CREATOR:EE (an odd hexadecimal group, the private creator, the "
                "element offset in hexadecimal), e.g. 0019:GEMS_ACQU_01:10"
            ) from exc


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
    # De-identification applies to every source: the stage's RawSink de-identifies each DICOM file it stores.
    deidentify: bool = option(
        False,
        result=True,
        parameter="deidentify",
        help="de-identify every DICOM file before it is stored (PS3.15 Annex E Basic Profile, UIDs and IDs keyed "
        f"by {SECRET_ENV}); a PHI scan of every stored header fails the stage (exit 3) on any finding",
    )
    deid_retain_dates: bool = option(
        False,
        result=True,
        parameter="deid_retain_dates",
        help="with --deidentify: Retain Longitudinal Temporal Information (Modified Dates): each patient's dates move "
        "back by the same number of days instead of being removed",
    )
    deid_clean_descriptors: bool = option(
        False,
        result=True,
        parameter="deid_clean_descriptors",
        help="with --deidentify: Clean Descriptors: keep descriptions, comments and texts with every identifying "
        "value of the file cut out, instead of removing them",
    )
    deid_allow_burned_in: bool = option(
        False,
        result=True,
        parameter="deid_allow_burned_in",
        help="with --deidentify: also store images that may show text in their pixels (BurnedInAnnotation YES, or "
        "US, SC and OT without BurnedInAnnotation NO), which are otherwise left out",
    )
    deid_safe_private: tuple[str, ...] = option(
        (),
        result=True,
        check=check_safe_private,
        metavar="GGGG:CREATOR:EE,...",
        help="with --deidentify: private attributes known to be safe to keep (Retain Safe Private), e.g. "
        "0019:GEMS_ACQU_01:10; every other private attribute is removed",
    )
    deid_secret: str | None = option(
        None,
        flag=None,
        env=SECRET_ENV,
        secret=True,
        help="the key of the de-identification pseudonyms (UIDs, IDs, date shifts); environment only, never logged",
    )
    shard: str | None = option(
        None,
        check=check_shard,
        metavar="plan|K/N|gather",
        help="sharded run (jobs/collect/shards.py): plan the shards (TCIA and IDC series, NIH archives), collect part "
        "K of N, or gather them: seal raw/<dataset>/ exactly as an unsharded collect does",
    )
    shard_units: int | None = option(
        None,
        minimum=1,
        help="with --shard: at most this many units (TCIA and IDC series, NIH archives) a shard, instead of the "
        "source's own sizing; give every step of one fan-out the same value",
    )
    options: SourceOptions = field(default_factory=DemoOptions)
    """The chosen source's own options."""

    def validate(self) -> None:
        expected = options_types()[self.source]
        if not isinstance(self.options, expected):
            raise UsageError(f"--source {self.source}: its options must be {expected.__name__}")
        extras = {
            "--deid-retain-dates": self.deid_retain_dates,
            "--deid-clean-descriptors": self.deid_clean_descriptors,
            "--deid-allow-burned-in": self.deid_allow_burned_in,
            "--deid-safe-private": self.deid_safe_private,
        }
        if not self.deidentify and (given := [flag for flag, value in extras.items() if value]):
            raise UsageError(f"{given[0]} is an option of --deidentify; add --deidentify or drop it")
        if self.deidentify and len(self.deid_secret or "") < MIN_SECRET_BYTES:
            raise UsageError(
                f"--deidentify needs {SECRET_ENV} in the environment, at least {MIN_SECRET_BYTES} characters (the key "
                "of the pseudonyms: keep it secret and the same for every collect of one project); it is never a flag"
            )

    def deid_options(self) -> DeidOptions:
        """The de-identification options the settings give (whether or not ``deidentify`` is on)."""
        return DeidOptions(
            retain_dates=self.deid_retain_dates,
            clean_descriptors=self.deid_clean_descriptors,
            safe_private=tuple(PrivateTag.parse(entry) for entry in self.deid_safe_private),
            allow_burned_in=self.deid_allow_burned_in,
        )

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
