"""``verify`` recomputes every hash and reports the first place the registry no longer matches its records."""

from __future__ import annotations

import json

import pytest

from jobs.core.errors import DataError
from jobs.core.hashing import canonical_json
from jobs.register.verify import verify_registry
from tests.jobs.register.conftest import (
    append_move_to_unregistered,
    drop_alias_object,
    register,
    rewrite_champion_move,
)
from tests.support.runs import seal_run


@pytest.fixture
def two_versions(store, upstream):
    for i in (1, 2):
        seal_run(store, f"r{i}", upstream=upstream, seed=i, metrics={"val_auc": 0.8 + i / 100})
        assert register(store, "--run", f"r{i}", "--model-name", "m") == 0
    return store


def rewrite_ledger_field(store, seq: int, **changes):
    key = f"registry/m/ledger/{seq:08d}.json"
    fields = json.loads(store.get_bytes(key))
    store.put_bytes(key, canonical_json({**fields, **changes}))


def test_intact_registry_verifies(two_versions):
    report = verify_registry(two_versions, "m")
    assert report.ok and report.entries == 2 and report.files > 2 * 4
    assert report.head_sha256 and report.notes == []


TAMPERS = [
    # (case, tamper(store), the first break must mention)
    ("model bytes changed", lambda s: s.put_bytes("registry/m/2/models/model.pt", b"evil weights"),
     "ledger entry 2 (v2): registry/m/2/models/model.pt SHA-256 is"),
    ("torchscript deleted", lambda s: s.delete("registry/m/1/models/model.ts"),
     "registry/m/1/models/model.ts is missing"),
    ("ledger entry metrics rewritten", lambda s: rewrite_ledger_field(s, 1, metrics={"val_auc": 0.99}),
     "ledger entry 2: prev_sha256"),
    ("ledger entry metadata hash rewritten", lambda s: rewrite_ledger_field(s, 2, metadata_sha256="0" * 64),
     "ledger entry 2 (v2): registry/m/2/configs/metadata.json does not hash"),
    ("ledger entry deleted", lambda s: s.delete("registry/m/ledger/00000001.json"),
     "ledger entry 1 is missing (next stored is 2)"),
    ("manifest rewritten", lambda s: s.put_bytes(
        "registry/m/2/_SUCCESS.json",
        s.get_bytes("registry/m/2/_SUCCESS.json").replace(b'"model_name": "m"', b'"model_name": "n"')),
     "ledger entry 2 (v2): registry/m/2/_SUCCESS.json was changed"),
    ("alias record outside the ledger", lambda s: s.put_bytes("registry/m/aliases/champion/00000009.json",
                                                             canonical_json({"version": 7})),
     "registry/m/aliases/champion/00000009.json is an alias record outside the ledger"),
    ("stray object", lambda s: s.put_bytes("registry/m/notes.txt", b"hi"),
     "registry/m/notes.txt is not part of the registry"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "tamper", "message"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_is_detected_at_the_first_break(two_versions, case, tamper, message):
    # GIVEN a registry changed behind the registry's back (store checksums rewritten too, as an attacker would)
    tamper(two_versions)
    # WHEN it is verified THEN the first break is reported, naming where
    report = verify_registry(two_versions, "m")
    assert not report.ok
    assert message in report.first_break


ALIAS_FORGERIES = [
    # (case, forge(store), the first break must mention)
    ("alias object dropped in", drop_alias_object,
     "registry/m/aliases/champion/00000003.json is an alias record outside the ledger"),
    ("the champion's move rewritten", rewrite_champion_move, "ledger entry 4: prev_sha256"),
    ("the champion's move deleted", lambda s: s.delete("registry/m/ledger/00000003.json"),
     "ledger entry 3 is missing (next stored is 4)"),
    ("a chained move to an unregistered version", append_move_to_unregistered,
     "ledger entry 5: moves champion to v9, which no earlier entry registers"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "forge", "message"), ALIAS_FORGERIES, ids=[f[0] for f in ALIAS_FORGERIES])
def test_a_forged_alias_is_a_break(promoted, case, forge, message):
    # GIVEN an intact registry whose champion was moved by hand (an alias move between two registrations)
    before = verify_registry(promoted, "m")
    assert before.ok and (before.entries, before.versions, before.alias_moves) == (4, 3, 4)
    # WHEN an alias is forged THEN verify reports it as the first break
    forge(promoted)
    report = verify_registry(promoted, "m")
    assert not report.ok
    assert message in report.first_break


def test_the_earliest_of_two_breaks_is_reported(two_versions):
    two_versions.put_bytes("registry/m/2/models/model.pt", b"x")
    two_versions.put_bytes("registry/m/1/docs/README.md", b"y")
    report = verify_registry(two_versions, "m")
    assert "registry/m/1/docs/README.md" in report.first_break
    assert report.entries == 0


def test_a_file_edited_in_place_is_detected(tmp_path):
    # GIVEN a file-store registry whose model file is edited on disk, bypassing the store entirely
    from jobs.core.store import open_store

    store = open_store(str(tmp_path / "store"))
    seal_run(store, "r1")
    assert register(store, "--run", "r1", "--model-name", "m") == 0
    path = tmp_path / "store" / "registry" / "m" / "1" / "models" / "model.pt"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    # THEN verify names the file
    assert "registry/m/1/models/model.pt SHA-256 is" in verify_registry(store, "m").first_break


def test_unknown_model_is_a_data_error(store):
    with pytest.raises(DataError, match="no model 'ghost'"):
        verify_registry(store, "ghost")
