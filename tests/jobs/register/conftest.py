"""Fixtures for register tests: a store with a sealed run in it, and a helper to run the stage's ``main``."""

from __future__ import annotations

import pytest

from jobs.core.store import Store, open_store
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
