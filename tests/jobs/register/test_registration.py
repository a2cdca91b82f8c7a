"""The register stage end to end: a bundle per version, the ledger, caching, and every bad input's exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.hashing import sha256_bytes
from jobs.core.manifest import read_manifest
from jobs.register import catalog, ledger
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
    assert catalog.alias_map(store, "demo-model") == {"champion": 1}
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
    assert [r.version for r in catalog.list_versions(store, "demo-model")] == [1, 2]


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
    assert [r.version for r in catalog.list_versions(store, "demo-model")] == [2]
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
