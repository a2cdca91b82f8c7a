"""The fault campaign's fuzz part (issue 13, item 7): index a seeded corpus of malformed DICOM files.

Whatever the files do to the parsers, the stage exits 0; every file is a row or a quarantine line with a specific
reason; stderr holds only the stage's own log lines (no tracebacks, no pydicom warnings) with one closing line per
quarantine kind; and every accepted row decodes through train's own decode path, in header mode as well (only
damage inside compressed frames, which no header shows, is left to ``--verify-pixels``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from jobs.core.store import open_store
from jobs.index.__main__ import main
from jobs.ml.preprocess import Preprocessing
from jobs.train.cache import _decode_one  # train's per-image decode: store read, then jobs.ml.preprocess
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_fuzz import FAMILIES, SEED, FuzzFile, corpus_digest, fuzz_corpus

PER_FAMILY = 4
"""Files of each mutation family in the fast subset."""
_UNANTICIPATED = ("cannot inspect", "inspection crashed", "inspection timed out")


def _subset() -> list[FuzzFile]:
    taken: Counter[str] = Counter()
    chosen = []
    for f in fuzz_corpus():
        if taken[f.family] < PER_FAMILY:
            taken[f.family] += 1
            chosen.append(f)
    return chosen


def _index(tmp_path, monkeypatch, capfd, files: list[FuzzFile], *extra: str):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    put_raw(store, "fuzz", {f"{f.family}/{f.name}": f.data for f in files})
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "json")
    capfd.readouterr()
    rc = main(["--dataset", "fuzz", "--store", store_uri, "--workers", "2", *extra])
    err = capfd.readouterr().err
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/fuzz/index.parquet"))).to_pylist() if rc == 0 else []
    quarantine = (
        {
            r["key"]: r["reason"]
            for r in csv.DictReader(io.StringIO(store.get_bytes("index/fuzz/quarantine.csv").decode()))
        }
        if rc == 0
        else {}
    )
    return store_uri, rc, rows, quarantine, err


def _train_decode_failure(store_uri: str, key: str) -> str | None:
    """Why train's decode of ``key`` fails, or ``None`` when it decodes."""
    prep = Preprocessing(image_size=32).to_dict()
    try:
        array, reason = _decode_one((store_uri, key, None, prep, open_store(store_uri).head(key).sha256))
    except BaseException as exc:  # a decoder's Rust panic escapes train's own handler (reported to the lead)
        return f"{type(exc).__name__}: {exc}"
    return None if array is not None else reason


def _check_outcome(files, rc, rows, quarantine, err):
    keys = {f"raw/fuzz/{f.family}/{f.name}" for f in files}
    # THEN the stage exits 0 and every file is exactly one of: a row, a quarantine line
    assert rc == 0, err[-3000:]
    indexed = {r["key"] for r in rows}
    assert indexed | set(quarantine) == keys
    assert not indexed & set(quarantine)
    # AND every reason names what is wrong: none is empty or the catch-all for failures no check anticipated
    for key, reason in quarantine.items():
        assert reason.strip() and not reason.startswith(_UNANTICIPATED), (key, reason)
    # AND stderr holds only the stage's own log records: no traceback, no third-party warning or record
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert all(r["logger"].startswith("irmsia") and "exc" not in r for r in records), err[-3000:]
    # AND one closing line per quarantine kind
    summary = [r["msg"] for r in records if r["msg"].startswith("quarantined ")]
    kinds = Counter(
        "duplicate" if reason.startswith("duplicate of ") else reason.split(":", 1)[0].split(" (", 1)[0]
        for reason in quarantine.values()
    )
    assert len(summary) == len(kinds)
    for kind, n in kinds.items():
        assert sum(line.startswith(f"quarantined {n} file(s): {kind} (") for line in summary) == 1, kind


@pytest.mark.parametrize("verify", [False, True], ids=["header-only", "verify-pixels"])
def test_a_subset_of_every_mutation_family_is_indexed_or_quarantined_and_what_is_kept_decodes(
    tmp_path, monkeypatch, capfd, verify
):
    # GIVEN a few files of every mutation family of the seeded corpus
    files = _subset()
    assert {f.family for f in files} == set(FAMILIES)
    # WHEN indexed
    store_uri, rc, rows, quarantine, err = _index(
        tmp_path, monkeypatch, capfd, files, *(["--verify-pixels"] if verify else [])
    )
    _check_outcome(files, rc, rows, quarantine, err)
    # AND every row train will get decodes with train's own code
    frames_damaged = {f"raw/fuzz/{f.family}/{f.name}" for f in files if f.frames_damaged}
    failures = {r["key"]: _train_decode_failure(store_uri, r["key"]) for r in rows}
    failed = {key: why for key, why in failures.items() if why is not None}
    assert not {k: v for k, v in failed.items() if verify or k not in frames_damaged}, failed


@pytest.mark.fault  # ~12 s on 2 busy cores: below the ~20 s that would make it slow
def test_the_whole_seeded_corpus_never_takes_the_stage_down(tmp_path, monkeypatch, capfd):
    # GIVEN the campaign's 1,000 fuzzed DICOM files
    files = fuzz_corpus()
    assert len(files) == 1000
    # WHEN indexed header-only
    store_uri, rc, rows, quarantine, err = _index(tmp_path / "header", monkeypatch, capfd, files)
    # THEN nothing crashes, every file has its outcome, stderr is clean
    _check_outcome(files, rc, rows, quarantine, err)
    # the mutations leave many images intact (the checks do not refuse everything); mutations of one file share
    # its SOPInstanceUID, so all but one copy of each image are listed as duplicates of it
    same_image = [k for k, reason in quarantine.items() if "the same SOPInstanceUID" in reason]
    assert len(rows) + len(same_image) >= 150
    # AND every accepted row decodes through train's decode, except where the damage lies inside compressed
    # frames (no header shows it)
    frames_damaged = {f"raw/fuzz/{f.family}/{f.name}" for f in files if f.frames_damaged}
    failed = {r["key"]: why for r in rows if (why := _train_decode_failure(store_uri, r["key"])) is not None}
    assert set(failed) <= frames_damaged, {k: v for k, v in failed.items() if k not in frames_damaged}
    # WHEN indexed with --verify-pixels THEN those are refused too and every row decodes
    store_uri, rc, verified, quarantine, err = _index(tmp_path / "verify", monkeypatch, capfd, files, "--verify-pixels")
    _check_outcome(files, rc, verified, quarantine, err)
    assert set(failed) <= set(quarantine)
    assert not [r["key"] for r in verified if _train_decode_failure(store_uri, r["key"]) is not None]


def test_the_corpus_is_the_same_bytes_for_the_same_seed():
    # GIVEN the generator WHEN run twice with the campaign's seed, and once with another
    first, again, other = fuzz_corpus(SEED, 200), fuzz_corpus(SEED, 200), fuzz_corpus(SEED + 1, 200)
    # THEN the same seed gives the same names and bytes, another seed other files
    assert corpus_digest(first) == corpus_digest(again)
    assert [f.name for f in first] == [f.name for f in again]
    assert corpus_digest(first) != corpus_digest(other)
    # AND the corpus holds what the campaign needs: deep nesting, unknown VRs, broken deflate, lying lengths
    full = fuzz_corpus()
    assert len({f.name for f in full}) == 1000
    families = Counter(f.family for f in full)
    assert all(families[name] >= 20 for name in FAMILIES), families
    nested = [f for f in full if f.family == "nested-sequence"]
    assert all(max(f.data.count(b"\xfe\xff\x00\xe0"), f.data.count(b"\xff\xfe\xe0\x00")) >= 300 for f in nested)
