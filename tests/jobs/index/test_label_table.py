"""Labels CSVs: columns found by name, lookups by file, series and patient, clear errors naming the file."""

from __future__ import annotations

import pytest

from jobs.core.errors import DataError
from jobs.index.label_table import LabelTable


def test_lookup_by_file_key_path_or_name():
    table = LabelTable.parse(
        b"filename,label,PatientID\nimages/a.png,cat,P1\nb.png,dog,P2\nraw/ds/c/c.png,cow,\n", "labels.csv"
    )
    assert table.label_for("raw/ds/images/a.png", "images/a.png", None, None) == "cat"
    assert table.label_for("raw/ds/x/b.png", "x/b.png", None, None) == "dog"
    assert table.label_for("raw/ds/c/c.png", "c/c.png", None, None) == "cow"
    assert table.label_for("raw/ds/d.png", "d.png", None, None) is None
    assert table.patient_for("raw/ds/images/a.png", "images/a.png") == "P1"


def test_lookup_by_series_then_patient():
    table = LabelTable.parse(b"PatientID,SeriesInstanceUID,label\nP1,,tumour\n,1.2.3,normal\n", "t.csv")
    assert not table.has_file_column
    assert table.label_for(None, None, "1.2.3", "P1") == "normal"
    assert table.label_for(None, None, "9.9", "P1") == "tumour"
    assert table.label_for(None, None, None, "P2") is None


def test_nih_columns_are_recognised():
    table = LabelTable.parse(
        b"Image Index,Finding Labels,Follow-up #,Patient ID\n00000001_000.png,Cardiomegaly|Effusion,0,1\n", "nih.csv"
    )
    assert table.label_column == "Finding Labels"
    assert table.label_for("raw/n/images/00000001_000.png", "images/00000001_000.png", None, None) == (
        "Cardiomegaly|Effusion"
    )
    assert table.patient_for("k", "images/00000001_000.png") == "1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"key,what\na,b\n", "bad.csv: no label column"),
        (b"label,colour\na,b\n", "bad.csv: no column saying what each label belongs to"),
        (b"key,label\na.png,x\na.png,y\n", "bad.csv line 3: 'a.png' labelled both 'x' and 'y'"),
        (b"key,label\na.png,\n", "bad.csv: no rows with a label"),
        (b"key,label\n\xff\xfe,\n", "bad.csv: not UTF-8"),
    ],
)
def test_bad_csv_is_a_data_error_naming_the_file(data, message):
    with pytest.raises(DataError, match=message.replace("|", r"\|")):
        LabelTable.parse(data, "bad.csv")


def test_split_column_gives_the_official_split():
    # GIVEN the labels.csv that collect writes for NIH (path,label,patient_id,split)
    table = LabelTable.parse(
        b"path,label,patient_id,split\nimages/a.png,No Finding,7,train_val\nimages/b.png,Mass,8,test\n", "labels.csv"
    )
    assert table.split_for("raw/n/images/a.png", "images/a.png") == "train"
    assert table.split_for("raw/n/images/b.png", "images/b.png") == "test"
    assert table.patient_for("raw/n/images/b.png", "images/b.png") == "8"
    with pytest.raises(DataError, match="line 2: split 'holdout' is not one of"):
        LabelTable.parse(b"path,label,split\na.png,x,holdout\n", "labels.csv")
