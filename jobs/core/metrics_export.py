"""Delivering a stage's metrics: push to a Pushgateway, serve them over HTTP, write them to a text file.

Batch pods live for minutes, so Prometheus cannot be relied on to scrape them. As the Prometheus docs advise for
batch jobs, the stage pushes its whole registry to a Pushgateway (``IRMSIA_PUSHGATEWAY``) with the grouping key
``job=<stage>, workflow_id=<workflow>`` (plus ``part`` for one of several runs of a stage in a workflow: a fold
training, ``fold-<i>``, or their aggregate, ``cv``) and no ``instance`` label: each push (HTTP PUT) replaces the
group, so a rerun of the same workflow replaces the previous run's metrics instead of adding to them. It pushes when it
starts, every ``push_interval_s`` while it runs, and at the end. A Pushgateway that cannot be reached never
fails the stage: the first failed push logs one warning and later ones log at debug level.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import push_to_gateway, start_http_server, write_to_textfile

from jobs.core.metrics import StageMetrics

log = logging.getLogger("irmsia.metrics")


@dataclass(frozen=True, kw_only=True)
class MetricsTargets:
    """Where a stage's metrics go; every field is optional and ``None`` turns that delivery off."""

    pushgateway: str | None = None
    """Pushgateway address (``http://pushgateway:9091``)."""
    push_interval_s: float = 30.0
    """Seconds between pushes while the stage runs."""
    push_timeout_s: float = 5.0
    """Per-push HTTP timeout: a gateway that hangs delays the stage by at most this much."""
    port: int | None = None
    """Serve ``/metrics`` on this port while the stage runs (0 picks a free one)."""
    file: str | None = None
    """Write the text format here when the stage ends."""


class MetricsExport:
    """Runs the deliveries of ``targets`` for one stage run: ``start()`` before the work, ``close()`` after."""

    def __init__(self, metrics: StageMetrics, targets: MetricsTargets, group: Mapping[str, str] | None = None) -> None:
        self.metrics = metrics
        self.targets = targets
        self.group = dict(group or {})
        self.port: int | None = None
        self.push_failures = 0
        self._server: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._push_lock = threading.Lock()

    @property
    def grouping_key(self) -> dict[str, str]:
        """The Pushgateway group: the job is the stage; the workflow id separates workflow runs, ``group`` (the
        settings' ``metrics_group``: a fold training's part) the runs of one stage in one workflow."""
        return {"workflow_id": self.metrics.workflow_id, **self.group}

    def start(self) -> MetricsExport:
        if self.targets.port is not None:
            try:
                self._server, _ = start_http_server(self.targets.port, registry=self.metrics.registry)
            except OSError as exc:
                log.warning(
                    "cannot serve metrics on port %d (%s); the stage goes on without it", self.targets.port, exc
                )
            else:
                self.port = self._server.server_port
                log.info("serving metrics on port %d", self.port)
        if self.targets.pushgateway:
            self.push()  # replaces whatever the previous run of this workflow left in the group
            self._thread = threading.Thread(target=self._push_periodically, name="metrics-push", daemon=True)
            self._thread.start()
        return self

    def _push_periodically(self) -> None:
        while not self._stop.wait(self.targets.push_interval_s):
            self.push()

    def push(self) -> bool:
        """Push the registry once; ``False`` (and a warning the first time) when the gateway is unreachable."""
        if not self.targets.pushgateway:
            return False
        with self._push_lock:
            self.metrics.refresh()
            try:
                push_to_gateway(
                    self.targets.pushgateway,
                    job=self.metrics.stage,
                    registry=self.metrics.registry,
                    grouping_key=self.grouping_key,
                    timeout=self.targets.push_timeout_s,
                )
            except Exception as exc:  # never fail a stage over its metrics
                self.push_failures += 1
                level = logging.WARNING if self.push_failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "could not push metrics to the Pushgateway at %s (%s: %s); the stage goes on without it",
                    self.targets.pushgateway,
                    type(exc).__name__,
                    exc,
                )
                return False
            return True

    def write_file(self) -> None:
        """Write the text format atomically (a temporary file renamed into place)."""
        if not self.targets.file:
            return
        path = Path(self.targets.file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.metrics.refresh()
            write_to_textfile(os.fspath(path), self.metrics.registry)
        except OSError as exc:
            log.warning("could not write metrics to %s (%s); the stage goes on without it", path, exc)

    def close(self) -> None:
        """Final delivery: stop the periodic pushes, push once more, write the file, stop serving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.targets.push_timeout_s + 1)
        self.push()
        self.write_file()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def read_text_metrics(path: str | Path) -> dict[str, float]:
    """A ``--metrics-file`` summed per sample name over its labels (``{}`` when the file is missing or unreadable).

    The local runner uses it for its summary (bytes read and written, items per stage).
    """
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = Path(path).read_text(encoding="utf-8")
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals
    except (OSError, ValueError):
        return {}
