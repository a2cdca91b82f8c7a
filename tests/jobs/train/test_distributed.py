"""Data-parallel training: two gloo processes on CPU train what one process trains, resume exactly, and only rank 0
writes.

The slow case runs the real entrypoint (``python -m jobs.train --nproc-per-node 2``, torch's elastic launcher) on
the demo dataset through the real collect -> index -> split. The rest checks the pieces without processes: the
ranks' batches, the evaluation shares, the followers' store and the batch-size rule.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.core.errors import UsageError
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.train.cache import ImageSet
from jobs.train.distributed import ReadOnlyStore, World, check_world, world_from_env
from jobs.train.loop import _epoch_seed, make_loader, pick_hardware
from jobs.train.settings import TrainSettings

REPO = Path(__file__).resolve().parents[3]
TIMING = {"images_per_s", "data_wait_fraction", "epoch_s"}


# -- the pieces -------------------------------------------------------------------------------------------------
def _image_set(n: int) -> ImageSet:
    return ImageSet(
        images=np.arange(n, dtype=np.float16).reshape(n, 1, 1, 1),
        labels=np.arange(n, dtype=np.int64) % 2,
        keys=tuple(f"i{k}" for k in range(n)),
    )


def _batches(loader, epoch: int, seed: int = 42) -> list[list[int]]:
    sampler = loader.sampler.sampler  # the loader's sampler yields batches; its own sampler the indices
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(_epoch_seed(seed, epoch, 1))
    return [sorted(int(v) for v in x.flatten().tolist()) for x, _ in loader]


@pytest.mark.parametrize(("n", "batch", "ranks"), [(27, 8, 2), (24, 8, 2), (30, 12, 4), (5, 8, 2)])
def test_the_ranks_batches_together_are_one_process_batches(n, batch, ranks):
    # GIVEN one process's shuffled batches of an epoch (the generator seeded as the trainer seeds it)
    hardware = pick_hardware("cpu", "off")
    generator = torch.Generator()
    single = make_loader(_image_set(n), batch, hardware=hardware, workers=0, generator=generator)
    for epoch in (1, 2):
        generator.manual_seed(_epoch_seed(42, epoch, 1))
        one = _batches(single, epoch)
        # WHEN each of several ranks draws its share of the same global batch size
        shares = [
            _batches(make_loader(_image_set(n), batch, hardware=hardware, workers=0, generator=torch.Generator(),
                                 world=World(rank=r, size=ranks)), epoch)
            for r in range(ranks)
        ]  # fmt: skip
        # THEN step i of all ranks together is exactly one process's step i: same images, same number of steps
        assert all(len(s) == len(one) for s in shares)
        if n > batch:  # (a set smaller than one batch is padded to split evenly: the only exception)
            assert [sorted(i for s in shares for i in s[step]) for step in range(len(one))] == one
            assert all(len(s[0]) == batch // ranks for s in shares)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("count", [0, 1, 5, 12, 13])
def test_evaluation_shares_cover_every_item_once_in_order(size, count):
    shares = [World(rank=r, size=size).share(count) for r in range(size)]
    assert [i for lo, hi in shares for i in range(lo, hi)] == list(range(count))


def test_the_followers_store_reads_and_refuses_every_write(tmp_path):
    store = open_store(str(tmp_path / "store"))
    store.put_bytes("runs/x/a.json", b"{}")
    follower = ReadOnlyStore(store)
    assert follower.get_bytes("runs/x/a.json") == b"{}" and follower.exists("runs/x/a.json")
    assert [o.key for o in follower.list("runs/")] == ["runs/x/a.json"]
    (tmp_path / "f").write_bytes(b"x")
    for write in (
        lambda: follower.put_bytes("runs/x/b.json", b"{}"),
        lambda: follower.put_file("runs/x/b.json", tmp_path / "f"),
        lambda: follower.move_file("runs/x/b.json", tmp_path / "f"),
        lambda: follower.put_if_absent("runs/x/b.json", b"{}"),
        lambda: follower.delete("runs/x/a.json"),
        lambda: follower.delete_prefix("runs/"),
        follower.sweep_scratch,
    ):
        with pytest.raises(RuntimeError, match="only rank 0 writes"):
            write()
    assert [o.key for o in store.list("runs/")] == ["runs/x/a.json"]


def test_the_global_batch_must_split_evenly_and_the_world_comes_from_torchrun():
    check_world(World(size=2), 8)
    with pytest.raises(UsageError, match=r"--batch-size 9: .* 2 training processes"):
        check_world(World(size=2), 9)
    assert world_from_env({}) == World()
    assert world_from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}) == World(rank=3, local_rank=1, size=4)
    with pytest.raises(UsageError, match="torchrun"):
        world_from_env({"WORLD_SIZE": "two"})


# -- the real thing ---------------------------------------------------------------------------------------------
def _demo_split(store_uri: str) -> None:
    from jobs.collect.__main__ import main as collect
    from jobs.index.__main__ import main as index
    from jobs.split.__main__ import main as split_main

    common = ["--store", store_uri, "--dataset", "demo", "--log-format", "text", "--log-level", "warning"]
    assert collect(["--source", "demo", "--patients", "12", *common]) == 0
    assert index(common) == 0
    assert split_main(common) == 0


def _train_argv(store_uri: str, cache: Path, run_id: str, nproc: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs.train", "--store", store_uri, "--dataset", "demo", "--run-id", run_id,
            "--model", "small-cnn", "--image-size", "32", "--epochs", "3", "--batch-size", "8", "--no-augment",
            "--bootstrap-resamples", "0", "--device", "cpu", "--workers", "0", "--cache-dir", str(cache),
            "--log-format", "text", "--nproc-per-node", str(nproc), *extra]  # fmt: skip


def _env(result_file: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "IRMSIA_RESULT_FILE": str(result_file)}


def _train(argv: list[str], result_file: Path) -> None:
    done = subprocess.run(argv, env=_env(result_file), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


def _history(store, run_id: str) -> list[dict]:
    return [
        {k: v for k, v in h.items() if k not in TIMING}
        for h in json.loads(store.get_bytes(f"runs/{run_id}/history.json"))
    ]


def _weights(store, key: str) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(store.get_bytes(key)), weights_only=True)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_resume_exactly_and_only_rank_0_writes(tmp_path):
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    _demo_split(store_uri)
    # GIVEN one process's run and the same run on two processes (global batch 8 = 4 per process)
    _train(_train_argv(store_uri, tmp_path / "cache-1", "one", 1), tmp_path / "one.json")
    _train(_train_argv(store_uri, tmp_path / "cache-2", "two", 2), tmp_path / "two.json")

    # THEN the two-process run sealed what a run seals, written by rank 0 alone: the store holds exactly the
    # manifest's outputs (a follower's store refuses writes, so one that tried would have failed the run), one
    # result file, and the decoded cache was built once (one entry, no leftovers of a second builder)
    manifest = read_manifest(store, "runs/two/")
    assert manifest is not None
    assert {o.key for o in store.list("runs/two/")} == {o.key for o in manifest.outputs} | {"runs/two/_SUCCESS.json"}
    result = json.loads((tmp_path / "two.json").read_text())
    assert result["exit_code"] == 0 and result["summary"]["run_id"] == "two"
    entries = list((tmp_path / "cache-2" / "tensors").iterdir())
    assert len(entries) == 1 and not list(entries[0].glob(".*.part"))
    # AND a rerun on two processes is a cache hit the followers hear of (they would wait forever otherwise)
    _train(_train_argv(store_uri, tmp_path / "cache-2", "two", 2), tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["cached"] is True and again["content_sha256"] == result["content_sha256"]

    # AND its metrics are one process's within the tolerance of what differs: small-cnn's BatchNorm normalises
    # over 4 instead of 8 images, and dropout draws per-rank streams (the batches, steps, schedule and averaged
    # gradients are the same: see the batch test above). On this data that moved the per-epoch losses by up to
    # 0.09 (train, on 24 images) and 0.04 (val), from ln 2 = 0.69 at the start: losses within 0.15 / 0.10;
    # accuracies within one val/test image.
    one, two = _history(store, "one"), _history(store, "two")
    assert [h["epoch"] for h in one] == [h["epoch"] for h in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9)  # the same steps under the same schedule
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.15)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=0.10)
    metrics = {r: json.loads(store.get_bytes(f"runs/{r}/metrics.json")) for r in ("one", "two")}
    val_n, test_n = (metrics["one"]["details"][split]["n"] for split in ("val", "test"))
    assert abs(metrics["two"]["val_accuracy"] - metrics["one"]["val_accuracy"]) <= 1 / val_n + 1e-9
    assert abs(metrics["two"]["test_accuracy"] - metrics["one"]["test_accuracy"]) <= 1 / test_n + 1e-9
    # (each split scored once: the gathered shares are the whole split, not a rank's half or a padded set)
    for split, n in (("val", val_n), ("test", test_n)):
        assert metrics["two"]["details"][split]["n"] == n
        assert sum(map(sum, metrics["two"]["details"][split]["confusion_matrix"])) == n

    # WHEN the two-process run is killed once its first checkpoint is in the store, and resumed on two processes
    argv = _train_argv(store_uri, tmp_path / "cache-3", "killed", 2)
    proc = subprocess.Popen(argv, env=_env(tmp_path / "killed.json"), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 600
    while not store.exists("runs/killed/checkpoints/last.pt"):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the pod is gone: launcher and both workers at once
    proc.wait()
    epoch = torch.load(io.BytesIO(store.get_bytes("runs/killed/checkpoints/last.pt")), weights_only=True)["epoch"]
    assert epoch < 3 and read_manifest(store, "runs/killed/") is None
    _train([*argv, "--resume"], tmp_path / "killed.json")

    # THEN weights, history and metrics equal the uninterrupted two-process run's, exactly
    for name in ("last_model.pt", "best_model.pt"):
        whole, resumed = _weights(store, f"runs/two/{name}"), _weights(store, f"runs/killed/{name}")
        assert whole.keys() == resumed.keys()
        assert all(torch.equal(resumed[k], whole[k]) for k in whole), name
    assert _history(store, "killed") == _history(store, "two")
    killed = json.loads(store.get_bytes("runs/killed/metrics.json"))
    assert killed == metrics["two"]


def test_sealed_only_reports_the_sealed_run_and_never_trains(tmp_path, fast_settings):
    from jobs.core.errors import DataError
    from jobs.train.stage import run
    from tests.support.synthetic_split import write_split

    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    write_split(store, "tiny")
    # GIVEN no sealed run: the step after a PyTorchJob that did not finish fails, and trains nothing
    with pytest.raises(DataError, match=r"--sealed-only: .*runs/r/ is not sealed"):
        run(fast_settings(store_uri, run_id="r", epochs=1, sealed_only=True))
    assert not list(store.list("runs/"))
    # WHEN the run is sealed (by the job), THEN the step reports it as the cache hit it is
    sealed, _ = run(fast_settings(store_uri, run_id="r", epochs=1))
    manifest, cached = run(fast_settings(store_uri, run_id="r", epochs=1, sealed_only=True))
    assert cached and manifest.content_sha256 == sealed.content_sha256


def test_a_global_batch_that_does_not_split_is_refused_before_any_process_starts():
    with pytest.raises(UsageError, match=r"--batch-size 10: .*--nproc-per-node 4"):
        TrainSettings.parse(["--dataset", "d", "--batch-size", "10", "--nproc-per-node", "4"], {})
    assert (
        TrainSettings.parse(["--dataset", "d", "--batch-size", "12", "--nproc-per-node", "4"], {}).nproc_per_node == 4
    )


@pytest.mark.slow
def test_a_failure_in_the_processes_is_the_launchers_exit_code_and_rank_0_reports_it(tmp_path):
    # GIVEN a store without the split: every rank's plan fails with a data error
    done = subprocess.run(
        _train_argv(str(tmp_path / "store"), tmp_path / "cache", "r", 2),
        env=_env(tmp_path / "result.json"), capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    # THEN the launcher exits with the stage's code for bad data, and rank 0's result file names the error
    assert done.returncode == 3, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["exit_code"] == 3 and "splits/demo/" in result["error"]


@pytest.mark.slow
def test_two_processes_fine_tune_through_the_unfreezing_like_one(tmp_path):
    from jobs.ml.networks import build_network, network_head

    # GIVEN the demo split and weights to start from, the backbone frozen for epoch 1 of 2, then trained
    store_uri = str(tmp_path / "store")
    store = open_store(store_uri)
    _demo_split(store_uri)
    torch.manual_seed(7)
    init = build_network("small-cnn", 1, 2).state_dict()
    torch.save(init, tmp_path / "w.pt")
    finetune = ("--init", str(tmp_path / "w.pt"), "--freeze", "backbone", "--freeze-epochs", "1", "--epochs", "2")
    # WHEN one process and two processes fine-tune (DistributedDataParallel's reduced parameters change in epoch 2)
    for run_id, nproc in (("one", 1), ("two", 2)):
        _train(_train_argv(store_uri, tmp_path / f"cache-{nproc}", run_id, nproc, *finetune), tmp_path / "r.json")
    # THEN both got through the unfreezing (DistributedDataParallel wrapped over the head alone fails at the first
    # backbone gradient; wrapped over everything, at the first frozen step) and trained the backbone in epoch 2, the
    # two processes by as much as one process (averaged gradients of the same images; BatchNorm over half the batch)
    head = network_head("small-cnn")
    one, two = (_weights(store, f"runs/{r}/last_model.pt") for r in ("one", "two"))
    backbone = [k for k in init if k.endswith("weight") and not k.startswith(head)]
    assert backbone
    for k in backbone:
        moved_one, moved_two = (one[k] - init[k]).norm(), (two[k] - init[k]).norm()
        assert moved_one > 0 and 0.5 < moved_two / moved_one < 2, k
    for a, b in zip(_history(store, "one"), _history(store, "two"), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.15)
