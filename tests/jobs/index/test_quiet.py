"""Per-file problems never reach stderr as third-party noise (issue 13 item 9, issue 15 "Noise"): the decoders'
warnings and log records (pydicom logs every decode failure at error level with a traceback) are silenced while a
file is inspected, and the stage ends with one line per quarantine kind; the details are in quarantine.csv."""

from __future__ import annotations

import csv
import io
import json
import logging
import warnings
from collections import Counter
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from jobs.core.store import open_store
from jobs.index.__main__ import main
from jobs.ml.quiet import quiet_decoders
from tests.jobs.index.conftest import put_raw


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _say_everything() -> None:
    warnings.warn("a tolerated oddity", UserWarning, stacklevel=1)
    try:
        raise RuntimeError("decoder failed")
    except RuntimeError:
        logging.getLogger("pydicom.pixels.decoders.base").exception("decoder failed")
    logging.getLogger("pydicom").warning("Invalid value for VR IS")


def test_quiet_decoders_drops_warnings_and_decoder_records_and_restores_them():
    root = logging.getLogger()
    handler = _Records()
    root.addHandler(handler)
    try:
        # WHEN the decoders warn and log inside the block THEN nothing reaches the root handlers or warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_decoders():
                _say_everything()
            assert caught == [] and handler.records == []
            # AND after it, the same calls are heard again
            _say_everything()
            assert len(caught) == 1 and len(handler.records) == 2
    finally:
        root.removeHandler(handler)


def _damaged_rle() -> bytes:
    data = bytearray(Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes())
    data[1736:1744] = b"\x00\xff\x17\x42\x99\xee\x01\x7f"  # inside the segment data: only decoding sees it
    return bytes(data)


def _noisy_dataset() -> dict[str, bytes]:
    """Files pydicom warns and logs about while the index reads or decodes them, and a few it has no issue with."""
    read = lambda name: Path(get_testdata_file(name)).read_bytes()  # noqa: E731
    return {
        "a/bad_vr.dcm": read("badVR.dcm"),  # 'Invalid value for VR IS' (warning and pydicom log record)
        "a/implicit.dcm": read("SC_rgb_jpeg.dcm"),  # 'Expected explicit VR, but found implicit VR'
        "a/padded.dcm": read("MR_small_padded.dcm"),  # 'excess padding to be removed' when decoded
        "a/damaged_rle.dcm": _damaged_rle(),  # decode error logged with a traceback by pydicom
        "a/plan.dcm": read("rtplan.dcm"),
        "a/mr.dcm": read("MR_small.dcm"),
        "a/mr_copy.dcm": read("MR_small.dcm"),
    }


@pytest.mark.parametrize("verify", [False, True], ids=["header-only", "verify-pixels"])
def test_the_stage_prints_only_its_own_records_and_one_line_per_quarantine_kind(tmp_path, capfd, monkeypatch, verify):
    # GIVEN files pydicom complains about, in the store
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    put_raw(store, "noisy", _noisy_dataset())
    monkeypatch.setenv("IRMSIA_LOG_FORMAT", "json")
    capfd.readouterr()
    # WHEN indexed
    rc = main(["--dataset", "noisy", "--store", store_uri, *(["--verify-pixels"] if verify else [])])
    err = capfd.readouterr().err
    # THEN it succeeds and stderr holds only the stage's own JSON records: no traceback, no pydicom warning
    assert rc == 0
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert all(r["logger"].startswith("irmsia") and "exc" not in r for r in records), err
    assert all(r["level"] != "error" for r in records)
    # AND it ends with one line per quarantine kind, naming an example and quarantine.csv
    reasons = {
        r["key"]: r["reason"]
        for r in csv.DictReader(io.StringIO(store.get_bytes("index/noisy/quarantine.csv").decode()))
    }
    # (padded, RLE and plain MR_small are one image, one SOPInstanceUID: one copy is kept, the first decodable one)
    expected = {
        "raw/noisy/a/bad_vr.dcm": "unreadable DICOM header value",
        "raw/noisy/a/mr_copy.dcm": "duplicate",
        "raw/noisy/a/padded.dcm": "duplicate",
        "raw/noisy/a/plan.dcm": "radiotherapy object",
    }
    if verify:
        expected["raw/noisy/a/damaged_rle.dcm"] = "pixel data cannot be decoded"
    else:
        expected["raw/noisy/a/mr.dcm"] = "duplicate"  # the RLE copy comes first by key and decodes from its header
    assert {key: reasons.get(key, "").startswith(("duplicate of", kind)) for key, kind in expected.items()} == {
        key: True for key in expected
    }
    assert set(reasons) == set(expected)
    summary = [r["msg"] for r in records if r["msg"].startswith("quarantined ")]
    kinds = Counter(expected.values())
    first = {kind: min(key for key, k in expected.items() if k == kind) for kind in kinds}
    assert sorted(summary) == sorted(
        f"quarantined {n} file(s): {kind} (e.g. {first[kind]}; details in index/noisy/quarantine.csv)"
        for kind, n in kinds.items()
    )
    assert all(r["level"] == "warning" for r in records if r["msg"].startswith("quarantined "))
