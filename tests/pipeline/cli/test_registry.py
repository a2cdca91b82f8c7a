"""``irmsia registry list|show|promote|verify`` on a real registry, on both stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.store import open_store
from jobs.register.__main__ import main as register_main
from pipeline.cli import main
from tests.support.runs import seal_dataset, seal_run

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def registry(store_uri):
    store = open_store(store_uri)
    upstream = seal_dataset(store)
    seal_run(store, "r1", upstream=upstream, metrics={"val_auc": 0.9})
    seal_run(store, "r2", upstream=upstream, metrics={"val_auc": 0.8}, seed=2)
    for run in ("r1", "r2"):
        assert register_main(["--run", run, "--model-name", "m", "--store", store_uri, "--log-format", "text"]) == 0
    return store


def cli(store, *args):
    return main(["registry", "--store", store.uri, *args])


def test_list_models_and_versions(registry, capsys):
    assert cli(registry, "list") == 0
    assert capsys.readouterr().out.split() == ["m"]
    assert cli(registry, "list", "m") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:5] == ["1", "champion", "val_auc", "0.9000", "r1"]
    assert lines[2].split()[:5] == ["2", "candidate", "val_auc", "0.8000", "r2"]


def test_show_prints_the_version_record(registry, capsys):
    assert cli(registry, "show", "m", "champion") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["version"] == 1 and record["aliases"] == ["champion"]
    assert record["metadata"]["irmsia"]["run_id"] == "r1"
    assert (
        record["files"]["models/model.pt"]["sha256"] == record["metadata"]["irmsia"]["model_files"]["models/model.pt"]
    )


def test_promote_then_verify(registry, capsys):
    assert cli(registry, "promote", "m", "2") == 0
    assert "champion -> v2" in capsys.readouterr().out
    # the promotion is an alias move in the ledger, checked like every other entry
    assert cli(registry, "verify", "m") == 0
    out = capsys.readouterr().out
    assert out.startswith("OK m: 3 ledger entries (2 versions, 3 alias moves)") and "head " in out
    assert cli(registry, "list", "m") == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["2", "champion,candidate"]


def test_verify_reports_a_forged_alias_in_one_line(registry, capsys):
    registry.put_bytes("registry/m/aliases/champion/00000003.json", b'{"alias": "champion", "version": 2}')
    assert cli(registry, "verify", "m") == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("BROKEN m: registry/m/aliases/champion/00000003.json is an alias record outside")
    assert len(lines) == 2 and lines[1].startswith("  checked before the break:")


def test_verify_exits_3_at_the_first_break(registry, capsys):
    registry.put_bytes("registry/m/2/models/model.ts", b"tampered")
    assert cli(registry, "verify", "m") == 3
    assert "BROKEN m: ledger entry 2 (v2): registry/m/2/models/model.ts SHA-256 is" in capsys.readouterr().out


ERRORS = [
    (["show", "m", "7"], 3, "no registered v7"),
    (["show", "ghost"], 3, "no registered versions of 'ghost'"),
    (["promote", "m", "9"], 3, "no registered v9"),
    (["verify", "ghost"], 3, "no model 'ghost'"),
    (["list", "Bad_Name"], 2, "DNS-1123"),
]


def test_errors_follow_the_exit_code_contract(registry, capsys):
    # one registry for the whole table: each case only reads it
    for args, code, message in ERRORS:
        assert cli(registry, *args) == code, args
        assert message in capsys.readouterr().err, args


def test_the_registry_cli_never_imports_torch():
    code = "import sys, pipeline.cli.registry; sys.exit('torch' in sys.modules or 'monai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)}).returncode == 0
