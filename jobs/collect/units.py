"""Sources that collect a dataset as independent units (TCIA series, NIH archives): what a sharded collect cuts.

A ``UnitSource`` lists its units in a stable order (``units``: id, bytes when known, and the data needed to fetch
it), fetches one unit (``collect_unit``: stored through the sink and sealed as a unit record, or reused from one),
and writes what depends on every unit last (``finish``: licence, series lists, labels). Its ``collect`` runs all
three in one process; ``jobs.collect.shards`` runs the units of each shard in its own process and ``finish`` once,
in the gather, where every unit is reused from the record a shard sealed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic

from jobs.collect.sources.base import CollectReport, OptionsT, RawSink, Source
from jobs.core.hashing import sha256_json
from jobs.core.logs import progress
from jobs.core.shards import ShardLimits


@dataclass(frozen=True)
class Unit:
    """One independently collected piece of a dataset."""

    id: str
    """Stable and unique within the dataset (``tcia:<SeriesInstanceUID>``, ``nih:images_001.tar.gz``)."""
    size: int
    """Bytes, when the source knows them before downloading (0 otherwise): shards are balanced by them."""
    data: Any
    """What ``collect_unit`` needs to fetch it (a series' metadata, an archive's entry)."""


def units_fingerprint(units: Sequence[Unit]) -> str:
    """The identity of a unit listing (ids and sizes, in order): every shard of one plan must cut the same one."""
    return sha256_json([[u.id, u.size] for u in units])


class UnitSource(Source[OptionsT], Generic[OptionsT]):
    """A source whose dataset is a list of units plus what ``finish`` derives from all of them."""

    shard_limits: ClassVar[ShardLimits]
    """How many units and bytes one shard of a sharded collect holds."""
    unit_label: ClassVar[str] = "units"

    def open_session(self, options: OptionsT, workdir: Path) -> Any:
        """What one process's units share (an HTTP client, its statistics, files fetched once into ``workdir``,
        a private scratch folder); ``None`` by default."""
        return None

    def close_session(self, session: Any, sink: RawSink) -> None:
        """Log the session's transfer statistics."""

    @abstractmethod
    def units(self, options: OptionsT, session: Any) -> list[Unit]:
        """The dataset's units in their stable order (the order ``finish`` lists them in)."""

    @abstractmethod
    def collect_unit(self, options: OptionsT, unit: Unit, sink: RawSink, session: Any) -> Any:
        """Store one unit (or reuse the record of an earlier run) and return what ``finish`` needs of it."""

    @abstractmethod
    def finish(self, options: OptionsT, units: Sequence[Unit], results: Mapping[str, Any], sink: RawSink,
               session: Any) -> CollectReport:  # fmt: skip
        """Write what depends on every unit (``results``: unit id -> ``collect_unit``'s answer)."""

    def unit_workers(self, sink: RawSink) -> int:
        """How many units are fetched at once."""
        return sink.workers

    def collect_units(self, options: OptionsT, units: Sequence[Unit], sink: RawSink, session: Any) -> dict[str, Any]:
        """Every unit of ``units``, in parallel; the first failure cancels the rest and is raised."""
        results: dict[str, Any] = {}
        if not units:
            return results
        with ThreadPoolExecutor(max_workers=max(1, min(self.unit_workers(sink), len(units)))) as pool:
            futures = {pool.submit(self._one, options, u, sink, session): u.id for u in units}
            try:
                for future in progress(as_completed(futures), len(futures), self.unit_label, None):
                    results[futures[future]] = future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return results

    def _one(self, options: OptionsT, unit: Unit, sink: RawSink, session: Any) -> Any:
        with sink.unit_scope():  # with --deidentify, the unit's record keeps what its files told the filter
            return self.collect_unit(options, unit, sink, session)

    def collect(self, options: OptionsT, sink: RawSink) -> CollectReport:
        session = self.open_session(options, sink.workdir)
        try:
            units = self.units(options, session)
            results = self.collect_units(options, units, sink, session)
            return self.finish(options, units, results, sink, session)
        finally:
            self.close_session(session, sink)
