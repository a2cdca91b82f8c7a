"""Fine-tuning (``--init``, ``--freeze``, ``--backbone-lr-scale``): every kind of starting weights is used as given,
a head for other classes is re-initialised, frozen layers stay as loaded, and the init is part of the run's identity
and lineage."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import torch

from jobs.core.errors import UsageError
from jobs.core.hashing import sha256_file
from jobs.core.store import Store, open_store
from jobs.ml.networks import NETWORK_SPECS, build_network, network_head
from jobs.ml.preprocess import Preprocessing
from jobs.train.__main__ import main
from jobs.train.cache import load_images
from jobs.train.checkpoint import TrainState
from jobs.train.data import read_split
from jobs.train.init_weights import is_head, read_state, resolve_init
from jobs.train.loop import Trainer, pick_hardware
from jobs.train.stage import run
from tests.jobs.register.conftest import register
from tests.support.runs import seal_run
from tests.support.synthetic_split import write_split

HEAD = ("7.weight", "7.bias")  # small-cnn's classifier layer
FAST = ["--model", "small-cnn", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--workers", "0"]


def _weights(seed: int = 7, outputs: int = 2, in_channels: int = 1, model: str = "small-cnn") -> dict:
    """A network's seeded state dict, with BatchNorm statistics moved off their defaults (so copying shows)."""
    torch.manual_seed(seed)
    net = build_network(model, in_channels, outputs)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_mean"):
                tensor.uniform_(-0.5, 0.5)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _save(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def _split_store(tmp_path) -> Store:
    store = open_store(str(tmp_path / "store"))
    if not store.exists("splits/tiny/_SUCCESS.json"):
        write_split(store, "tiny")
    return store


def _trainer(tmp_path, fast_settings, **overrides) -> Trainer:
    """A trainer on the tiny split with ``--init`` read as the stage reads it."""
    store = _split_store(tmp_path)
    settings = fast_settings(store.uri, **overrides)
    split = read_split(store, "tiny")
    sets, channels = load_images(store, split, Preprocessing(image_size=32), settings.cache_dir, workers=1,
                                 max_unreadable=0.0)  # fmt: skip
    init = None
    if settings.init:
        source = resolve_init(settings.init, store, settings.model)
        init = (source, read_state(source, store))
    return Trainer(settings, sets, split.classes, channels, pick_hardware("cpu", "off"), init=init)


def _state_of(store: Store, key: str) -> dict:
    return torch.load(io.BytesIO(store.get_bytes(key)), weights_only=True)


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_each_network_declares_as_head_exactly_the_tensors_that_follow_the_output_count():
    for name, spec in NETWORK_SPECS.items():
        with torch.device("meta"):  # shapes only: no memory, no initialisation work
            three, five = build_network(name, 1, 3).state_dict(), build_network(name, 1, 5).state_dict()
        follows = {k for k in three if three[k].shape != five[k].shape}
        declared = {k for k in three if is_head(k, spec.head)}
        assert follows and follows <= declared, name
        # and the head is a small part of the network, not the backbone with it
        assert sum(three[k].numel() for k in declared) < 0.2 * sum(v.numel() for v in three.values()), name


def test_a_state_dict_init_is_the_network_before_the_first_step(tmp_path, fast_settings):
    # GIVEN seeded weights saved as a state dict, wrapped as a checkpoint keeps them, with DDP's key prefix
    weights = _weights()
    path = _save(tmp_path / "w.pth", {"model": {f"module.{k}": v for k, v in weights.items()}})
    # WHEN a trainer starts from them
    trainer = _trainer(tmp_path, fast_settings, init=str(path))
    # THEN every tensor of the network is the saved one (and differs from the run's own seeded initialisation)
    own = trainer.model.state_dict()
    assert set(own) == set(weights) and trainer.reinitialised == []
    for name in own:
        torch.testing.assert_close(own[name], weights[name], rtol=0, atol=0)
    assert not torch.equal(_trainer(tmp_path, fast_settings).model.state_dict()["0.0.weight"], weights["0.0.weight"])


def test_torchscript_and_bundle_inits_load_the_same_tensors(tmp_path, fast_settings):
    # GIVEN one set of weights as a TorchScript file (named .pt, as bundles do) and as a MONAI bundle folder
    weights = _weights(seed=3)
    net = build_network("small-cnn", 1, 2)
    net.load_state_dict(weights)
    scripted = tmp_path / "scripted.pt"
    torch.jit.trace(net.eval(), torch.rand(2, 1, 32, 32)).save(str(scripted))
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"version": "0.1.0"}))
    _save(bundle / "models" / "model.pt", weights)
    for given, kind in ((scripted, "torchscript"), (bundle, "bundle")):
        # WHEN a trainer starts from each
        trainer = _trainer(tmp_path, fast_settings, init=str(given))
        # THEN it is recognised by content and its tensors are the network's
        assert resolve_init(str(given), open_store(str(tmp_path / "store")), "small-cnn").kind == kind
        for name, tensor in trainer.model.state_dict().items():
            torch.testing.assert_close(tensor, weights[name], rtol=0, atol=0)


def test_a_head_for_other_classes_is_reinitialised_and_logged(tmp_path, fast_settings, caplog):
    # GIVEN weights of a 3-class small-cnn and the tiny split's 2 classes
    weights = _weights(outputs=3)
    path = _save(tmp_path / "three.pt", weights)
    # WHEN a trainer starts from them
    with caplog.at_level(logging.WARNING, logger="irmsia.train.init"):
        trainer = _trainer(tmp_path, fast_settings, init=str(path))
    own = trainer.model.state_dict()
    # THEN the backbone is loaded, the head is the run's own seeded initialisation, and the log says so
    assert trainer.reinitialised == list(HEAD)
    for name in own:
        if name not in HEAD:
            torch.testing.assert_close(own[name], weights[name], rtol=0, atol=0)
    scratch = _trainer(tmp_path, fast_settings).model.state_dict()
    for name in HEAD:
        assert own[name].shape[0] == 2
        torch.testing.assert_close(own[name], scratch[name], rtol=0, atol=0)
    assert "has 3 outputs there and 2 in this run: it is re-initialised" in caplog.text


def test_freeze_backbone_keeps_every_backbone_tensor_and_trains_the_head(tmp_path, fast_settings):
    # GIVEN a sealed split and weights to start from
    store = _split_store(tmp_path)
    weights = _weights()
    path = _save(tmp_path / "w.pt", weights)
    # WHEN the stage fine-tunes with the backbone frozen
    manifest, cached = run(fast_settings(store.uri, run_id="frozen", init=str(path), freeze="backbone", epochs=1))
    # THEN the trained model's backbone (BatchNorm statistics included) is the init's, while the head moved
    assert not cached
    last = _state_of(store, "runs/frozen/last_model.pt")
    for name, tensor in last.items():
        if name in HEAD:
            assert not torch.equal(tensor, weights[name]), name
        else:
            torch.testing.assert_close(tensor, weights[name], rtol=0, atol=0)
    # AND the run records what it started from, in its config and in its parameters (the cache key)
    config = json.loads(store.get_bytes("runs/frozen/config.json"))
    record = {"kind": "state_dict", "source": str(path.resolve()), "sha256": sha256_file(path)}
    assert config["init"] == {**record, "reinitialised": []}
    assert (config["freeze"], config["freeze_epochs"], config["backbone_lr_scale"]) == ("backbone", 0, 1.0)
    assert manifest.params["init"] == record
    assert manifest.summary["init"] == str(path.resolve())
    report = store.get_bytes("runs/frozen/report.html").decode()
    assert f"fine-tuned from</td><td>{path.resolve()} (SHA-256 {record['sha256']})" in report


def test_freeze_epochs_unfreezes_the_backbone_and_it_trains_at_the_scaled_rate(tmp_path, fast_settings):
    # GIVEN a trainer from saved weights, backbone frozen for epoch 1 and at a tenth of the rate afterwards
    weights = _weights()
    path = _save(tmp_path / "w.pt", weights)
    trainer = _trainer(tmp_path, fast_settings, init=str(path), epochs=2, freeze="backbone", freeze_epochs=1,
                       backbone_lr_scale=0.1, warmup_epochs=0.0)  # fmt: skip
    # THEN the optimiser has the head at --lr and every other parameter in a group at 0.1 x --lr
    head, backbone = trainer.optimizer.param_groups
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert sorted(names[id(p)] for p in head["params"]) == sorted(HEAD)
    assert len(backbone["params"]) == len(names) - 2
    assert backbone["lr"] == pytest.approx(0.1 * head["lr"])
    snapshots: list[dict] = []
    # WHEN it trains two epochs
    state = trainer.fit(TrainState(), lambda s: snapshots.append(
        {k: v.clone() for k, v in trainer.model.state_dict().items()}))  # fmt: skip
    # THEN after epoch 1 only the head changed, after epoch 2 the backbone too
    assert all(torch.equal(snapshots[0][k], weights[k]) for k in weights if k not in HEAD)
    assert not torch.equal(snapshots[1]["0.0.weight"], weights["0.0.weight"])
    # AND the history records both rates, the backbone's scaled by 0.1 in every epoch
    assert [h["backbone_lr"] for h in state.history] == pytest.approx([0.1 * h["lr"] for h in state.history])


def test_a_rerun_with_the_same_init_is_a_cache_hit_and_another_init_is_not(tmp_path, fast_settings):
    # GIVEN a fine-tuned run (run id derived from the cache key)
    store = _split_store(tmp_path)
    first_path = _save(tmp_path / "a.pt", _weights(seed=1))
    first, cached = run(fast_settings(store.uri, init=str(first_path), epochs=1))
    assert not cached
    # WHEN it runs again with the same weights THEN it is a cache hit
    again, cached = run(fast_settings(store.uri, init=str(first_path), epochs=1))
    assert cached and again.content_sha256 == first.content_sha256
    # WHEN the file at the same path now holds other weights THEN that is another run, trained
    _save(first_path, _weights(seed=2))
    other, cached = run(fast_settings(store.uri, init=str(first_path), epochs=1))
    assert not cached and other.prefix != first.prefix
    assert other.params["init"]["sha256"] == sha256_file(first_path) != first.params["init"]["sha256"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "absent.pt", r"--init '.*absent\.pt': no such file or folder; give a \.pt/\.pth state dict"),
        (lambda d: d, "a folder, but not a MONAI bundle with models/model.pt or models/model.ts"),
        (lambda d: (d / "junk.pt").write_bytes(b"not weights") and d / "junk.pt", r"cannot load .*junk\.pt"),
        (
            lambda d: _save(d / "c3.pt", _weights(in_channels=3)),
            r"tensor '0\.0\.weight' is \(16, 3, 3, 3\) there and \(16, 1, 3, 3\) in --model small-cnn with 1 "
            r"channel\(s\), 2 outputs, 2-D; use weights of the same network and input channels, or drop --init",
        ),
        (lambda d: _save(d / "r18.pt", _weights(model="resnet18")), r"tensor 'bn1\.bias' is not in --model small-cnn"),
        (lambda d: _save(d / "list.pt", [1, 2]), "holds no state dict"),
    ],
    ids=["missing", "not-a-bundle", "junk", "other-channels", "other-network", "no-state-dict"],
)
def test_bad_init_exits_2_with_one_line_naming_it_and_seals_nothing(tmp_path, capsys, make, match):
    store = _split_store(tmp_path)
    (tmp_path / "init").mkdir()
    given = make(tmp_path / "init")
    argv = ["--store", store.uri, "--dataset", "tiny", "--run-id", "r", "--cache-dir", str(tmp_path / "c"), *FAST]
    assert main([*argv, "--init", str(given), "--log-format", "text"]) == 2
    line = _last_line(capsys)
    assert line.startswith("irmsia-train: error: --init ")
    assert __import__("re").search(match, line), line
    assert not store.exists("runs/r/_SUCCESS.json")


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--freeze", "backbone"], "--freeze: fine-tuning needs --init weights"),
        (["--backbone-lr-scale", "0.1"], "--backbone-lr-scale: fine-tuning needs --init weights"),
        (["--init", "x.pt", "--freeze-epochs", "2"], "--freeze-epochs 2: needs --freeze backbone"),
        (["--init", "registry:Bad_Name"], "is not a DNS-1123 label"),
        (["--init", "registry:m:1:2"], "use registry:NAME or registry:NAME:VERSION"),
    ],
)
def test_fine_tuning_flags_are_checked_when_parsed(tmp_path, capsys, flags, match):
    argv = ["--store", str(tmp_path / "s"), "--dataset", "tiny", *FAST, *flags, "--log-format", "text"]
    assert main(argv) == 2
    assert match in _last_line(capsys)


def test_network_head_names_the_classifier_layer():
    assert network_head("small-cnn") == ("7",)
    with pytest.raises(UsageError, match="not a known network"):
        network_head("vgg")


@pytest.mark.slow
def test_fine_tuning_from_a_registered_version_is_in_the_lineage_of_the_model_it_becomes(store_uri, tmp_path,
                                                                                        fast_settings):  # fmt: skip
    # GIVEN a registered small-cnn (v1 of "base") and a split to fine-tune it on
    store = open_store(store_uri)
    write_split(store, "tiny")
    seal_run(store, "base-run", seed=5)
    assert register(store, "--run", "base-run", "--model-name", "base") == 0
    base_meta = json.loads(store.get_bytes("registry/base/1/configs/metadata.json"))
    base_sha = base_meta["irmsia"]["model_files"]["models/model.pt"]
    # WHEN the train stage starts from registry:base:1 with a scaled backbone rate
    settings = fast_settings(store_uri, run_id="tuned-run", init="registry:base:1", backbone_lr_scale=0.1, epochs=1)
    manifest, cached = run(settings)
    # THEN it trained from the registered weights: the same tensors the registry serves, one step away
    assert not cached
    record = {"kind": "registry", "source": "registry:base:1", "sha256": base_sha, "model_name": "base",
              "version": 1, "run_id": "base-run", "network": "small-cnn"}  # fmt: skip
    assert manifest.params["init"] == record
    history = json.loads(store.get_bytes("runs/tuned-run/history.json"))
    assert history[0]["backbone_lr"] == pytest.approx(0.1 * history[0]["lr"])
    # AND registering the fine-tuned run gives a model whose lineage and card say what it started from
    assert register(store, "--run", "tuned-run", "--model-name", "tuned") == 0
    meta = json.loads(store.get_bytes("registry/tuned/1/configs/metadata.json"))
    assert meta["irmsia"]["lineage"]["init"] == record
    assert meta["irmsia"]["run_config"]["init"] == {**record, "reinitialised": []}
    card = store.get_bytes("registry/tuned/1/docs/README.md").decode()
    assert f"- fine-tuned from registered model `base` v1 (run `base-run`), SHA-256 `{base_sha}`" in card
    # AND a registry reference to another network is refused before anything is trained
    with pytest.raises(UsageError, match=r"--init 'registry:base' is a small-cnn; use --model small-cnn"):
        run(fast_settings(store_uri, run_id="x", init="registry:base", model="resnet18"))


def test_freezing_a_segmenter_leaves_only_its_output_layer_trainable_and_its_norms_in_eval_mode():
    from jobs.train.finetune import Finetuning

    # GIVEN a small UNet, backbone frozen for its first epoch
    net = build_network("small-unet", 1, 3)
    tuning = Finetuning(head=network_head("small-unet"), freeze="backbone", freeze_epochs=1)
    # WHEN epoch 1 starts THEN only the outermost up layer takes gradients, and no backbone norm is training
    net.train()
    tuning.apply(net, 1)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.2.") for n in trainable)
    norms = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)}
    assert norms and not any(m.training for n, m in norms.items() if not n.startswith("model.2."))
    # WHEN epoch 2 starts THEN everything trains again
    net.train()
    tuning.apply(net, 2)
    assert all(p.requires_grad for p in net.parameters())


def test_an_init_from_a_model_nobody_registered_exits_3_saying_so(tmp_path, capsys):
    store = _split_store(tmp_path)
    argv = ["--store", store.uri, "--dataset", "tiny", "--run-id", "r", "--cache-dir", str(tmp_path / "c"), *FAST]
    assert main([*argv, "--init", "registry:nobody:2", "--log-format", "text"]) == 3
    assert "no registered versions of 'nobody'" in _last_line(capsys)
    assert not store.exists("runs/r/_SUCCESS.json")
