"""A sharded collect (plan, parts, gather) seals exactly the ``raw/<dataset>/`` an unsharded collect seals: TCIA per
batch of series and NIH per archive against their local servers, with and without ``--deidentify``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from jobs.collect.__main__ import main
from jobs.collect.settings import CollectSettings
from jobs.collect.sources import nih
from jobs.collect.stage import run
from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.conftest import SHARDED_TCIA_COLLECTION as COLLECTION
from tests.support.nih_server import NihServer
from tests.support.store_faults import kill_at
from tests.support.tcia_server import API, TciaServer

TCIA_FLAGS = ("--source", "tcia", "--dataset", "lidc", "--collection", COLLECTION, "--backoff", "0.01",
              "--retries", "3", "--workers", "2")  # fmt: skip
NIH_FLAGS = ("--source", "nih", "--dataset", "nih", "--archives", "1,2,3", "--backoff", "0.01", "--retries", "3")


@pytest.fixture
def nih_server(monkeypatch) -> Iterator[NihServer]:
    archives = {1: ["00000001_000.png", "00000002_000.png"], 2: ["00000003_000.png"], 3: ["00000004_000.png"]}
    with NihServer() as server:
        table = server.publish(nih.ARCHIVES, archives, {"00000001_000.png": "Effusion"}, {"00000004_000.png"})
        monkeypatch.setattr(nih, "ARCHIVES", table)
        monkeypatch.setenv("IRMSIA_NIH_URL", server.base + "/")
        monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
        yield server


def _settings(store_uri: str, flags: tuple[str, ...], *extra: str) -> CollectSettings:
    return CollectSettings.parse([*flags, "--store", store_uri, *extra], dict(os.environ))


def _sharded(store_uri: str, flags: tuple[str, ...], *extra: str) -> list:
    """Plan, every part, gather: what the DAG's fan-out runs; returns each step's result."""
    plan = run(_settings(store_uri, flags, *extra, "--shard", "plan"))
    parts = [run(_settings(store_uri, flags, *extra, "--shard", s)) for s in plan.manifest.summary["shards"]]
    return [plan, *parts, run(_settings(store_uri, flags, *extra, "--shard", "gather"))]


def _sealed(store_uri: str, dataset: str) -> dict:
    store = open_store(store_uri)
    manifest = read_manifest(store, f"raw/{dataset}/")
    assert manifest is not None
    files = {o.key: store.get_bytes(o.key) for o in manifest.outputs}
    return {"identity": manifest.content_sha256, "cache_key": manifest.cache_key, "summary": manifest.summary,
            "files": files}  # fmt: skip


def _gets(server: TciaServer) -> list[str]:
    return sorted(r.query["SeriesInstanceUID"][0] for r in server.log if r.path == API + "getImage")


@pytest.mark.parametrize(
    ("deid", "units", "shards"),
    [
        ((), "2", 4),  # eight series, two a shard
        ((), "3", 3),
        (("--deidentify",), "2", 4),  # every shard de-identifies its series; the gather merges their reports
        (("--deidentify", "--deid-allow-burned-in"), "8", 1),
    ],
)
def test_sharded_tcia_collect_seals_the_unsharded_dataset_byte_for_byte(tmp_path, sharded_tcia, deid, units, shards):
    # GIVEN the same collection collected once unsharded
    unsharded, sharded = str(tmp_path / "unsharded"), str(tmp_path / "sharded")
    assert run(_settings(unsharded, TCIA_FLAGS, *deid)).cached is False
    sharded_tcia.log.clear()
    # WHEN it is collected as planned shards of at most N series, then gathered
    steps = _sharded(sharded, TCIA_FLAGS, *deid, "--shard-units", units)
    # THEN the plan sized it by series, every series was downloaded once, by its own shard
    planned = [f"{k}/{shards}" for k in range(1, shards + 1)]
    total = sum(len(z) for z in sharded_tcia.zips.values())
    assert steps[0].manifest.summary == {"shards": planned, "units": 8, "unit": "series", "bytes": total}
    assert _gets(sharded_tcia) == sorted(sharded_tcia.zips)
    assert sum(s.manifest.summary["units"] for s in steps[1:-1]) == 8
    # AND raw/lidc/ is the unsharded collect's: same keys and bytes, same cache key, identity and summary
    assert _sealed(sharded, "lidc") == _sealed(unsharded, "lidc")
    # AND no part is left behind
    assert list(open_store(sharded).keys("shards/")) == []
    if deid:
        report = _sealed(sharded, "lidc")["summary"]["deidentification"]
        assert report["files"]["headers scanned"] > 0
        if "--deid-allow-burned-in" not in deid:
            assert report["left_out"] == {"possible burned-in annotation": 2}


def test_sharded_nih_collect_is_one_archive_a_shard_and_seals_the_unsharded_dataset(tmp_path, nih_server):
    # GIVEN three NIH archives collected once unsharded
    unsharded, sharded = str(tmp_path / "unsharded"), str(tmp_path / "sharded")
    run(_settings(unsharded, NIH_FLAGS))
    # WHEN collected sharded
    steps = _sharded(sharded, NIH_FLAGS)
    # THEN one shard per archive, and the same sealed dataset
    assert steps[0].manifest.summary["shards"] == ["1/3", "2/3", "3/3"]
    assert _sealed(sharded, "nih") == _sealed(unsharded, "nih")


def test_a_rerun_skips_sealed_shards_and_a_failed_shard_retries_alone(tmp_path, sharded_tcia):
    # GIVEN a plan of four shards, whose part 3 fails (its series answers 500 on every try)
    store_uri = str(tmp_path / "s")
    flags = (*TCIA_FLAGS, "--shard-units", "2")
    shards = run(_settings(store_uri, flags, "--shard", "plan")).manifest.summary["shards"]
    sharded_tcia.fault_series("1.2.3.4.1", *["500"] * 3)
    results = {}
    for shard in shards:
        try:
            results[shard] = run(_settings(store_uri, flags, "--shard", shard))
        except Exception as exc:  # the failure under test
            results[shard] = exc
    assert [s for s, r in results.items() if isinstance(r, Exception)] == ["3/4"]
    # WHEN the gather runs before the failed part is retried THEN it fails naming that part, stores nothing
    with pytest.raises(DataError, match=r"shards/collect/lidc/3-of-4/: shard 3/4 of raw/lidc/ is not sealed"):
        run(_settings(store_uri, flags, "--shard", "gather"))
    assert read_manifest(open_store(store_uri), "raw/lidc/") is None
    # WHEN every part runs again
    sharded_tcia.log.clear()
    again = [run(_settings(store_uri, flags, "--shard", s)) for s in shards]
    # THEN only the failed part did any work (the others were cache hits), and only its failed series was fetched
    assert [r.cached for r in again] == [True, True, False, True]
    assert _gets(sharded_tcia) == ["1.2.3.4.1"]  # its other series was stored before the failure and is reused
    # AND the gather seals the dataset; a rerun of the whole fan-out is then all cache hits
    run(_settings(store_uri, flags, "--shard", "gather"))
    sharded_tcia.log.clear()
    steps = _sharded(store_uri, flags)
    assert all(s.cached for s in steps) and steps[0].manifest.summary["shards"] == ["1/1"]
    assert _gets(sharded_tcia) == []


def test_gather_withdraws_a_part_whose_series_is_gone_so_its_retry_stores_it_again(tmp_path, sharded_tcia):
    # GIVEN every part sealed, then one stored file of part 2's series lost
    store_uri = str(tmp_path / "s")
    flags = (*TCIA_FLAGS, "--shard-units", "3")
    shards = run(_settings(store_uri, flags, "--shard", "plan")).manifest.summary["shards"]
    for shard in shards:
        run(_settings(store_uri, flags, "--shard", shard))
    store = open_store(store_uri)
    lost = next(k for k in store.keys("raw/lidc/PAT-003/") if k.endswith(".dcm"))
    store.delete(lost)
    # WHEN gathered THEN it fails naming the part, and withdraws it
    with pytest.raises(DataError, match=r"shard 2/3's part is withdrawn"):
        run(_settings(store_uri, flags, "--shard", "gather"))
    assert read_manifest(store, "shards/collect/lidc/2-of-3/") is None
    # WHEN that part and the gather run again THEN the dataset is complete
    assert run(_settings(store_uri, flags, "--shard", "2/3")).cached is False
    run(_settings(store_uri, flags, "--shard", "gather"))
    assert store.exists(lost)


def test_a_part_of_another_plan_is_a_usage_error_naming_the_planned_count(tmp_path, sharded_tcia):
    with pytest.raises(UsageError, match=r"--shard 1/2: raw/lidc/ is planned in 4 shard\(s\) of 8 series; use K/4"):
        run(_settings(str(tmp_path / "s"), (*TCIA_FLAGS, "--shard-units", "2"), "--shard", "1/2"))


def test_a_source_without_units_is_one_shard_that_collects_it_whole(tmp_path, monkeypatch):
    # GIVEN the demo source
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "text")
    store_uri, flags = str(tmp_path / "s"), ("--source", "demo", "--dataset", "demo")
    # WHEN collected sharded THEN one shard, which seals raw/demo/; the gather is a cache hit on it
    plan, part, gather = _sharded(store_uri, flags)
    assert plan.manifest.summary["shards"] == ["1/1"]
    assert part.cached is False and gather.cached is True
    assert gather.manifest.content_sha256 == part.manifest.content_sha256


def test_shard_flag_errors_exit_2(tmp_path, sharded_tcia, capsys):
    code = main([*TCIA_FLAGS, "--store", str(tmp_path / "s"), "--shard", "5/4"])
    assert code == 2 and "--shard '5/4': use plan, gather or K/N" in capsys.readouterr().err


def test_part_record_names_no_original_uid_with_deidentify(tmp_path, sharded_tcia):
    # GIVEN a sharded, de-identified collect stopped before its gather
    store_uri = str(tmp_path / "s")
    flags = (*TCIA_FLAGS, "--deidentify", "--shard-units", "4")
    for shard in run(_settings(store_uri, flags, "--shard", "plan")).manifest.summary["shards"]:
        run(_settings(store_uri, flags, "--shard", shard))
    # THEN no object the parts stored names an original UID or patient ID, in its key or its bytes
    store = open_store(store_uri)
    for key in store.keys(""):
        assert "1.2.3." not in key and "PAT-00" not in key, key
    part = json.loads(store.get_bytes("shards/collect/lidc/1-of-2/part.json"))
    assert "1.2.3." not in json.dumps(part) and "PAT-00" not in json.dumps(part)


def test_a_deidentified_collect_resumed_after_a_kill_reports_what_one_run_does(tmp_path, sharded_tcia):
    # GIVEN a de-identified collect, and the same collect killed once three series were recorded complete
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    flags = (*TCIA_FLAGS, "--deidentify")
    run(_settings(whole, flags))
    killed = kill_at(r"^raw/lidc/_collect/", "jobs.collect", [*flags, "--store", resumed, "--workers", "1"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    # WHEN it runs again, reusing the series recorded complete
    sharded_tcia.log.clear()
    run(_settings(resumed, flags))
    # THEN it downloaded only the others, and its manifest (the de-identification report included) is the one run's
    assert len(_gets(sharded_tcia)) == 7
    assert _sealed(resumed, "lidc") == _sealed(whole, "lidc")
