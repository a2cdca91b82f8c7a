"""``stage_main`` records every stage's common metrics and delivers them as the settings say."""

from __future__ import annotations

import secrets

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs.core.entrypoint import stage_main
from jobs.core.errors import UsageError
from jobs.core.store import open_store
from tests.support.echo_stage import ECHO, EchoSettings
from tests.support.prometheus import Server
from tests.support.seaweedfs import free_port


def read_metrics(path) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "store"
    open_store(str(path)).put_bytes("raw/demo/in.bin", b"x" * 1000)
    monkeypatch.setenv("IRMSIA_STORE", str(path))
    monkeypatch.setenv("IRMSIA_WORKFLOW_ID", "wf-test")
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    monkeypatch.delenv("IRMSIA_PUSHGATEWAY", raising=False)
    return path


def test_successful_run_records_common_metrics(store, tmp_path):
    # GIVEN a stage that reads 1000 bytes and writes two copies
    prom = tmp_path / "echo.prom"
    # WHEN it runs, then reruns with the same inputs
    assert stage_main(ECHO, ["--metrics-file", str(prom)]) == 0
    first = read_metrics(prom)
    assert stage_main(ECHO, ["--metrics-file", str(prom)]) == 0
    second = read_metrics(prom)
    # THEN the first run counts items and bytes, and succeeded
    labels = first["irmsia_stage_items_total"][0].labels
    assert (labels["stage"], labels["dataset"], labels["workflow_id"]) == ("echo", "demo", "wf-test")
    assert first["irmsia_stage_items_total"][0].value == 2
    assert first["irmsia_stage_bytes_read_total"][0].value == 1000
    assert first["irmsia_stage_bytes_written_total"][0].value == 2000
    assert first["irmsia_stage_exit_code"][0].value == 0
    assert first["irmsia_stage_cache_hits_total"][0].value == 0
    assert first["irmsia_stage_last_success_timestamp_seconds"][0].value > 0
    assert first["irmsia_stage_duration_seconds"][0].value >= 0
    assert "irmsia_stage_errors_total" not in first
    # AND the rerun is a cache hit that wrote nothing
    assert second["irmsia_stage_cache_hits_total"][0].value == 1
    assert second["irmsia_stage_bytes_written_total"][0].value == 0


@pytest.mark.parametrize(
    ("fail", "exit_code", "kind"),
    [("data", 3, "DataError"), ("bug", 1, "ZeroDivisionError")],
)
def test_failed_run_records_exit_code_and_error_kind(store, tmp_path, fail, exit_code, kind):
    # GIVEN a stage that fails
    prom = tmp_path / "echo.prom"
    # WHEN it runs
    code = stage_main(ECHO, ["--fail", fail, "--metrics-file", str(prom)])
    # THEN the exit code and the error's class are in the metrics, and no success time
    metrics = read_metrics(prom)
    assert code == exit_code
    assert metrics["irmsia_stage_exit_code"][0].value == exit_code
    (error,) = metrics["irmsia_stage_errors_total"]
    assert (error.labels["kind"], error.value) == (kind, 1)
    assert "irmsia_stage_last_success_timestamp_seconds" not in metrics


def test_unreachable_pushgateway_does_not_fail_the_stage(store, tmp_path, monkeypatch, capsys):
    # GIVEN IRMSIA_PUSHGATEWAY pointing where nothing listens
    monkeypatch.setenv("IRMSIA_PUSHGATEWAY", f"127.0.0.1:{free_port()}")
    # WHEN the stage runs
    code = stage_main(ECHO, [])
    # THEN it succeeds, with one warning about the Pushgateway
    assert code == 0
    assert capsys.readouterr().err.count("could not push metrics to the Pushgateway") == 1


@pytest.mark.integration
def test_stage_pushes_to_pushgateway(store, monkeypatch, pushgateway: Server):
    # GIVEN IRMSIA_PUSHGATEWAY set and a fresh workflow id
    wf = "wf-" + secrets.token_hex(4)
    monkeypatch.setenv("IRMSIA_PUSHGATEWAY", pushgateway.address)
    monkeypatch.setenv("IRMSIA_WORKFLOW_ID", wf)
    # WHEN the stage runs
    assert stage_main(ECHO, []) == 0
    # THEN the Pushgateway holds its final metrics under job=echo, workflow_id=<wf>
    text = pushgateway.get("/metrics").decode()
    items = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "irmsia_stage_items_total" and s.labels.get("workflow_id") == wf
    ]
    assert [(s.labels["job"], s.value) for s in items] == [("echo", 2)]


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, {"pushgateway": None, "push_interval_s": 30.0, "metrics_port": None, "metrics_file": None}),
        (
            ["--metrics-port", "9102", "--metrics-file", "/tmp/m.prom"],
            {"IRMSIA_PUSHGATEWAY": "http://pg:9091", "IRMSIA_PUSH_INTERVAL": "5"},
            {
                "pushgateway": "http://pg:9091",
                "push_interval_s": 5.0,
                "metrics_port": 9102,
                "metrics_file": "/tmp/m.prom",
            },
        ),
        (
            ["--metrics-port", "", "--metrics-file", ""],
            {"IRMSIA_METRICS_FILE": "/tmp/env.prom"},
            {"pushgateway": None, "push_interval_s": 30.0, "metrics_port": None, "metrics_file": "/tmp/env.prom"},
        ),
    ],
)
def test_metrics_settings(argv, env, expected):
    common = EchoSettings.parse(argv, env).common
    assert {k: getattr(common, k) for k in expected} == expected


@pytest.mark.parametrize(
    ("argv", "env", "match"),
    [
        (["--metrics-port", "http"], {}, "--metrics-port 'http': expected a whole number"),
        (["--metrics-port", "70000"], {}, "--metrics-port 70000: use a TCP port number"),
        ([], {"IRMSIA_PUSH_INTERVAL": "0"}, "IRMSIA_PUSH_INTERVAL 0.0: use a positive number"),
        ([], {"IRMSIA_PUSH_INTERVAL": "soon"}, "IRMSIA_PUSH_INTERVAL 'soon': expected a number"),
    ],
)
def test_invalid_metrics_settings(argv, env, match):
    with pytest.raises(UsageError, match=match):
        EchoSettings.parse(argv, env)
