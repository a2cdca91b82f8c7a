"""Exported TorchScript and ONNX models predict what the state dict predicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.core.errors import DataError
from jobs.register import export
from tests.support.runs import state_dict_bytes

CONFIG = {"model": "small-cnn", "in_channels": 1, "num_classes": 2, "image_size": 32}


@pytest.fixture
def exported(tmp_path):
    sd = tmp_path / "best_model.pt"
    sd.write_bytes(state_dict_bytes(seed=3))
    return export.export_model(CONFIG, sd, tmp_path / "out"), sd


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_exports_match_the_state_dict_on_new_inputs(exported):
    # GIVEN the exports of a state dict, and a batch of another size than the one they were traced with
    result, sd = exported
    model = export.load_state_dict_model(CONFIG, sd)
    batch = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        expected = model(batch).numpy()
        scripted = torch.jit.load(str(result.torchscript)).eval()(batch).numpy()
    # THEN TorchScript (and ONNX, when installed) give the same logits and the same predicted classes
    np.testing.assert_allclose(scripted, expected, atol=1e-5)
    assert result.state_dict.read_bytes() == sd.read_bytes()
    assert result.max_abs_diff["torchscript"] < export.ATOL
    if export.onnx_available():
        onnx_out = export.onnx_predict(result.onnx, batch)
        np.testing.assert_allclose(onnx_out, expected, atol=1e-4)
        assert (onnx_out.argmax(1) == expected.argmax(1)).all()
    else:
        assert result.onnx is None


def test_a_diverging_export_is_rejected():
    with pytest.raises(DataError, match=r"model\.onnx predictions differ"):
        export._max_diff(np.zeros((2, 2)), np.ones((2, 2)), "model.onnx")


def test_weights_for_another_network_are_a_data_error(tmp_path):
    sd = tmp_path / "best_model.pt"
    sd.write_bytes(state_dict_bytes(seed=0, num_classes=3))
    with pytest.raises(DataError, match="does not load into 'small-cnn'"):
        export.load_state_dict_model(CONFIG, sd)


def test_a_file_that_is_not_a_state_dict_is_a_data_error(tmp_path):
    sd = tmp_path / "best_model.pt"
    sd.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=r"best_model\.pt does not load"):
        export.load_state_dict_model(CONFIG, sd)
