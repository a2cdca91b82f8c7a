"""Champion/candidate: the promotion rules, and alias updates that are compare-and-swap on both stores."""

from __future__ import annotations

import threading

import pytest

from jobs.core.errors import UsageError
from jobs.core.store import open_store
from jobs.register import aliases, catalog
from jobs.register.ledger import LedgerEntry
from tests.jobs.register.conftest import register
from tests.support.runs import seal_dataset, seal_run


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
    assert catalog.alias_map(store, "m") == {"champion": 2, "candidate": 4}
    # AND a manual promotion moves the champion
    catalog.promote(store, "m", 4)
    assert catalog.alias_map(store, "m")["champion"] == 4
    assert aliases.current(store, "m", "champion").fields["previous_version"] == 2


def test_compare_and_set_refuses_a_stale_expectation(store):
    first = aliases.set_alias(store, "m", "champion", 1, "test")
    assert aliases.compare_and_set(store, "m", "champion", first, 2, "a") is True
    # a writer that still believes v1 is champion loses
    assert aliases.compare_and_set(store, "m", "champion", first, 3, "b") is False
    assert aliases.current(store, "m", "champion").version == 2


def test_concurrent_promotions_lose_no_update(store_uri):
    # GIVEN eight writers each moving the champion once, from whatever value they read
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
    # THEN every move is in the history exactly once, each recording the value it replaced
    values = aliases.history(open_store(store_uri), "m", "champion")
    assert sorted(v.version for v in values) == list(range(1, 9))
    assert [v.fields["previous_version"] for v in values[1:]] == [v.version for v in values[:-1]]


def test_unknown_alias_is_a_usage_error(store):
    with pytest.raises(UsageError, match="alias 'best'"):
        aliases.current(store, "m", "best")


def test_a_lost_response_to_an_alias_move_counts_as_done(store):
    from tests.jobs.register.test_versions import LostFirstResponse

    lossy = LostFirstResponse(store)
    assert aliases.compare_and_set(lossy, "m", "champion", None, 1, "first") is True
    assert lossy.lost == 1 and [v.version for v in aliases.history(store, "m", "champion")] == [1]
