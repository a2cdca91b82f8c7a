"""Version numbers: allocated exclusively under concurrency, never reused, and safe against lost responses."""

from __future__ import annotations

import threading

from jobs.core.store import open_store
from jobs.register.versions import claim_version, claimed_versions, new_token, read_claim


class LostFirstResponse:
    """A real store whose first successful conditional create is reported as "already exists".

    That is what a client sees when its request went through, the response was lost, and the retried request
    was refused because the object now exists.
    """

    def __init__(self, inner) -> None:
        self._inner = inner
        self.lost = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        created = self._inner.put_if_absent(key, data)
        if created and not self.lost:
            self.lost += 1
            return False
        return created


def test_claims_count_up_from_one(store):
    assert [claim_version(store, "m", "r", new_token()) for _ in range(3)] == [1, 2, 3]
    assert claimed_versions(store, "m") == [1, 2, 3]
    assert read_claim(store, "m", 2)["run_id"] == "r"


def test_eight_concurrent_claimers_get_distinct_versions(store_uri):
    # GIVEN eight claimers, each with its own store client, released together
    barrier = threading.Barrier(8)
    got: list[int] = []

    def claim() -> None:
        own = open_store(store_uri)
        barrier.wait()
        got.append(claim_version(own, "m", "r", new_token()))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN every number 1..8 is handed out exactly once
    assert sorted(got) == list(range(1, 9))


def test_a_lost_response_is_resolved_by_reading_the_claim_back(store):
    # GIVEN a store that loses the response of the first (successful) create
    lossy = LostFirstResponse(store)
    # WHEN a version is claimed THEN the claimer keeps the number it actually created (no hole, no duplicate)
    assert claim_version(lossy, "m", "r", new_token()) == 1
    assert lossy.lost == 1
    assert claimed_versions(store, "m") == [1]


def test_a_claim_held_by_someone_else_moves_on(store):
    claim_version(store, "m", "r", "someone-else")
    assert claim_version(store, "m", "r", new_token()) == 2
