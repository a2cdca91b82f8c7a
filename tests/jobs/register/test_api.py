"""``load_model``: from the registry to an eval-mode module that predicts what the trained weights predict."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from jobs.core.errors import DataError, UsageError
from jobs.ml.networks import build_network
from jobs.ml.preprocess import Preprocessing
from jobs.register.api import load_metadata, load_model, load_serving
from tests.jobs.register.conftest import (
    append_move_to_unregistered,
    drop_alias_object,
    register,
    rewrite_champion_move,
)
from tests.support.runs import seal_run, state_dict_bytes


def test_load_model_round_trip(store, run_id):
    # GIVEN a registered run
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    # WHEN the champion is loaded
    module, preprocessing = load_model(store, "m")
    # THEN it is in eval mode and predicts exactly what the run's weights predict
    reference = build_network("small-cnn", 1, 2)
    reference.load_state_dict(torch.load(io.BytesIO(state_dict_bytes(seed=0)), weights_only=True))
    reference.eval()
    batch = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    assert module.training is False
    with torch.no_grad():
        torch.testing.assert_close(module(batch), reference(batch))
    # AND the preprocessing is the one the run was trained with, turning image bytes into the module's input
    assert preprocessing == Preprocessing(image_size=32)
    image = Image.fromarray(np.linspace(0, 255, 50 * 40, dtype=np.uint8).reshape(50, 40))
    png = io.BytesIO()
    image.save(png, format="PNG")
    x = torch.from_numpy(preprocessing(png.getvalue()))[None]
    assert x.shape == (1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(x))


def test_versions_by_number_alias_and_latest(store, upstream):
    seal_run(store, "r1", upstream=upstream, metrics={"val_auc": 0.9})
    seal_run(store, "r2", upstream=upstream, metrics={"val_auc": 0.8}, seed=2)
    for run in ("r1", "r2"):
        assert register(store, "--run", run, "--model-name", "m") == 0
    assert load_metadata(store, "m", "champion")["irmsia"]["run_id"] == "r1"
    assert load_metadata(store, "m", "candidate")["irmsia"]["run_id"] == "r2"
    assert load_metadata(store, "m", "latest")["irmsia"]["run_id"] == "r2"
    assert load_metadata(store, "m", 2)["irmsia"]["registry_version"] == 2
    with pytest.raises(DataError, match="no registered v9"):
        load_model(store, "m", 9)
    with pytest.raises(UsageError, match="use a number"):
        load_model(store, "m", "best")


def test_a_tampered_model_file_is_refused(store, run_id):
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    store.put_bytes("registry/m/1/models/model.pt", state_dict_bytes(seed=42))
    with pytest.raises(DataError, match=r"model\.pt: SHA-256 is .* the file was altered"):
        load_model(store, "m", 1)


def test_unknown_model_is_a_data_error(store):
    with pytest.raises(DataError, match="no registered versions of 'ghost'"):
        load_model(store.uri, "ghost")


FORGERIES = [
    # (case, forge(store), None: the true champion is served | the DataError load_model raises)
    ("alias object dropped in", drop_alias_object, None),
    ("the champion's move rewritten", rewrite_champion_move, "ledger entry 4: prev_sha256"),
    ("a chained move to an unregistered version", append_move_to_unregistered, "moves champion to v9"),
]


@pytest.mark.parametrize(("case", "forge", "refusal"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_a_forged_alias_is_never_served(promoted, case, forge, refusal):
    # GIVEN a registry whose champion is v2 (r2, weights of seed 2), and an alias forged to name another version
    forge(promoted)
    # WHEN serving code loads the champion
    if refusal is not None:
        # THEN it is refused, naming the break
        with pytest.raises(DataError, match=refusal):
            load_model(promoted, "m")
        return
    # THEN it gets the true champion's weights, never the forged alias's
    module, _ = load_model(promoted, "m")
    assert load_metadata(promoted, "m", "champion")["irmsia"]["run_id"] == "r2"
    reference = build_network("small-cnn", 1, 2)
    reference.load_state_dict(torch.load(io.BytesIO(state_dict_bytes(seed=2)), weights_only=True))
    batch = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(module(batch), reference.eval()(batch))


def test_a_calibrated_model_serves_temperature_scaled_logits_and_its_operating_points(store, upstream):
    # GIVEN a run calibrated on val (temperature 2.5) with an operating point chosen there
    serving = {"temperature": 2.5, "operating_points": {"abnormal": {"youden": 0.4, "specificity_0.9": "inf"}}}
    seal_run(store, "r1", upstream=upstream, evaluation={"serving": serving})
    assert register(store, "--run", "r1", "--model-name", "m") == 0
    # WHEN it is loaded for serving
    module, _ = load_model(store, "m")
    rules = load_serving(store, "m")
    # THEN its logits are the trained network's divided by the temperature
    reference = build_network("small-cnn", 1, 2)
    reference.load_state_dict(torch.load(io.BytesIO(state_dict_bytes(seed=0)), weights_only=True))
    batch = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(module(batch), reference.eval()(batch) / 2.5)
    # AND the thresholds decide on the calibrated probabilities ("inf": never positive)
    probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]])
    assert rules.temperature == 2.5
    assert rules.decide(probs, 1, "abnormal").tolist() == [False, True, True]
    assert rules.decide(probs, 1, "abnormal", "specificity_0.9").tolist() == [False, False, False]
    with pytest.raises(UsageError, match="no operating point 'youden' for class 'normal'"):
        rules.decide(probs, 0, "normal")


def test_an_uncalibrated_version_serves_the_network_unchanged(store, run_id):
    assert register(store, "--run", run_id, "--model-name", "m") == 0
    module, _ = load_model(store, "m")
    assert not hasattr(module, "temperature")  # the network itself, not a wrapper
    assert load_serving(store, "m").temperature == 1.0
