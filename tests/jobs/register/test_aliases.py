"""Champion/candidate: the promotion rules, and alias moves that are ledger entries, compare-and-swap on both stores."""

from __future__ import annotations

import os
import threading

import pytest

from jobs.core.errors import DataError, UsageError
from jobs.core.store import open_store
from jobs.register import aliases, ledger
from jobs.register import registry as model_registry
from jobs.register.ledger import LedgerEntry
from jobs.register.registration import register as register_into
from jobs.register.settings import RegisterSettings
from tests.jobs.register.conftest import register
from tests.support.runs import seal_dataset, seal_run
from tests.support.store_faults import Interleave


def entry(version: int, split: str = "s1", **metrics: float) -> LedgerEntry:
    return LedgerEntry(version, {"version": version, "split_manifest_sha256": split, "metrics": metrics}, "h")


RULES = [
    # (case, mode, metric, new, champion, expected alias, reason contains)
    ("first version", "auto", "val_auc", entry(1, val_auc=0.5), None, "champion", "no champion"),
    ("beats", "auto", "val_auc", entry(2, val_auc=0.9), entry(1, val_auc=0.8), "champion", "beats"),
    ("ties", "auto", "val_auc", entry(2, val_auc=0.8), entry(1, val_auc=0.8), "candidate", "does not beat"),
    ("worse", "auto", "val_auc", entry(2, val_auc=0.7), entry(1, val_auc=0.8), "candidate", "does not beat"),
    ("other split", "auto", "val_auc", entry(2, "s2", val_auc=0.99), entry(1, val_auc=0.8), "candidate",
     "different split"),
    ("champion lacks metric", "auto", "val_f1", entry(2, val_f1=0.9), entry(1, val_auc=0.8), "candidate", "no val_f1"),
    ("loss: lower wins", "auto", "val_loss", entry(2, val_loss=0.1), entry(1, val_loss=0.2), "champion", "beats"),
    ("loss: higher loses", "auto", "val_loss", entry(2, val_loss=0.3), entry(1, val_loss=0.2), "candidate",
     "does not beat"),
    ("always", "always", "val_auc", entry(2, val_auc=0.1), entry(1, val_auc=0.8), "champion", "always"),
    ("never", "never", "val_auc", entry(1, val_auc=0.9), None, "candidate", "never"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "mode", "metric", "new", "champion", "alias", "reason"), RULES,
                         ids=[r[0] for r in RULES])  # fmt: skip
def test_promotion_rules(case, mode, metric, new, champion, alias, reason):
    decision = aliases.decide(mode, metric, new, champion)
    assert decision.alias == alias
    assert reason in decision.reason


def test_auto_promotes_only_a_better_model_on_the_same_split(store):
    # GIVEN runs of increasing and decreasing quality on one split, and one on another split
    upstream = seal_dataset(store)
    seal_run(store, "r1", upstream=upstream, metrics={"val_auc": 0.80})
    seal_run(store, "r2", upstream=upstream, metrics={"val_auc": 0.90}, seed=2)
    seal_run(store, "r3", upstream=upstream, metrics={"val_auc": 0.85}, seed=3)
    seal_run(store, "r4", upstream=seal_dataset(store, "other", seed=1), metrics={"val_auc": 0.99}, seed=4)
    # WHEN each is registered with --promote auto
    for run in ("r1", "r2", "r3", "r4"):
        assert register(store, "--run", run, "--model-name", "m") == 0
    # THEN the champion is the best on the shared split, and the later ones are candidates
    history = [v.version for v in aliases.history(store, "m", "champion")]
    assert history == [1, 2]
    assert model_registry.alias_map(store, "m") == {"champion": 2, "candidate": 4}
    # AND a manual promotion moves the champion
    model_registry.promote(store, "m", 4)
    assert model_registry.alias_map(store, "m")["champion"] == 4
    assert aliases.current(store, "m", "champion").previous_version == 2


def registered(store, name: str, versions) -> None:
    """Ledger entries registering ``versions`` (no bundles: these tests are about the alias moves in the chain)."""
    for v in versions:
        ledger.append(store, name, lambda entries, v=v: {"kind": "register", "version": v}, token=f"reg-{v}")


def test_a_promotion_decided_against_a_replaced_champion_is_decided_again(store):
    # GIVEN champion v1 (0.80) and a run of 0.85 being registered, while another of 0.90 commits just before it
    upstream = seal_dataset(store)
    for run, auc, seed in (("r1", 0.80, 1), ("r2", 0.85, 2), ("r3", 0.90, 3)):
        seal_run(store, run, upstream=upstream, metrics={"val_auc": auc}, seed=seed)
    assert register(store, "--run", "r1", "--model-name", "m") == 0

    def settings(run: str):
        return RegisterSettings.parse(["--run", run, "--model-name", "m", "--store", store.uri], os.environ)

    racing = Interleave(store, r"^registry/m/ledger/", lambda: register_into(store, settings("r3")), before=True)
    # WHEN r2's registration (which saw champion v1) commits after r3's
    manifest, _ = register_into(racing, settings("r2"))
    # THEN it was compared with the champion that won, v3, and is only the candidate
    assert racing.ran and manifest.summary["version"] == 2
    assert manifest.summary["alias"] == "candidate" and "champion v3" in manifest.summary["promotion"]
    assert [v.version for v in aliases.history(store, "m", "champion")] == [1, 3]
    assert model_registry.alias_map(store, "m") == {"champion": 3, "candidate": 2}


def test_concurrent_promotions_lose_no_update(store_uri):
    # GIVEN eight registered versions, and eight writers each moving the champion once, from whatever they read
    registered(open_store(store_uri), "m", range(1, 9))
    barrier = threading.Barrier(8)

    def promote(v: int) -> None:
        own = open_store(store_uri)
        barrier.wait()
        aliases.set_alias(own, "m", "champion", v, "race")

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN every move is in the ledger's history exactly once, each recording the value it replaced
    values = aliases.history(open_store(store_uri), "m", "champion")
    assert sorted(v.version for v in values) == list(range(1, 9))
    assert [v.previous_version for v in values[1:]] == [v.version for v in values[:-1]]
    assert all(ledger.read_entries(open_store(store_uri), "m")[v.seq - 1].kind == "alias" for v in values)


def test_a_move_to_where_the_alias_already_is_writes_nothing(store):
    registered(store, "m", [1])
    first = aliases.set_alias(store, "m", "champion", 1, "first")
    again = aliases.set_alias(store, "m", "champion", 1, "again")
    assert first == again and len(ledger.read_entries(store, "m")) == 2


def test_an_alias_never_names_an_unregistered_version(store):
    registered(store, "m", [1])
    with pytest.raises(DataError, match="no registered v2"):
        aliases.set_alias(store, "m", "champion", 2, "typo")
    assert aliases.current(store, "m", "champion") is None


def test_unknown_alias_is_a_usage_error(store):
    with pytest.raises(UsageError, match="alias 'best'"):
        aliases.current(store, "m", "best")


def test_a_lost_response_to_an_alias_move_counts_as_done(store):
    from tests.jobs.register.test_versions import LostFirstResponse

    registered(store, "m", [1])
    lossy = LostFirstResponse(store)
    assert aliases.set_alias(lossy, "m", "champion", 1, "first").version == 1
    assert lossy.lost == 1 and [v.version for v in aliases.history(store, "m", "champion")] == [1]
    assert len(ledger.read_entries(store, "m")) == 2
