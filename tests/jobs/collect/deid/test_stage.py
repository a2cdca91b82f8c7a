"""``irmsia-collect --deidentify``: every source's files pass the filter, a PHI finding fails the stage (exit 3) with
nothing sealed and no value shown, files that may show text in their pixels are left out, options are checked."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.jobs.collect.conftest import make_zip
from tests.support.dicom_files import dicom_bytes

SECRET = "stage-secret-0a1b2c3d4e5f"


def _changed(data: bytes, **values) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        for name, value in values.items():
            if value is None:
                delattr(ds, name)
            else:
                setattr(ds, name, value)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _ct(patient: str, **values) -> bytes:
    """A CT image (not a Secondary Capture, which is left out for possible burned-in text) of ``patient``."""
    return _changed(dicom_bytes(patient), SOPClassUID="1.2.840.10008.5.1.4.1.1.2", Modality="CT", **values)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _collect(store_uri: str, *args: str, secret: str | None = SECRET, monkeypatch) -> int:
    if secret is None:
        monkeypatch.delenv("IRMSIA_DEID_SECRET", raising=False)
    else:
        monkeypatch.setenv("IRMSIA_DEID_SECRET", secret)
    return main(["--dataset", "h", "--store", store_uri, "--log-format", "text", *args])


def _local(root: Path, *extra: str) -> tuple[str, ...]:
    return ("--source", "local", "--path", str(root), "--deidentify", *extra)


def _header(store, key: str):
    return pydicom.dcmread(io.BytesIO(store.get_bytes(key)), force=True)


def test_phi_the_profile_does_not_cover_fails_the_stage_naming_the_tag_never_the_value(tmp_path, monkeypatch, capfd):
    # GIVEN a file whose Manufacturer (an attribute the profile keeps) repeats the patient's name
    leaky = _ct("P1", PatientName="Smithersonne^Waylon", Manufacturer="Smithersonne Imaging")
    root = _tree(tmp_path / "export", {"a/1.dcm": _ct("P2"), "a/2.dcm": leaky})
    store_uri = str(tmp_path / "store")
    capfd.readouterr()
    # WHEN collected with --deidentify
    code = _collect(store_uri, *_local(root), monkeypatch=monkeypatch)
    err = capfd.readouterr().err
    # THEN the stage fails with exit 3, names the check and the tag, and shows neither the name nor the secret
    assert code == 3
    assert "identifier at (0008,0070)" in err
    assert "Smithersonne" not in err and "Waylon" not in err and SECRET not in err
    # AND nothing is sealed, and the leaky file was never stored
    store = open_store(store_uri)
    assert read_manifest(store, "raw/h/") is None
    assert not store.exists("raw/h/a/2.dcm")


def test_a_path_naming_the_patient_or_a_sidecar_repeating_an_id_fails_the_stage(tmp_path, monkeypatch, capfd):
    # GIVEN an export whose folder carries the PatientID, and another whose labels CSV lists PatientIDs
    named = _tree(tmp_path / "named", {"MRN123456/1.dcm": _ct("MRN123456")})
    listed = _tree(tmp_path / "listed", {"1.dcm": _ct("MRN654321"), "labels.csv": b"PatientID,label\nMRN654321,x\n"})
    for root, where in ((named, "identifier at path"), (listed, "identifier at sidecar")):
        capfd.readouterr()
        # WHEN collected with --deidentify THEN exit 3, naming what was found where, not the value
        assert _collect(str(tmp_path / f"store-{root.name}"), *_local(root), monkeypatch=monkeypatch) == 3
        err = capfd.readouterr().err
        assert where in err and "MRN" not in err, err


@pytest.mark.parametrize(
    ("values", "left_out"),
    [
        ({"BurnedInAnnotation": "YES"}, "burned-in annotation: BurnedInAnnotation is YES"),
        ({"Modality": "US"}, "possible burned-in annotation: modality US without BurnedInAnnotation NO"),
        ({"Modality": "OT"}, "possible burned-in annotation: modality OT without BurnedInAnnotation NO"),
        ({"Modality": "US", "BurnedInAnnotation": "NO"}, None),
        ({"Modality": "CT"}, None),
    ],
    ids=["YES", "US", "OT", "US declared NO", "CT"],
)
def test_images_that_may_show_text_in_their_pixels_are_left_out_unless_allowed(tmp_path, monkeypatch, values, left_out):
    # GIVEN one image (a CT image, so only the attributes below decide)
    data = _changed(dicom_bytes("P1"), SOPClassUID="1.2.840.10008.5.1.4.1.1.2", **values)
    root = _tree(tmp_path / "export", {"1.dcm": data})
    for allowed in (False, True):
        store_uri = str(tmp_path / f"store-{allowed}")
        # WHEN collected with --deidentify (and --deid-allow-burned-in)
        extra = ("--deid-allow-burned-in",) if allowed else ()
        assert _collect(store_uri, *_local(root, *extra), monkeypatch=monkeypatch) == 0
        store = open_store(store_uri)
        # THEN it is left out (listed by its pseudonymous SOP Instance UID), or stored when allowed
        stored = store.exists("raw/h/1.dcm")
        assert stored == (allowed or left_out is None)
        if not stored:
            rows = list(csv.DictReader(io.StringIO(store.get_bytes("raw/h/_deid/quarantine.csv").decode())))
            assert [r["reason"] for r in rows] == [left_out]
            assert rows[0]["sop_instance_uid"].startswith("2.25.")


def test_secondary_captures_and_dicomdirs_are_left_out(tmp_path, monkeypatch):
    # GIVEN a Secondary Capture without BurnedInAnnotation, a DICOMDIR and a CT slice
    root = _tree(
        tmp_path / "export",
        {
            "sc.dcm": dicom_bytes("P1"),  # Secondary Capture Image Storage
            "DICOMDIR": Path(get_testdata_file("DICOMDIR")).read_bytes(),
            "ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes(),
        },
    )
    store_uri = str(tmp_path / "store")
    # WHEN collected THEN only the CT slice is stored, and the report counts what was left out and why
    assert _collect(store_uri, *_local(root), monkeypatch=monkeypatch) == 0
    manifest = read_manifest(open_store(store_uri), "raw/h/")
    assert {o.key for o in manifest.outputs} == {"raw/h/ct.dcm", "raw/h/_deid/quarantine.csv"}
    assert manifest.summary["deidentification"]["left_out"] == {"DICOMDIR": 1, "possible burned-in annotation": 1}


def test_private_attributes_are_removed_except_those_declared_safe(tmp_path, monkeypatch):
    # GIVEN CT_small, which carries GE private blocks
    root = _tree(tmp_path / "export", {"ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes()})
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert original[0x0019, 0x1002].value  # (0019,10xx) of GEMS_ACQU_01
    store_uri = str(tmp_path / "store")
    # WHEN collected with one private attribute declared safe
    safe = ("--deid-safe-private", "0019:GEMS_ACQU_01:02")
    assert _collect(store_uri, *_local(root, *safe), monkeypatch=monkeypatch) == 0
    header = _header(open_store(store_uri), "raw/h/ct.dcm")
    # THEN it is kept with its creator, every other private attribute is gone, and the method says so
    private = {e.tag for e in header if e.tag.is_private}
    assert private == {pydicom.tag.Tag(0x0019, 0x0010), pydicom.tag.Tag(0x0019, 0x1002)}
    assert header[0x0019, 0x1002].value == original[0x0019, 0x1002].value
    assert "113111" in {item.CodeValue for item in header.DeidentificationMethodCodeSequence}


def test_pseudonyms_follow_the_secret_and_only_the_secret(tmp_path, monkeypatch):
    # GIVEN one file WHEN collected twice with one secret and once with another
    root = _tree(tmp_path / "export", {"ct.dcm": Path(get_testdata_file("CT_small.dcm")).read_bytes()})
    uids = []
    for n, secret in enumerate((SECRET, SECRET, "another-secret-99887766")):
        store_uri = str(tmp_path / f"store{n}")
        assert _collect(store_uri, *_local(root), secret=secret, monkeypatch=monkeypatch) == 0
        header = _header(open_store(store_uri), "raw/h/ct.dcm")
        uids.append((header.StudyInstanceUID, header.PatientID))
    # THEN the same secret gives the same UIDs and IDs, another secret others; the originals are gone
    assert uids[0] == uids[1] != uids[2]
    assert all(study.startswith("2.25.") for study, _ in uids)
    assert "1CT1" not in {patient for _, patient in uids}


def test_every_source_stores_through_the_filter_a_downloaded_archive_too(tmp_path, monkeypatch, http_server):
    # GIVEN an archive of DICOM files behind --source url
    leaky = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    url = http_server.add_file("/export.zip", make_zip({"ct/1.dcm": leaky, "LICENSE": b"CC BY 4.0\n"}))
    store_uri = str(tmp_path / "store")
    # WHEN collected with --deidentify
    monkeypatch.setenv("IRMSIA_URL", url)
    assert _collect(store_uri, "--source", "url", "--deidentify", monkeypatch=monkeypatch) == 0
    store = open_store(store_uri)
    # THEN the stored file is de-identified, and the unit record names the de-identification
    (key,) = [o.key for o in read_manifest(store, "raw/h/").outputs if o.key.endswith("ct/1.dcm")]
    header = _header(store, key)
    assert header.PatientIdentityRemoved == "YES" and header.PatientID != "1CT1"
    records = [o.key for o in read_manifest(store, "raw/h/").outputs if "/_collect/" in o.key]
    assert "deidentification" in json.loads(store.get_bytes(records[0]))["validator"]


@pytest.mark.parametrize(
    ("args", "secret", "message"),
    [
        (("--deidentify",), None, "--deidentify needs IRMSIA_DEID_SECRET in the environment, at least 16"),
        (("--deidentify",), "short", "--deidentify needs IRMSIA_DEID_SECRET"),
        (("--deid-retain-dates",), SECRET, "--deid-retain-dates is an option of --deidentify"),
        (("--deidentify", "--deid-safe-private", "0018:X:10"), SECRET, "--deid-safe-private '0018:X:10': expected"),
    ],
    ids=["no secret", "short secret", "option alone", "even group"],
)
def test_de_identification_options_are_checked_before_anything_is_read(
    tmp_path, monkeypatch, capfd, args, secret, message
):
    root = _tree(tmp_path / "export", {"1.dcm": dicom_bytes("P1")})
    capfd.readouterr()
    assert _collect(str(tmp_path / "store"), "--source", "local", "--path", str(root), *args, secret=secret,
                    monkeypatch=monkeypatch) == 2  # fmt: skip
    assert message in capfd.readouterr().err


def test_the_decoders_own_warnings_never_reach_stderr(tmp_path, monkeypatch, capfd):
    # GIVEN a real file whose values pydicom warns about when it reads them (bad_sequence.dcm: invalid UI values)
    data = Path(get_testdata_file("bad_sequence.dcm")).read_bytes()
    root = _tree(tmp_path / "export", {"1.dcm": data, "2.dcm": data})
    capfd.readouterr()
    # WHEN collected with --deidentify, every warning shown as Python would show it outside the tests
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert _collect(str(tmp_path / "store"), *_local(root, "--workers", "2"), monkeypatch=monkeypatch) == 0
    # THEN neither pydicom's warnings nor its log records are shown: only the stage's own lines
    assert [str(w.message) for w in shown] == []
    assert "Invalid value for VR" not in capfd.readouterr().err
