"""De-identification of pydicom's corpus with synthetic PHI written into every attribute PS3.15 Annex E names:
nothing identifying reaches the store, grouping survives, reruns are byte-identical, the secret is never shown."""

from __future__ import annotations

import datetime
import io
import warnings
from collections import defaultdict

import pydicom
import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.phi_corpus import DESCRIPTION, MARK, PATIENT_FAMILY, PHI_DATE, PHI_UID_ROOT, phi_corpus

SECRET = "corpus-secret-7f3a9c1e55d2"


@pytest.fixture(scope="module")
def corpus():
    return phi_corpus()


@pytest.fixture
def export(tmp_path, corpus):
    """The corpus as a hospital export: one folder, files named by number (names that identify are refused)."""
    root = tmp_path / "export"
    (root / "images").mkdir(parents=True)
    for f in corpus:
        (root / "images" / f.name).write_bytes(f.data)
    return root


def _collect(store_uri, root, monkeypatch, *extra) -> int:
    monkeypatch.setenv("IRMSIA_DEID_SECRET", SECRET)
    return main(["--source", "local", "--dataset", "hospital", "--path", str(root), "--store", store_uri,
                 "--log-format", "json", "--deidentify", "--deid-allow-burned-in", *extra])  # fmt: skip


def _stored(store):
    manifest = read_manifest(store, "raw/hospital/")
    return manifest, {o.key.rsplit("/", 1)[-1]: store.get_bytes(o.key) for o in manifest.outputs if "/images/" in o.key}


def _header(data: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)


@pytest.mark.slow
def test_no_phi_reaches_the_store_and_grouping_survives(tmp_path, corpus, export, monkeypatch, capfd):
    # GIVEN 150+ real files carrying synthetic PHI in every Annex E attribute, a private block and their UIDs
    assert len(corpus) >= 150
    store_uri = str(tmp_path / "store")
    capfd.readouterr()
    # WHEN collected with --deidentify
    assert _collect(store_uri, export, monkeypatch) == 0
    err = capfd.readouterr().err
    store = open_store(store_uri)
    manifest, stored = _stored(store)
    # THEN every file is stored, and the PHI scan found nothing
    assert len(stored) == len(corpus)
    report = manifest.summary["deidentification"]
    assert report["phi_scan"] == {"headers": len(corpus), "findings": 0, "first": []}
    # AND no stored byte holds a synthetic value, the PHI date, a UID of the originals or a private attribute
    originals = {u for f in corpus for u in (f.study, f.series, f.sop) if u}
    for name, data in stored.items():
        assert MARK.encode() not in data and PHI_DATE.encode() not in data, name
        assert PHI_UID_ROOT.encode() not in data, name
        assert not [u for u in originals if u.encode() in data], name
        header = _header(data)
        assert not [e.tag for e in header if e.tag.is_private], name
        assert header.PatientIdentityRemoved == "YES"
        assert header.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # AND grouping survives: one new patient, study and series per original one, and no two share one
    new = {f.name: _header(stored[f.name]) for f in corpus}
    for attribute, original in (
        ("PatientID", "patient"),
        ("StudyInstanceUID", "study"),
        ("SeriesInstanceUID", "series"),
    ):
        forward, backward = defaultdict(set), defaultdict(set)
        for f in corpus:
            forward[getattr(f, original)].add(str(new[f.name].get(attribute)))
            backward[str(new[f.name].get(attribute))].add(getattr(f, original))
        assert all(len(v) == 1 for v in forward.values()) and all(len(v) == 1 for v in backward.values()), attribute
    # AND the secret is nowhere: not in the log, the manifest or the stored records
    assert SECRET not in err
    assert SECRET.encode() not in store.get_bytes("raw/hospital/_SUCCESS.json")
    # WHEN collected again from scratch THEN the same bytes are sealed
    content = manifest.content_sha256
    assert _collect(store_uri, export, monkeypatch, "--force") == 0
    assert read_manifest(store, "raw/hospital/").content_sha256 == content


@pytest.mark.slow
def test_modified_dates_and_clean_descriptors_keep_what_they_promise_and_nothing_identifying(
    tmp_path, corpus, export, monkeypatch
):
    # GIVEN the corpus WHEN collected with the two options
    store_uri = str(tmp_path / "store")
    assert _collect(store_uri, export, monkeypatch, "--deid-retain-dates", "--deid-clean-descriptors") == 0
    manifest, stored = _stored(open_store(store_uri))
    assert manifest.summary["deidentification"]["phi_scan"]["findings"] == 0
    kept_descriptions = 0
    shifts = defaultdict(set)
    patient_of = {f.name: f.patient for f in corpus}
    for name, data in stored.items():
        # THEN nothing identifying is left: no synthetic value (the family name, IDs...), no original date
        assert MARK.encode() not in data and PATIENT_FAMILY.encode() not in data and PHI_DATE.encode() not in data
        # AND descriptions are kept with their words, the patient's name and ID cut out of them
        header = _header(data)
        kept_descriptions += DESCRIPTION in str(header.get("StudyDescription", ""))
        # AND dates moved back by one number of days per patient (30 days to 10 years), so intervals survive
        assert header.get("LongitudinalTemporalInformationModified") == "MODIFIED"
        moved = datetime.date.fromisoformat(PHI_DATE) - datetime.date.fromisoformat(str(header.StudyDate))
        assert moved == datetime.date.fromisoformat(PHI_DATE) - datetime.date.fromisoformat(str(header.ContentDate))
        shifts[patient_of[name]].add(moved.days)
    assert kept_descriptions == len(stored)
    assert all(len(days) == 1 and 30 <= min(days) <= 3650 for days in shifts.values())
    assert len({min(days) for days in shifts.values()}) > 1  # each patient has their own shift
