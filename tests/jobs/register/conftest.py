"""Fixtures for register tests: a store with a sealed run in it, a registry with a hand promotion, forgeries of
its aliases, and a helper to run the stage's ``main``."""

from __future__ import annotations

import json

import pytest

from jobs.core.hashing import canonical_json, sha256_bytes
from jobs.core.store import Store, open_store
from jobs.register import aliases, ledger
from jobs.register import registry as model_registry
from jobs.register.__main__ import main
from tests.support.runs import Upstream, seal_dataset, seal_run


@pytest.fixture
def store(store_uri: str) -> Store:
    return open_store(store_uri)


@pytest.fixture
def upstream(store: Store) -> Upstream:
    return seal_dataset(store)


@pytest.fixture
def run_id(store: Store, upstream: Upstream) -> str:
    seal_run(store, "run-a", upstream=upstream)
    return "run-a"


def register(store: Store, *args: str) -> int:
    """Run ``irmsia-register`` in-process against ``store``; returns the exit code."""
    return main([*args, "--store", store.uri, "--log-format", "text"])


@pytest.fixture
def promoted(store: Store, upstream: Upstream) -> Store:
    """Four ledger entries: v1 (champion), v2 (candidate), v2 promoted to champion by hand, v3 (candidate)."""
    for i, auc in ((1, 0.81), (2, 0.80)):
        seal_run(store, f"r{i}", upstream=upstream, seed=i, metrics={"val_auc": auc})
        assert register(store, "--run", f"r{i}", "--model-name", "m") == 0
    model_registry.promote(store, "m", 2)
    seal_run(store, "r3", upstream=upstream, seed=3, metrics={"val_auc": 0.79})
    assert register(store, "--run", "r3", "--model-name", "m") == 0
    return store


# -- forged aliases: what an attacker with write access to the store (checksums included) can do ------------------
def drop_alias_object(store: Store) -> None:
    """An alias record as the pre-ledger layout kept them, naming v3 as the newest champion."""
    body = {"alias": "champion", "version": 3, "seq": 3, "previous_version": 2, "reason": "forged", "token": "x"}
    store.put_bytes("registry/m/aliases/champion/00000003.json", canonical_json(body))


def rewrite_champion_move(store: Store) -> None:
    """The ledger entry that made v2 champion, rewritten to name v1 (the champion it replaced)."""
    seq = aliases.current(store, "m", "champion").seq
    key = f"registry/m/ledger/{seq:08d}.json"
    store.put_bytes(key, canonical_json({**json.loads(store.get_bytes(key)), "version": 1}))


def append_move_to_unregistered(store: Store) -> None:
    """A validly linked alias move appended behind the ledger's back, to a version nobody registered."""
    seq, key = ledger.entry_keys(store, "m")[-1]
    body = {"kind": "alias", "alias": "champion", "version": 9, "model_name": "m", "seq": seq + 1,
            "prev_sha256": sha256_bytes(store.get_bytes(key)), "token": "x", "reason": "forged"}  # fmt: skip
    store.put_bytes(f"registry/m/ledger/{seq + 1:08d}.json", canonical_json(body))
