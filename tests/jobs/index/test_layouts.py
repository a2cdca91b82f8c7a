"""Layout adapters: each recommended dataset's tree gives the right labels and patients, and is detected."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from jobs.core.errors import UsageError
from jobs.core.store import open_store
from jobs.index.label_table import LabelTable
from jobs.index.layouts import LAYOUTS, Assignment, FileFacts, Unlabelled, layout_class
from jobs.index.layouts.chest_xray import ChestXrayLayout
from jobs.index.layouts.covid19 import Covid19Layout
from jobs.index.layouts.folder import FolderLayout
from jobs.index.layouts.lgg import LggLayout
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_files import dicom_bytes


def _image(fmt: str, seed: int) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, size=(6, 6), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def _facts(rel: str, patient: str | None = None, series: str | None = None) -> FileFacts:
    return FileFacts(f"raw/ds/{rel}", rel, patient, series)


# -- adapters on paths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layout", "rel", "expected"),
    [
        (FolderLayout(), "NORMAL/a.dcm", Assignment("NORMAL")),
        (FolderLayout(), "x/y/PNEUMONIA/a.dcm", Assignment("PNEUMONIA")),
        (FolderLayout(), "top.dcm", Assignment(None)),
        (ChestXrayLayout(), "chest_xray/train/PNEUMONIA/person12_virus_3.jpeg",
         Assignment("PNEUMONIA", "person12", "train")),
        (ChestXrayLayout(), "chest_xray/test/NORMAL/IM-0115-0001.jpeg", Assignment("NORMAL", "IM-0115", "test")),
        (ChestXrayLayout(), "chest_xray/val/NORMAL/NORMAL2-IM-1427-0001.jpeg",
         Assignment("NORMAL", "NORMAL2-IM-1427", "val")),
        (Covid19Layout(), "COVID-19_Radiography_Dataset/Viral Pneumonia/images/Viral Pneumonia-1.png",
         Assignment("Viral Pneumonia")),
        (Covid19Layout(), "Lung_Opacity/images/Lung_Opacity-9.png", Assignment("Lung_Opacity")),
        (LggLayout(), "kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif",
         Assignment(None, "TCGA_CS_4941")),
    ],
)  # fmt: skip
def test_adapters_assign_label_and_patient(layout, rel, expected):
    assert layout.assign(_facts(rel)) == expected


@pytest.mark.parametrize(
    ("layout", "rel", "skipped"),
    [
        (Covid19Layout(), "COVID/masks/COVID-1.png", True),
        (Covid19Layout(), "COVID/images/COVID-1.png", False),
        (LggLayout(), "kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1_mask.tif", True),
        (ChestXrayLayout(), "__MACOSX/chest_xray/train/NORMAL/._IM-1.jpeg", True),
        (FolderLayout(), "a/_mask.tif", False),
    ],
)
def test_adapters_skip_masks_and_litter(layout, rel, skipped):
    assert layout.skip(rel) is skipped


@pytest.mark.parametrize(
    ("rels", "labels", "expected"),
    [
        (["chest_xray/train/NORMAL/a.jpeg", "chest_xray/test/PNEUMONIA/b.jpeg"], None, "chest-xray-pneumonia"),
        (["COVID/images/a.png", "COVID/masks/a.png", "Normal/images/b.png"], None, "covid19-radiography"),
        (["kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1.tif",
          "kaggle_3m/TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_1_mask.tif"], None, "lgg-mri-segmentation"),
        (["images_001/images/1.png"], b"Image Index,Finding Labels,Patient ID\n1.png,No Finding,1\n", "nih"),
        (["a/1.dcm"], b"PatientID,label\nP1,x\n", "tcia"),
        (["a/1.dcm"], b"key,label\na/1.dcm,x\n", "csv"),
        (["NORMAL/1.dcm", "PNEUMONIA/2.dcm"], None, "folder"),
    ],
)  # fmt: skip
def test_auto_detection(rels, labels, expected):
    table = LabelTable.parse(labels, "labels.csv") if labels else None
    assert layout_class("auto", rels, table).name == expected


def test_every_layout_is_registered_under_its_name():
    assert set(LAYOUTS) == {"folder", "csv", "chest-xray-pneumonia", "covid19-radiography",
                            "lgg-mri-segmentation", "nih", "tcia"}  # fmt: skip
    assert all(cls.name == name for name, cls in LAYOUTS.items())


def test_label_csv_layouts_need_labels_and_quarantine_unlisted_files():
    with pytest.raises(UsageError, match="--layout tcia needs a labels CSV"):
        layout_class("tcia", [], None)(None, None)
    table = LabelTable.parse(b"SeriesInstanceUID,label\n1.2,x\n", "l.csv")
    tcia = layout_class("tcia", [], table)(table, None)
    assert tcia.assign(_facts("any/where.dcm", "P", "1.2")) == Assignment("x")
    with pytest.raises(Unlabelled, match=r"no label in labels CSV l\.csv"):
        tcia.assign(_facts("any/where.dcm", "P", "9.9"))


# -- the stage on tiny synthetic trees -----------------------------------------------------------------------
def _index(store_uri: str, files: dict[str, bytes], *extra: str) -> tuple[list[dict], dict]:
    store = open_store(store_uri)
    put_raw(store, "ds", files)
    manifest, _ = run(IndexSettings.parse(["--dataset", "ds", "--store", store_uri, "--workers", "1", *extra], {}))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/ds/index.parquet"))).to_pylist()
    return rows, manifest.summary


def test_chest_xray_tree(tmp_path):
    files = {
        "chest_xray/train/NORMAL/IM-0001-0001.jpeg": _image("JPEG", 1),
        "chest_xray/train/PNEUMONIA/person3_bacteria_10.jpeg": _image("JPEG", 2),
        "chest_xray/test/PNEUMONIA/person3_virus_11.jpeg": _image("JPEG", 3),
        "__MACOSX/chest_xray/train/NORMAL/._IM-0001-0001.jpeg": b"\x00\x05\x16\x07",
    }
    rows, summary = _index(str(tmp_path / "s"), files)
    assert summary["layout"] == "chest-xray-pneumonia" and summary["skipped"] == 1
    assert [(r["label"], r["patient_id"], r["format"], r["rows"], r["official_split"]) for r in rows] == [
        ("PNEUMONIA", "person3", "jpeg", 6, "test"),
        ("NORMAL", "IM-0001", "jpeg", 6, "train"),
        ("PNEUMONIA", "person3", "jpeg", 6, "train"),
    ]


def test_covid19_tree_pairs_its_masks_instead_of_indexing_them(tmp_path):
    files = {
        "COVID-19_Radiography_Dataset/COVID/images/COVID-1.png": _image("PNG", 1),
        "COVID-19_Radiography_Dataset/COVID/masks/COVID-1.png": _image("PNG", 2),
        "COVID-19_Radiography_Dataset/Viral Pneumonia/images/Viral Pneumonia-1.png": _image("PNG", 3),
        "COVID-19_Radiography_Dataset/COVID.metadata.xlsx.txt": b"sidecar",
    }
    rows, summary = _index(str(tmp_path / "s"), files)
    assert summary["classes"] == ["COVID", "Viral Pneumonia"] and summary["skipped"] == 0
    assert [r["patient_id"] for r in rows] == ["COVID-1", "Viral Pneumonia-1"]
    # the lung mask beside the image is its segmentation mask, with its content hash; the other image has none
    assert [r["mask_key"] for r in rows] == ["raw/ds/COVID-19_Radiography_Dataset/COVID/masks/COVID-1.png", None]
    assert (
        rows[0]["mask_sha256"]
        == hashlib.sha256(files["COVID-19_Radiography_Dataset/COVID/masks/COVID-1.png"]).hexdigest()
    )
    assert summary["masks"] == 1


def test_lgg_tree_patient_from_folder_and_labels_by_patient(tmp_path):
    case = "kaggle_3m/TCGA_CS_4941_19960909"
    files = {
        f"{case}/TCGA_CS_4941_19960909_1.tif": _image("TIFF", 1),
        f"{case}/TCGA_CS_4941_19960909_1_mask.tif": _image("TIFF", 2),
        f"{case}/TCGA_CS_4941_19960909_2.tif": _image("TIFF", 3),
        "labels.csv": b"PatientID,label\nTCGA_CS_4941,grade2\n",
    }
    rows, summary = _index(str(tmp_path / "s"), files, "--layout", "lgg-mri-segmentation", "--labels", "labels.csv")
    assert [(r["label"], r["patient_id"], r["format"]) for r in rows] == [("grade2", "TCGA_CS_4941", "tiff")] * 2
    assert [r["mask_key"] for r in rows] == [f"raw/ds/{case}/TCGA_CS_4941_19960909_1_mask.tif", None]
    assert summary["skipped"] == 0 and summary["masks"] == 1


def test_nih_tree_finds_its_data_entry_csv(tmp_path):
    files = {
        "images_001/images/00000001_000.png": _image("PNG", 1),
        "images_001/images/00000001_001.png": _image("PNG", 2),
        "images_002/images/00000002_000.png": _image("PNG", 3),
        "Data_Entry_2017_v2020.csv": b"Image Index,Finding Labels,Follow-up #,Patient ID\n"
        b"00000001_000.png,Cardiomegaly|Effusion,0,1\n00000001_001.png,No Finding,1,1\n",
        "train_val_list.txt": b"00000001_000.png\n",
        "test_list.txt": b"00000001_001.png\n00000002_000.png\n",
    }
    rows, summary = _index(str(tmp_path / "s"), files)
    assert summary["layout"] == "nih" and summary["quarantined"] == 1
    assert [(r["label"], r["patient_id"], r["official_split"]) for r in rows] == [
        ("Cardiomegaly|Effusion", "1", "train"),
        ("No Finding", "1", "test"),
    ]


def test_tcia_tree_labels_by_series_and_patient(tmp_path):
    files = {
        "Collection/P1/s1/1.dcm": dicom_bytes("P1", seed=1, series_uid="1.2.1"),
        "Collection/P2/s2/1.dcm": dicom_bytes("P2", seed=2, series_uid="1.2.2"),
        "Collection/P3/s3/1.dcm": dicom_bytes("P3", seed=3, series_uid="1.2.3"),
    }
    labels = tmp_path / "my-labels.csv"
    labels.write_text("PatientID,SeriesInstanceUID,label\nP1,,benign\n,1.2.2,malignant\n")
    rows, summary = _index(str(tmp_path / "s"), files, "--labels", str(labels))
    assert summary["layout"] == "tcia" and summary["quarantined"] == 1
    assert [(r["patient_id"], r["label"]) for r in rows] == [("P1", "benign"), ("P2", "malignant")]


def test_changing_a_local_labels_csv_invalidates_the_cache(tmp_path):
    files = {"a/1.dcm": dicom_bytes("P1", seed=1)}
    labels = tmp_path / "labels.csv"
    labels.write_text("key,label\na/1.dcm,x\n")
    rows, _ = _index(str(tmp_path / "s"), files, "--labels", str(labels))
    labels.write_text("key,label\na/1.dcm,y\n")
    _, cached = run(
        IndexSettings.parse(["--dataset", "ds", "--store", str(tmp_path / "s"), "--labels", str(labels)], {})
    )
    store = open_store(str(tmp_path / "s"))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/ds/index.parquet"))).to_pylist()
    assert not cached and rows[0]["label"] == "y"
