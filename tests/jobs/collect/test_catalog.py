"""The dataset catalogue: the reviewed entries are complete and their commands parse; IDC's are its own metadata."""

from __future__ import annotations

import shlex

import duckdb
import idc_index_data
import pytest

from jobs.collect.catalog import (
    ACCESS,
    DATA_FILE,
    TOP_TEN,
    catalogue,
    entry_from,
    find,
    idc_entries,
    reviewed_entries,
    search,
)
from jobs.collect.settings import CollectSettings
from jobs.core.errors import UsageError

FAKE_CREDENTIALS = {"KAGGLE_API_TOKEN": "x", "IRMSIA_DICOMWEB_TOKEN": "x", "HOME": "/nonexistent"}


def test_the_catalogue_holds_over_100_datasets_with_unique_names():
    entries = catalogue()
    assert len(entries) >= 100
    assert len({e.name for e in entries}) == len(entries)
    assert len(reviewed_entries()) >= 40 and len(idc_entries()) >= 100


@pytest.mark.parametrize("name", TOP_TEN)
def test_each_of_the_top_ten_says_how_to_get_it_and_what_the_pipeline_does(name):
    entry = find(name)
    assert entry.origin == "reviewed"
    assert entry.can.strip() and entry.cannot.strip() and entry.how_to_access.strip()
    assert entry.license.strip() and entry.citation.strip() and entry.access in ACCESS
    assert entry.command.startswith("irmsia-collect --source ")


def test_credentialed_and_competition_entries_say_so():
    assert find("mimic-cxr").access == "credentialed" and "PhysioNet" in find("mimic-cxr").how_to_access
    assert find("rsna-pneumonia").access == "rules" and "--competition" in find("rsna-pneumonia").command
    assert find("brats-2021").access == "registration"


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] == "irmsia-collect"
    return words[1:]


def test_every_collect_command_parses_into_valid_settings():
    # GIVEN every entry's exact command WHEN the collect stage parses it THEN it is valid (names, flags, values)
    for entry in catalogue():
        settings = CollectSettings.parse(_argv(entry.command), FAKE_CREDENTIALS)
        assert settings.dataset == entry.name, entry.name
        assert settings.source == ("kaggle" if entry.source == "kaggle-competition" else entry.source), entry.name


def test_idc_entries_are_the_installed_releases_own_metadata():
    # GIVEN an independent reading of idc-index-data's collections and series tables
    con = duckdb.connect()
    meta = idc_index_data.INDEX_METADATA["collections_index"]["parquet_filepath"]
    rows = con.execute(f"SELECT collection_id, collection_name FROM read_parquet('{meta}')").fetchall()
    series = idc_index_data.IDC_INDEX_PARQUET_FILEPATH
    patients = dict(con.execute(f"SELECT collection_id, count(DISTINCT PatientID) FROM read_parquet('{series}')"
                                " WHERE analysis_result_id IS NULL GROUP BY 1").fetchall())  # fmt: skip
    # THEN there is one entry per collection, with its name, patients and a real licence
    by_ref = {e.ref: e for e in idc_entries()}
    assert set(by_ref) == {r[0] for r in rows}
    for collection, title in rows:
        entry = by_ref[collection]
        assert entry.title == title and entry.patients == (patients.get(collection) or None)
        assert entry.origin == f"idc v{idc_index_data.__version__.split('.')[0]}"
    assert "CC BY 3.0" in by_ref["lidc_idri"].license and by_ref["lidc_idri"].doi
    assert "<i>" not in by_ref["lidc_idri"].citation
    # AND a reviewed entry replaces IDC's for the same collection
    assert [e.name for e in catalogue() if e.name == "lidc-idri"] == ["lidc-idri"]
    assert find("lidc-idri").origin == "reviewed"


def test_search_needs_every_word_and_find_suggests_close_names():
    assert {e.name for e in search("chest pneumonia kaggle")} >= {"chest-xray-pneumonia", "rsna-pneumonia"}
    assert all("mr" in e.text() and "brain" in e.text() for e in search("brain MR"))
    with pytest.raises(UsageError, match="did you mean lidc-idri"):
        find("lidc-idr")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"access": "maybe"}, "access must be one of"),
        ({"license": ""}, "license must be non-empty"),
        ({"name": "Not A Name"}, "store folder name"),
        ({"images": -3}, "images must be a positive"),
        ({"colour": "red"}, "unknown fields"),
        ({"source": "local", "collect": None}, "needs its collect command"),
    ],
)
def test_a_bad_entry_names_the_field(change, message):
    import yaml

    good = yaml.safe_load(DATA_FILE.read_text())[0]
    with pytest.raises(ValueError, match=message):
        entry_from({**good, **change}, "datasets.yaml")
