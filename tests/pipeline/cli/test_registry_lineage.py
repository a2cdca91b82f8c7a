"""``irmsia registry show NAME --lineage`` and the model card: a reviewer follows a model back to the collected
files: every manifest with its SHA-256, the source and its release, licence and attribution, the de-identification,
counts per split, down to the series UIDs of the test set. Built from real collect, index and split runs."""

from __future__ import annotations

import csv
import io
import json

import pytest

from jobs.collect.__main__ import main as collect_main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.index.__main__ import main as index_main
from jobs.register.__main__ import main as register_main
from jobs.split.__main__ import main as split_main
from pipeline.cli import main
from tests.support.dicom_files import dicom_bytes
from tests.support.runs import Upstream, seal_run

ATTRIBUTION = "CC BY 4.0. Cite: Doe-Free Imaging Consortium, Chest Study 2024, doi:10.0000/example"


def _ct(patient: str, seed: int) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(patient, seed=seed)))
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "CT"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def lineage_store(tmp_path, monkeypatch):
    """A model registered from a run on a de-identified, indexed and split hospital export."""
    root = tmp_path / "export"
    for p in range(12):
        label = ("normal", "nodule")[p % 2]
        for n in range(2):
            path = root / label / f"img{p:02d}{n}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_ct(f"HOSP{p:04d}", seed=10 * p + n))
    (root / "LICENSE").write_text(ATTRIBUTION + "\n\nThe full licence text follows.\n")
    store_uri = str(tmp_path / "store")
    monkeypatch.setenv("IRMSIA_DEID_SECRET", "lineage-secret-5566778899")
    common = ["--store", store_uri, "--log-format", "text"]
    assert collect_main(["--source", "local", "--dataset", "chest", "--path", str(root), "--deidentify", *common]) == 0
    assert index_main(["--dataset", "chest", *common]) == 0
    assert split_main(["--dataset", "chest", "--ratios", "0.5,0.25,0.25", *common]) == 0
    store = open_store(store_uri)
    upstream = Upstream(*(read_manifest(store, f"{top}/chest/") for top in ("raw", "index", "splits")))
    seal_run(store, "r1", upstream=upstream)
    assert register_main(["--run", "r1", "--model-name", "chest-model", *common]) == 0
    return store, upstream


def test_lineage_prints_the_chain_down_to_the_test_series(lineage_store, capsys):
    store, upstream = lineage_store
    # WHEN a reviewer asks for the champion's lineage
    assert main(["registry", "--store", store.uri, "show", "chest-model", "champion", "--lineage"]) == 0
    out = capsys.readouterr().out
    # THEN every manifest on the way is named with its SHA-256
    run = read_manifest(store, "runs/r1/")
    for manifest in (run, upstream.split, upstream.index, upstream.raw):
        assert f"{manifest.prefix}" in out and manifest.content_sha256 in out
    # AND the source, its licence and attribution, and the de-identification applied
    assert "source   chest: local (" in out and "tree_sha256=" in out
    assert f"> {ATTRIBUTION}" in out
    assert "de-id    PS3.15 Annex E Basic Application Level Confidentiality Profile (DICOM 2026c" in out
    assert "PHI scan 24 headers, 0 findings" in out
    # AND patients, studies and series per split
    stats = json.loads(store.get_bytes("splits/chest/stats.json"))
    assert f"test {stats['splits']['test']['series']}" in out.split("  series   ")[1].splitlines()[0]
    # AND the test set's series UIDs, exactly those of test.csv (pseudonymous: the originals never reached the store)
    rows = csv.DictReader(io.StringIO(store.get_bytes("splits/chest/test.csv").decode()))
    series = sorted({r["series_uid"] for r in rows})
    listed = out.split("test set series (")[1].splitlines()[1:]
    assert [line.strip() for line in listed] == series and series and all(s.startswith("2.25.") for s in series)


def test_the_model_card_and_metadata_name_release_licence_deidentification_and_manifests(lineage_store):
    store, upstream = lineage_store
    card = store.get_bytes("registry/chest-model/1/docs/README.md").decode()
    meta = json.loads(store.get_bytes("registry/chest-model/1/configs/metadata.json"))
    lineage = meta["irmsia"]["lineage"]
    # THEN the metadata holds every manifest, per-split counts, and the dataset's release, licence and de-id
    assert [m["stage"] for m in lineage["manifests"]] == ["train", "split", "index", "collect"]
    assert set(lineage["studies_per_split"]) == set(lineage["series_per_split"]) == {"train", "val", "test"}
    (dataset,) = lineage["datasets"]
    assert dataset["attribution"].startswith(ATTRIBUTION) and dataset["manifest_sha256"] == upstream.raw.content_sha256
    assert dataset["deidentification"]["options"]["retain_longitudinal_temporal_information"] == "off"
    assert ATTRIBUTION in meta["copyright"]
    # AND the model card says the same to a reader
    assert f"> {ATTRIBUTION}" in card and "de-identified at collect: PS3.15 Annex E" in card
    assert "- studies per split: train" in card and "- series per split: train" in card
    for manifest in (upstream.split, upstream.index, upstream.raw):
        assert f"`{manifest.content_sha256}`" in card


def test_a_resplit_dataset_is_named_stale_and_its_test_series_are_not_guessed(lineage_store, capsys):
    store, upstream = lineage_store
    # GIVEN the dataset was split again with another seed after the model was registered
    assert split_main(["--dataset", "chest", "--seed", "7", "--store", store.uri, "--log-format", "text"]) == 0
    assert read_manifest(store, "splits/chest/").content_sha256 != upstream.split.content_sha256
    capsys.readouterr()
    # WHEN the lineage is asked for
    assert main(["registry", "--store", store.uri, "show", "chest-model", "--lineage"]) == 0
    out = capsys.readouterr().out
    # THEN the recorded chain stands, and the new split's series are not passed off as the model's test set
    assert upstream.split.content_sha256 in out
    assert "test set series: splits/chest/ was rewritten or removed since the run used it; they cannot be" in out
    assert "test set series (" not in out
