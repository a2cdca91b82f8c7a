"""The ledger: a linear hash chain, appended exclusively, validated on every read, that survives concurrency and
lost responses."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from jobs.core.errors import DataError
from jobs.core.hashing import canonical_json, sha256_bytes
from jobs.core.store import open_store
from jobs.register import ledger
from tests.jobs.register.test_versions import LostFirstResponse


def registration(version: int):
    return lambda entries: {"kind": "register", "version": version}


def test_entries_link_to_the_previous_entrys_bytes(store):
    # WHEN three entries are appended
    for v in (1, 2, 3):
        ledger.append(store, "m", registration(v), token=f"t{v}")
    entries = ledger.read_entries(store, "m")
    # THEN each links to the SHA-256 of the stored bytes of the one before, the first to the genesis value
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_sha256 == ledger.GENESIS
    for prev, entry in itertools.pairwise(entries):
        raw = store.get_bytes(f"registry/m/ledger/{prev.seq:08d}.json")
        assert entry.prev_sha256 == prev.sha256 == sha256_bytes(raw)
    assert ledger.head(store, "m").seq == 3
    assert {e.fields["model_name"] for e in entries} == {"m"}


def test_concurrent_appends_never_fork_the_chain(store_uri):
    # GIVEN eight writers, each with its own client, appending at once
    barrier = threading.Barrier(8)

    def append(v: int) -> None:
        own = open_store(store_uri)
        barrier.wait()
        ledger.append(own, "m", registration(v), token=f"t{v}")

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
    entry, _ = ledger.append(lossy, "m", registration(1), token="mine")
    assert (entry.seq, lossy.lost) == (1, 1)
    assert len(ledger.read_entries(store, "m")) == 1


def test_the_builder_sees_the_entries_it_links_to_and_may_back_off(store):
    # GIVEN a writer whose entry depends on the chain, racing one that appends first
    seen: list[int] = []

    def build(entries):
        seen.append(len(entries))
        if len(entries) == 0:
            ledger.append(store, "m", registration(1), token="other")  # wins entry 1 meanwhile
        return None if any(e.version == 1 for e in entries) else {"kind": "register", "version": 1}

    # WHEN it appends THEN it built on the empty chain, lost entry 1, rebuilt on the winner's and backed off
    entry, entries = ledger.append(store, "m", build, token="mine")
    assert entry is None and seen == [0, 1] and [e.fields["token"] for e in entries] == ["other"]


def test_the_same_version_is_never_registered_twice(store):
    ledger.append(store, "m", registration(1), token="a")
    with pytest.raises(DataError, match=r"refusing to append .* v1 is already registered by entry 1"):
        ledger.append(store, "m", registration(1), token="b")
    assert len(ledger.read_entries(store, "m")) == 1


def _rewrite(store, seq: int, **changes) -> None:
    key = f"registry/m/ledger/{seq:08d}.json"
    store.put_bytes(key, canonical_json({**json.loads(store.get_bytes(key)), **changes}))


def _append_raw(store, **fields) -> None:
    """A validly linked entry written behind the ledger's back."""
    last = ledger.entry_keys(store, "m")[-1]
    prev = sha256_bytes(store.get_bytes(last[1]))
    body = {"model_name": "m", "seq": last[0] + 1, "prev_sha256": prev, "token": "x", **fields}
    store.put_bytes(f"registry/m/ledger/{last[0] + 1:08d}.json", canonical_json(body))


BREAKS = [
    # (case, tamper, the message readers get)
    ("entry rewritten", lambda s: _rewrite(s, 1, version=7), "ledger entry 2: prev_sha256"),
    ("entry deleted", lambda s: s.delete("registry/m/ledger/00000001.json"), "ledger entry 1 is missing"),
    ("alias move to an unregistered version", lambda s: _append_raw(s, kind="alias", alias="champion", version=9),
     "moves champion to v9, which no earlier entry registers"),
    ("unknown alias", lambda s: _append_raw(s, kind="alias", alias="best", version=1), "moves alias 'best'"),
    ("version registered twice", lambda s: _append_raw(s, kind="register", version=2), "v2 is already registered"),
    ("unknown kind", lambda s: _append_raw(s, kind="delete", version=1), "unknown kind 'delete'"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "tamper", "message"), BREAKS, ids=[b[0] for b in BREAKS])
def test_readers_refuse_a_broken_chain(store, case, tamper, message):
    # GIVEN a chain of two registrations, tampered with
    for v in (1, 2):
        ledger.append(store, "m", registration(v), token=f"t{v}")
    tamper(store)
    # WHEN it is read THEN the first break is a DataError naming it, and nothing can be appended to it
    with pytest.raises(ledger.ChainBroken, match=message) as broken:
        ledger.read_entries(store, "m")
    assert "run irmsia registry verify m" in str(broken.value)
    with pytest.raises(ledger.ChainBroken):
        ledger.append(store, "m", registration(3), token="t3")
