"""The collect stage holds the contract: cache hits, --force, exit codes, and nothing sealed after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.collect.__main__ import main
from jobs.core.errors import TransientError
from jobs.core.manifest import read_manifest
from jobs.core.paths import manifest_key
from jobs.core.store import open_store

ROOT = Path(__file__).resolve().parents[3]
DEMO = ["--source", "demo", "--dataset", "demo", "--patients", "6", "--log-format", "json"]


def _outputs(store_uri: str, prefix: str = "raw/demo/") -> list[tuple[str, str]]:
    return [(o.key, o.sha256) for o in read_manifest(open_store(store_uri), prefix).outputs]


def test_rerun_is_a_cache_hit(store_uri, tmp_path, monkeypatch, caplog):
    # GIVEN a collected demo
    result = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    assert main([*DEMO, "--store", store_uri]) == 0
    first = json.loads(result.read_text())
    sealed = open_store(store_uri).head(manifest_key("raw/demo/"))
    # WHEN it runs again with the same parameters
    assert main([*DEMO, "--store", store_uri]) == 0
    # THEN the stage reports a cache hit and the manifest was not rewritten
    second = json.loads(result.read_text())
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["content_sha256"] == first["content_sha256"]
    assert open_store(store_uri).head(manifest_key("raw/demo/")) == sealed
    assert second["summary"]["source"] == "demo" and second["summary"]["files"] > 0


def test_force_recomputes_the_same_bytes(store_uri, tmp_path, monkeypatch):
    result = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    assert main([*DEMO, "--store", store_uri]) == 0
    before = _outputs(store_uri)
    # WHEN forced
    assert main([*DEMO, "--store", store_uri, "--force"]) == 0
    # THEN it was recomputed (not cached) and produced identical outputs
    assert json.loads(result.read_text())["cached"] is False
    assert _outputs(store_uri) == before


def test_changed_parameters_recollect_and_prune_leftovers(store_uri):
    # GIVEN a demo with 6 patients
    assert main([*DEMO, "--store", store_uri]) == 0
    six = {k for k, _ in _outputs(store_uri)}
    # WHEN collected again with 4 patients
    assert main([*DEMO, "--store", store_uri, "--patients", "4"]) == 0
    # THEN the files of the two extra patients are gone from the store, not just from the manifest
    four = {k for k, _ in _outputs(store_uri)}
    assert four < six
    stored = {o.key for o in open_store(store_uri).list("raw/demo/")} - {manifest_key("raw/demo/")}
    assert stored == four


def test_failure_mid_write_leaves_no_manifest_and_rerun_is_identical(store_uri, tmp_path, monkeypatch):
    # GIVEN a reference result in another store
    reference = str(tmp_path / "reference")
    assert main([*DEMO, "--store", reference]) == 0
    # AND a store that fails after 10 uploads (the network went away mid-run)
    store_cls = type(open_store(store_uri))
    real = {name: getattr(store_cls, name) for name in ("put_file", "move_file")}
    calls = {"n": 0}

    def failing(name):
        def upload(self, key, path, sha256=None, **kwargs):
            calls["n"] += 1
            if calls["n"] > 10:
                raise TransientError(f"store unreachable while writing {key}")
            return real[name](self, key, path, sha256=sha256, **kwargs)

        return upload

    for name in real:
        monkeypatch.setattr(store_cls, name, failing(name))
    # WHEN the collect runs into it
    assert main([*DEMO, "--store", store_uri]) == 75
    # THEN some objects were written but nothing is sealed
    store = open_store(store_uri)
    assert any(store.list("raw/demo/"))
    assert read_manifest(store, "raw/demo/") is None
    # AND after the store recovers, a plain rerun reproduces the reference byte for byte
    for name, method in real.items():
        monkeypatch.setattr(store_cls, name, method)
    assert main([*DEMO, "--store", store_uri]) == 0
    assert _outputs(store_uri) == _outputs(reference)


def test_killed_process_leaves_no_manifest_and_rerun_is_identical(tmp_path):
    # GIVEN a sealed demo in a file store, rewritten with --force by a process that is killed mid-upload
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IRMSIA_STORE": str(store)}
    argv = [sys.executable, "-m", "jobs.collect", "--source", "demo", "--dataset", "demo", "--log-format", "json"]
    subprocess.run([*argv, "--patients", "6"], env=env, check=True, capture_output=True)
    reference = _outputs(str(store))
    proc = subprocess.Popen([*argv, "--patients", "300", "--workers", "2", "--force"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    seen = {k for k, _ in reference}
    deadline = time.monotonic() + 120
    try:
        # wait until the new run has withdrawn the manifest and uploaded at least one new file
        while time.monotonic() < deadline and proc.poll() is None:
            current = {p.relative_to(store).as_posix() for p in (store / "raw" / "demo").rglob("*.dcm")}
            if not (store / "raw/demo/_SUCCESS.json").exists() and current - seen:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the collect finished before it could be killed; raise --patients"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    # THEN nothing is sealed
    assert read_manifest(open_store(str(store)), "raw/demo/") is None
    # AND rerunning the original parameters reproduces the original outputs exactly
    subprocess.run([*argv, "--patients", "6"], env=env, check=True, capture_output=True)
    assert _outputs(str(store)) == reference
    assert {o.key for o in open_store(str(store)).list("raw/demo/")} == {k for k, _ in reference} | {
        "raw/demo/_SUCCESS.json"
    }


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--source", "nope"], 2, "--source 'nope'"),
        (["--source", "local", "--dataset", "x"], 2, "--path"),
        (["--source", "local", "--dataset", "x", "--path", "/does/not/exist"], 2, "--path '/does/not/exist'"),
        (["--source", "url", "--dataset", "x"], 2, "--url"),
        (["--source", "url", "--dataset", "x", "--url", "ftp://x/y"], 2, "--url 'ftp://x/y'"),
        (["--source", "kaggle", "--dataset", "x", "--ref", "noslug"], 2, "owner/slug"),
        (["--source", "tcia", "--dataset", "x"], 2, "--collection"),
        (["--source", "local", "--path", "."], 2, "--dataset"),
        (["--dataset", "Bad Name"], 2, "--dataset 'Bad Name'"),
        (["--patients", "two"], 2, "--patients 'two'"),
        (["--patients", "2"], 2, "--patients 2"),
        (["--workers", "0"], 2, "--workers 0"),
        (["--sha256", "abc"], 2, "--sha256"),
        (["--no-such-flag"], 2, "unrecognized arguments"),
        (["--store", "gs://bucket/x"], 2, "unsupported scheme"),
        (["--source", "nih", "--dataset", "x", "--archives", "0,13"], 2, "--archives"),
        (["--source", "url", "--dataset", "x", "--url", "http://h/x.zip", "--backoff", "-1"], 2, "--backoff -1.0"),
        (["--source", "url", "--dataset", "x", "--url", "http://h/x.zip", "--retries", "0"], 2, "--retries 0"),
        (["--modality", "CT"], 2, "--modality is an option of --source tcia, not of --source demo"),
        (["--patients", "99999999"], 2, "--patients 99999999: must be between 4 and 2000"),
        (["--source", "tcia", "--dataset", "x", "--collection", "C", "--max-patients", "0"], 2, "--max-patients 0"),
    ],
)
def test_bad_usage_exits_2_naming_the_field(argv, code, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")  # errors found while parsing flags use the environment's format
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("irmsia-collect: error:") and message in err
    assert len(err.splitlines()) == 1


def test_empty_flags_from_argo_mean_unset(tmp_path):
    # Argo passes every DAG argument, empty ones included: the demo must run with them
    store = str(tmp_path / "store")
    argv = ["--source", "demo", "--dataset", "demo", "--path", "", "--url", "", "--ref", "", "--patients", "4"]
    assert main([*argv, "--store", store, "--log-format", "json"]) == 0
    assert read_manifest(open_store(store), "raw/demo/").params["seed"] == 42


def test_kaggle_credentials_never_reach_a_repr():
    from jobs.collect.settings import CollectSettings

    env = {"KAGGLE_USERNAME": "someone", "KAGGLE_KEY": "s3cr3t-kaggle-key"}
    settings = CollectSettings.parse(["--source", "kaggle", "--dataset", "x", "--ref", "a/b"], env)
    assert settings.options.credentials.key == "s3cr3t-kaggle-key"
    assert "s3cr3t" not in repr(settings)


def _scratch_entries(store_uri: str, tmpdir: Path) -> list[str]:
    """What is left in the scratch areas a collect uses: the file store's ``.tmp/``, or (S3) the temporary folder."""
    area = Path(store_uri) / ".tmp" if "://" not in store_uri else tmpdir
    return sorted(p.relative_to(area).as_posix() for p in area.rglob("*")) if area.exists() else []


def test_a_rerun_sweeps_the_scratch_a_killed_run_left(store_uri, tmp_path):
    # GIVEN a collect killed while its scratch holds the generated demo files (its own TMPDIR, for S3 stores)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "IRMSIA_STORE": store_uri, "TMPDIR": str(tmpdir)}
    argv = [sys.executable, "-I", "-m", "jobs.collect", "--source", "demo", "--dataset", "demo", "--patients", "40",
            "--log-format", "json"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.endswith(".dcm") for p in _scratch_entries(store_uri, tmpdir)):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the collect finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert any(p.endswith(".dcm") for p in _scratch_entries(store_uri, tmpdir))
    # WHEN the stage runs again
    subprocess.run(argv, env=env, check=True, capture_output=True)
    # THEN it sealed the dataset and left no scratch behind: neither the killed run's nor its own
    assert read_manifest(open_store(store_uri), "raw/demo/") is not None
    assert _scratch_entries(store_uri, tmpdir) in ([], [f"irmsia-scratch-{os.getuid()}"])
