"""A real Prometheus Pushgateway and Prometheus server (Debian's ``prometheus-pushgateway`` and ``prometheus``) on
127.0.0.1, on free ports, with Prometheus scraping the Pushgateway every second (``honor_labels: true``).

``make services`` installs both with apt-get; where they are missing, the fixtures in ``tests/conftest.py``
skip with a message saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.seaweedfs import free_port, stop_process

INSTALL_HINT = "run `make services` (apt-get install -y prometheus prometheus-pushgateway)"


def pushgateway_binary() -> str | None:
    """Debian names it ``prometheus-pushgateway``; upstream tarballs ``pushgateway``."""
    return shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass
class Server:
    """A server process listening on ``url``; ``stop()`` ends it (idempotent)."""

    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> str:
        """``127.0.0.1:port``, the form ``IRMSIA_PUSHGATEWAY`` and scrape targets take."""
        return self.url.removeprefix("http://")

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.read()

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Prometheus(Server):
    """A Prometheus server with helpers for its HTTP query API."""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """``/api/v1/query`` result vector: ``[{"metric": {labels}, "value": [ts, "v"]}, ...]``."""
        raw = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        body = json.loads(raw)
        if body.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def wait_for(
        self, promql: str, ready: Callable[[list[dict[str, Any]]], bool] = bool, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``ready(result)``: Prometheus sees a push only after its next scrape."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if ready(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql!r} did not become ready in {timeout}s; last result {result}")
            time.sleep(0.5)


def _start(args: list[str], workdir: Path, name: str, url: str, ready_path: str, timeout: float) -> subprocess.Popen:
    log_path = workdir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - stays open for the server's lifetime
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + ready_path, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"{name} did not become ready in {timeout}s; see {log_path}")
        time.sleep(0.2)


def start_pushgateway(workdir: Path, timeout: float = 30.0) -> Server:
    """Start a Pushgateway on a free loopback port (metrics kept in memory only)."""
    binary = pushgateway_binary()
    if binary is None:
        raise FileNotFoundError(f"the Pushgateway is not installed: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{free_port()}"
    # Debian's build persists to /var/lib/prometheus/pushgateway.data by default: keep tests in memory, isolated.
    args = [binary, f"--web.listen-address={url.removeprefix('http://')}", "--persistence.file=", "--log.level=warn"]
    proc = _start(args, workdir, "pushgateway", url, "/-/ready", timeout)
    return Server(url, proc, workdir / "pushgateway.log")


def start_prometheus(workdir: Path, scrape_target: str, timeout: float = 60.0) -> Prometheus:
    """Start Prometheus scraping ``scrape_target`` (a Pushgateway) every second, keeping the pushed labels."""
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError(f"Prometheus is not installed: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML; no YAML writer needed
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "pushgateway",
                        "honor_labels": True,
                        "scrape_interval": "1s",
                        "static_configs": [{"targets": [scrape_target]}],
                    }
                ],
            }
        )
    )
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--log.level=warn",
    ]
    proc = _start(args, workdir, "prometheus", url, "/-/ready", timeout)
    return Prometheus(url, proc, workdir / "prometheus.log")
