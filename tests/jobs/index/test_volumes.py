"""The index records which rows form a volume (a DICOM series, a NIfTI file), in which order, with shape and spacing."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.core.store import open_store
from jobs.index.settings import IndexSettings
from jobs.index.stage import run
from jobs.ml.preprocess import Preprocessing
from tests.jobs.index.conftest import put_raw
from tests.support.dicom_files import dicom_bytes
from tests.support.volumes import ct_series, nifti_volume


def _index(tmp_path, files: dict[str, bytes]) -> tuple[dict[str, dict], dict]:
    uri = str(tmp_path / "store")
    store = open_store(uri)
    put_raw(store, "vol", files)
    manifest, _ = run(IndexSettings.parse(["--dataset", "vol", "--store", uri, "--workers", "1"], {}))
    rows = pq.read_table(io.BytesIO(store.get_bytes("index/vol/index.parquet"))).to_pylist()
    return {r["key"].removeprefix("raw/vol/"): r for r in rows}, manifest.summary


def test_series_slices_nifti_volumes_and_plain_images_get_their_volume_columns(tmp_path):
    # GIVEN a 5-slice CT series with shuffled instance numbers (one slice without preamble), a NIfTI volume and a CR
    volume = np.arange(5 * 6 * 4, dtype=np.uint16).reshape(5, 6, 4) * 7
    series = ct_series(volume, "P1", spacing=(2.5, 0.8, 0.7), preamble_less=(2,))
    files = {f"ct/{k}": v for k, v in series.items()}
    files["mr/brain.nii"] = nifti_volume(np.ones((3, 8, 9), np.int16), (4.0, 1.5, 1.25))
    files["cr/chest.dcm"] = dicom_bytes("P2", rows=8, columns=8)
    # WHEN indexed
    rows, summary = _index(tmp_path, files)
    # THEN every slice names its series, its place by position (not instance number) and the volume's geometry
    slices = {k: r for k, r in rows.items() if k.startswith("ct/")}
    assert len(slices) == 5 and len({r["volume"] for r in slices.values()}) == 1
    assert next(iter(slices.values()))["volume"] == next(iter(slices.values()))["series_uid"]
    order = sorted(slices, key=lambda k: slices[k]["slice_index"])
    first_plane = Preprocessing(image_size=4, voi_lut=False).native  # decoding checks which slice is where
    for index, key in enumerate(order):
        r = slices[key]
        assert (r["slice_index"], r["volume_depth"], r["volume_height"], r["volume_width"]) == (index, 5, 6, 4)
        assert (r["spacing_z"], r["spacing_y"], r["spacing_x"]) == pytest.approx((2.5, 0.8, 0.7))
        assert first_plane(files[key]).shape == (1, 4, 4)
    import pydicom

    z = [float(pydicom.dcmread(io.BytesIO(files[k]), force=True).ImagePositionPatient[2]) for k in order]
    assert z == sorted(z)
    # AND the NIfTI file is a volume by itself, the CR image is none
    nii = rows["mr/brain.nii"]
    assert (nii["volume"], nii["slice_index"], nii["volume_depth"], nii["volume_height"], nii["volume_width"]) == (
        "raw/vol/mr/brain.nii", None, 3, 8, 9)  # fmt: skip
    assert (nii["spacing_z"], nii["spacing_y"], nii["spacing_x"]) == (4.0, 1.5, 1.25)
    assert rows["cr/chest.dcm"]["volume"] is None
    assert summary["volumes"] == 2


SAGITTAL = ["0", "1", "0", "0", "0", "-1"]


@pytest.mark.parametrize(
    ("case", "tamper"),
    [
        ("two slices at one position", lambda ds, d: setattr(ds, "ImagePositionPatient", ["0", "0", "0"])),
        ("no position", lambda ds, d: delattr(ds, "ImagePositionPatient")),
        ("mixed orientation", lambda ds, d: d == 1 and setattr(ds, "ImageOrientationPatient", SAGITTAL)),
    ],
)  # fmt: skip
def test_slices_that_do_not_form_a_volume_stay_plain_images(tmp_path, case, tamper):
    # GIVEN a series whose slices' geometry contradicts a volume
    import pydicom

    files = {}
    for d, (name, data) in enumerate(sorted(ct_series(np.ones((3, 4, 4), np.uint16)).items())):
        ds = pydicom.dcmread(io.BytesIO(data))
        tamper(ds, d)
        out = io.BytesIO()
        ds.save_as(out)
        files[name] = out.getvalue()
    # WHEN indexed THEN every slice is indexed, none as part of a volume
    rows, summary = _index(tmp_path, files)
    assert len(rows) == 3 and all(r["volume"] is None for r in rows.values()) and summary["volumes"] == 0
