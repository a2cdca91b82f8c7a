"""The register stage end to end: a bundle per version, the ledger, caching, and every bad input's exit code."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.hashing import sha256_bytes
from jobs.core.manifest import read_manifest
from jobs.register import ledger
from jobs.register import registry as model_registry
from jobs.register.export import onnx_available
from jobs.register.verify import verify_registry
from tests.jobs.register.conftest import register
from tests.support.runs import seal_run, state_dict_bytes

REPO = Path(__file__).resolve().parents[3]


def registry_keys(store, name="demo-model"):
    return [o.key for o in store.list(f"registry/{name}/")]


def test_registers_a_monai_bundle_with_metadata_and_lineage(store, upstream, run_id):
    # WHEN the run is registered
    code = register(store, "--run", run_id, "--model-name", "demo-model")
    # THEN version 1 is a sealed MONAI-style bundle
    assert code == 0
    manifest = read_manifest(store, "registry/demo-model/1/")
    files = {o.key.removeprefix("registry/demo-model/1/") for o in manifest.outputs}
    expected = {"models/model.pt", "models/model.ts", "configs/metadata.json", "docs/README.md"}
    expected |= {"docs/confusion_matrix.png"} | ({"models/model.onnx"} if onnx_available() else set())
    assert files == expected
    # AND model.pt is the run's best_model.pt byte for byte
    assert store.get_bytes("registry/demo-model/1/models/model.pt") == store.get_bytes(f"runs/{run_id}/best_model.pt")
    # AND the metadata holds the MONAI keys and our metrics, hashes and lineage
    meta = json.loads(store.get_bytes("registry/demo-model/1/configs/metadata.json"))
    for key in ("version", "monai_version", "pytorch_version", "numpy_version", "task", "description",
                "network_data_format", "authors", "copyright", "changelog"):  # fmt: skip
        assert meta[key], key
    fmt = meta["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 1 and fmt["inputs"]["image"]["spatial_shape"] == [32, 32]
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "normal", "1": "abnormal"}
    assert fmt["preprocessing"]["image_size"] == 32
    assert "best_epoch" not in meta["irmsia"]["metrics"]
    ours = meta["irmsia"]
    assert ours["metrics"]["val_auc"] == 0.95 and ours["metric"] == {"name": "val_auc", "value": 0.95}
    recorded = {o.key.removeprefix("registry/demo-model/1/"): o.sha256 for o in manifest.outputs}
    assert ours["model_files"] == {k: v for k, v in recorded.items() if k.startswith("models/")}
    lineage = ours["lineage"]
    assert lineage["split_manifest_sha256"] == upstream.split.content_sha256
    assert lineage["index_manifest_sha256"] == upstream.index.content_sha256
    assert lineage["raw_manifest_sha256"] == upstream.raw.content_sha256
    assert (lineage["source"], lineage["license"], lineage["dataset"]) == ("demo", "CC-BY-4.0", "demo")
    assert lineage["patients_per_split"] == {"train": 14, "val": 3, "test": 3}
    assert ours["run_id"] == run_id and ours["code_version"]
    # AND the model card shows the metrics table and the confusion matrix
    card = store.get_bytes("registry/demo-model/1/docs/README.md").decode()
    assert "| val_auc | 0.9500 |" in card and "confusion_matrix.png" in card and "CC-BY-4.0" in card
    # AND the ledger's first entry commits it, and the first version becomes champion
    (entry,) = ledger.read_entries(store, "demo-model")
    assert entry.version == 1 and entry.prev_sha256 == ledger.GENESIS
    assert entry.fields["metadata_sha256"] == sha256_bytes(
        store.get_bytes("registry/demo-model/1/configs/metadata.json")
    )
    assert entry.fields["manifest_sha256"] == manifest.content_sha256
    assert model_registry.alias_map(store, "demo-model") == {"champion": 1}
    assert verify_registry(store, "demo-model").ok


def test_same_run_again_is_a_cache_hit_and_force_adds_a_version(store, run_id, tmp_path, monkeypatch):
    # GIVEN a registered run
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    before = registry_keys(store)
    # WHEN it is registered again, the result file says cached and nothing changes
    result = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    assert json.loads(result.read_text())["cached"] is True
    assert json.loads(result.read_text())["summary"]["version"] == 1
    assert registry_keys(store) == before
    # WHEN forced, a second version is registered, linked to the first
    assert register(store, "--run", run_id, "--model-name", "demo-model", "--force") == 0
    assert json.loads(result.read_text())["cached"] is False
    entries = ledger.read_entries(store, "demo-model")
    assert [e.version for e in entries] == [1, 2]
    assert entries[1].prev_sha256 == entries[0].sha256


def test_a_retrained_run_with_the_same_id_is_a_new_version(store, upstream, run_id):
    # GIVEN a registered run that is then retrained with different weights (new train manifest)
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    seal_run(store, run_id, upstream=upstream, seed=7)
    # WHEN registered again THEN it is not a cache hit
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    assert [r.version for r in model_registry.list_versions(store, "demo-model")] == [1, 2]


def _remove_manifest(store, run_id):
    store.delete(f"runs/{run_id}/_SUCCESS.json")


def _tamper_model_and_its_store_checksum(store, run_id):
    # The store's own checksum is rewritten too: only the train manifest's record can catch it.
    store.put_bytes(f"runs/{run_id}/best_model.pt", state_dict_bytes(seed=99))


def _undeclared_model(store, run_id):
    # weights of another network, sealed properly: they do not load into the run's config
    seal_run(store, run_id, model_bytes=state_dict_bytes(seed=0, num_classes=3))


BAD_INPUTS = [
    # (case, args, prepare, exit code, message)
    ("unknown run", ["--run", "no-such-run"], None, 3, "no such run"),
    ("run without manifest", [], _remove_manifest, 3, "unfinished"),
    ("model file hash mismatch", [], _tamper_model_and_its_store_checksum, 3, "train manifest records"),
    ("weights do not fit the network", [], _undeclared_model, 3, "does not load into"),
    ("invalid model name", ["--model-name", "Demo_Model"], None, 2, "DNS-1123"),
    ("metric not present", ["--metric", "val_dice"], None, 2, "val_dice"),
    ("bad promote mode", ["--promote", "sometimes"], None, 2, "--promote"),
    ("missing --run", None, None, 2, "--run"),
]


@pytest.mark.parametrize(("case", "args", "prepare", "code", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_exits_with_contract_code_and_registers_nothing(
    store, run_id, capsys, case, args, prepare, code, message
):
    # GIVEN a run made bad in one way
    if prepare:
        prepare(store, run_id)
    argv = ["--model-name", "demo-model"] if args is None else ["--run", run_id, "--model-name", "demo-model", *args]
    # WHEN it is registered
    exit_code = register(store, *argv)
    # THEN the exit code and one-line message follow the contract, and the registry holds nothing
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_code == code
    assert any(message in line for line in err), err
    assert list(store.list("registry/")) == []


def test_failure_after_the_claim_leaves_no_visible_version(store, run_id, monkeypatch):
    # GIVEN a store write that fails while the bundle is being written (after the version was claimed)
    from jobs.core.errors import TransientError
    from jobs.register import registration

    def fail(*args, **kwargs):
        raise TransientError("store unavailable")

    # WHEN registering THEN the stage exits 75, the partial bundle is gone and no reader sees a version
    with monkeypatch.context() as patch:
        patch.setattr(registration, "render_model_card", fail)
        assert register(store, "--run", run_id, "--model-name", "demo-model") == 75
    assert [o.key for o in store.list("registry/demo-model/")] == ["registry/demo-model/claims/00000001.json"]
    assert ledger.read_entries(store, "demo-model") == []
    # AND the next registration gets version 2 (numbers are never reused), and verify notes the abandoned claim
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    assert [r.version for r in model_registry.list_versions(store, "demo-model")] == [2]
    report = verify_registry(store, "demo-model")
    assert report.ok and any("v1 was claimed but never registered" in n for n in report.notes)


@pytest.mark.slow
def test_eight_concurrent_registrations_get_distinct_versions(store, run_id):
    # GIVEN eight registration processes of the same run started together (--force: each must register)
    env = {**os.environ, "PYTHONPATH": str(REPO), "IRMSIA_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "jobs.register", "--run", run_id, "--model-name", "demo-model", "--force",
           "--store", store.uri, "--promote", "never"]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, cwd=REPO) for _ in range(8)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    # THEN all succeed with eight distinct versions 1..8, each sealed, and the ledger chain is intact
    assert [p.returncode for p in procs] == [0] * 8, errors
    entries = ledger.read_entries(store, "demo-model")
    assert sorted(e.version for e in entries) == list(range(1, 9))
    assert [e.seq for e in entries] == list(range(1, 9))
    report = verify_registry(store, "demo-model")
    assert report.ok, report.first_break
    assert report.entries == 8 and report.notes == []


# -- crashes and races (issue 13): every fault is injected at one exact store write of a real store -----------------
def _settings(store, run: str, *extra: str):
    from jobs.register.settings import RegisterSettings

    return RegisterSettings.parse(
        ["--run", run, "--model-name", "demo-model", "--store", store.uri, *extra], os.environ
    )


def _registrations_of(store, run: str) -> list[int]:
    return [r.version for r in model_registry.list_versions(store, "demo-model") if r.run_id == run]


@pytest.mark.slow
def test_a_registrant_killed_right_after_its_ledger_entry_loses_no_promotion(store, run_id):
    from jobs.register.api import load_metadata
    from tests.support.store_faults import kill_at

    # GIVEN a registration SIGKILLed the moment its ledger entry (the commit point) reached the store
    argv = ["--run", run_id, "--model-name", "demo-model", "--store", store.uri]
    killed = kill_at(r"^registry/demo-model/ledger/", "jobs.register", argv)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # WHEN the pod is retried
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    # THEN the version has the alias its registration decided: serving finds the champion, and verify agrees
    assert model_registry.alias_map(store, "demo-model") == {"champion": 1}
    assert load_metadata(store, "demo-model", "champion")["irmsia"]["run_id"] == run_id
    assert verify_registry(store, "demo-model").ok


def test_a_store_outage_right_after_the_commit_point_loses_no_promotion(store, run_id):
    from jobs.core.errors import TransientError
    from jobs.register.registration import register as register_into
    from tests.support.store_faults import FailAfter

    # GIVEN a store that fails every write after the registration's ledger entry was created
    flaky = FailAfter(store, r"^registry/demo-model/ledger/")
    with contextlib.suppress(TransientError):  # exit 75: the orchestrator retries
        register_into(flaky, _settings(store, run_id))
    assert flaky.tripped
    # WHEN the registration is retried on the healthy store
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    # THEN v1 is registered once and is the champion
    assert _registrations_of(store, run_id) == [1]
    assert model_registry.alias_map(store, "demo-model") == {"champion": 1}
    assert verify_registry(store, "demo-model").ok


INTERLEAVINGS = [
    # (case, key of the first registrant's write, whether the second runs before that write or after it)
    ("second finishes right after the first claimed", r"^registry/demo-model/claims/", False),
    ("second finishes while the first writes its bundle", r"^registry/demo-model/\d+/models/model\.pt$", False),
    ("second finishes just before the first's ledger entry", r"^registry/demo-model/ledger/", True),
]


@pytest.mark.parametrize(("case", "pattern", "before"), INTERLEAVINGS, ids=[c[0] for c in INTERLEAVINGS])
def test_the_same_run_registered_twice_at_once_is_one_version(store, run_id, case, pattern, before):
    from jobs.register.registration import register as register_into
    from tests.support.store_faults import Interleave

    # GIVEN two registrations of one run, the second running to completion at one point inside the first
    second: list = []
    racing = Interleave(
        store, pattern, lambda: second.append(register_into(store, _settings(store, run_id))), before=before
    )
    # WHEN both finish
    first_manifest, first_cached = register_into(racing, _settings(store, run_id))
    # THEN the run is one version, both registrants report it, and nothing else is left visible
    assert racing.ran
    ((second_manifest, second_cached),) = second
    assert _registrations_of(store, run_id) == [second_manifest.summary["version"]]
    assert first_manifest.summary["version"] == second_manifest.summary["version"]
    assert (first_cached, second_cached) == (True, False)
    assert model_registry.alias_map(store, "demo-model") == {"champion": second_manifest.summary["version"]}
    report = verify_registry(store, "demo-model")
    assert report.ok, report.first_break
    assert report.entries == 1


@pytest.mark.slow
def test_six_concurrent_registrations_of_one_run_are_one_version(store, run_id):
    # GIVEN six registration processes of the same run started together (no --force)
    env = {**os.environ, "PYTHONPATH": str(REPO), "IRMSIA_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "jobs.register", "--run", run_id, "--model-name", "demo-model",
           "--store", store.uri]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, cwd=REPO) for _ in range(6)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    # THEN all succeed, the run is registered exactly once, and it is the champion
    assert [p.returncode for p in procs] == [0] * 6, errors
    (version,) = _registrations_of(store, run_id)
    assert model_registry.alias_map(store, "demo-model") == {"champion": version}
    report = verify_registry(store, "demo-model")
    assert report.ok, report.first_break
    assert report.entries == 1


KILL_POINTS = [
    # (case, the write after which the first registrant is SIGKILLed)
    ("after its claim", r"^registry/demo-model/claims/"),
    ("after sealing its bundle", r"^registry/demo-model/\d+/_SUCCESS\.json$"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "pattern"), KILL_POINTS, ids=[c[0] for c in KILL_POINTS])
def test_a_registrant_killed_mid_way_never_blocks_the_run(store, run_id, case, pattern):
    from tests.support.store_faults import kill_at

    # GIVEN a registration SIGKILLed part way, before its commit point
    argv = ["--run", run_id, "--model-name", "demo-model", "--store", store.uri]
    assert kill_at(pattern, "jobs.register", argv).returncode == -9
    assert ledger.read_entries(store, "demo-model") == []
    # WHEN the run is registered again
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    # THEN it is registered once, under the next number, and the dead registrant's claim is only a note
    assert _registrations_of(store, run_id) == [2]
    report = verify_registry(store, "demo-model")
    assert report.ok, report.first_break
    assert any("v1 was claimed but never registered" in n for n in report.notes)


LOSSES = [
    # (case, whether a registrant died mid-bundle before claims/ was lost, the version the next run gets)
    pytest.param("claims/ lost", False, 2, id="claims/ lost"),
    pytest.param("claims/ lost after a registrant died mid-bundle", True, 3, marks=pytest.mark.slow,
                 id="claims/ lost after a registrant died mid-bundle"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "dead_registrant", "expected"), LOSSES)
def test_losing_the_claims_never_overwrites_a_version(store, upstream, run_id, case, dead_registrant, expected):
    # GIVEN v1 registered
    assert register(store, "--run", run_id, "--model-name", "demo-model") == 0
    v1 = {o.key: store.get_bytes(o.key) for o in read_manifest(store, "registry/demo-model/1/").outputs}
    seal_run(store, "run-b", upstream=upstream, seed=5, metrics={"val_auc": 0.97})
    if dead_registrant:
        from tests.support.store_faults import kill_at

        # AND run-b's registrant SIGKILLed after writing v2's model file
        argv = ["--run", "run-b", "--model-name", "demo-model", "--store", store.uri]
        assert kill_at(r"^registry/demo-model/2/models/model\.pt$", "jobs.register", argv).returncode == -9
    # AND every claim lost (a lifecycle rule, a bad sync, a hand clean-up)
    assert store.delete_prefix("registry/demo-model/claims/") > 0
    # WHEN another run is registered
    assert register(store, "--run", "run-b", "--model-name", "demo-model") == 0
    # THEN it gets a number no version or leftover has, v1 is untouched, and every version has one entry
    assert [e.version for e in ledger.read_entries(store, "demo-model") if e.fields.get("run_id") == "run-b"] == [
        expected
    ]
    assert {k: store.get_bytes(k) for k in v1} == v1
    assert [r.version for r in model_registry.list_versions(store, "demo-model")] == [1, expected]
    report = verify_registry(store, "demo-model")
    assert report.ok, report.first_break
