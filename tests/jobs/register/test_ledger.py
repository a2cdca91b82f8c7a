"""The ledger: a linear hash chain, appended exclusively, that survives concurrency and lost responses."""

from __future__ import annotations

import itertools
import threading

from jobs.core.hashing import sha256_bytes
from jobs.core.store import open_store
from jobs.register import ledger
from tests.jobs.register.test_versions import LostFirstResponse


def test_entries_link_to_the_previous_entrys_bytes(store):
    # WHEN three entries are appended
    for v in (1, 2, 3):
        ledger.append(store, "m", {"version": v, "model_name": "m"}, token=f"t{v}")
    entries = ledger.read_entries(store, "m")
    # THEN each links to the SHA-256 of the stored bytes of the one before, the first to the genesis value
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_sha256 == ledger.GENESIS
    for prev, entry in itertools.pairwise(entries):
        raw = store.get_bytes(f"registry/m/ledger/{prev.seq:08d}.json")
        assert entry.prev_sha256 == prev.sha256 == sha256_bytes(raw)
    assert ledger.head(store, "m").seq == 3


def test_concurrent_appends_never_fork_the_chain(store_uri):
    # GIVEN eight writers, each with its own client, appending at once
    barrier = threading.Barrier(8)

    def append(v: int) -> None:
        own = open_store(store_uri)
        barrier.wait()
        ledger.append(own, "m", {"version": v, "model_name": "m"}, token=f"t{v}")

    threads = [threading.Thread(target=append, args=(v,)) for v in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN there are eight entries in one unbroken chain, each version once
    entries = ledger.read_entries(ledger_store := open_store(store_uri), "m")
    assert sorted(e.version for e in entries) == list(range(1, 9))
    prev = ledger.GENESIS
    for e in entries:
        assert e.prev_sha256 == prev
        prev = e.sha256
    assert ledger.head(ledger_store, "m").sha256 == prev


def test_a_lost_response_does_not_append_twice(store):
    lossy = LostFirstResponse(store)
    entry = ledger.append(lossy, "m", {"version": 1, "model_name": "m"}, token="mine")
    assert (entry.seq, lossy.lost) == (1, 1)
    assert len(ledger.read_entries(store, "m")) == 1
