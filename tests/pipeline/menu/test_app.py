"""``irmsia menu`` driven by keystrokes and clicks (Textual's pilot) through a whole demo workflow, against a
file store and a real S3 store: collect demo -> index -> split -> statistics -> train one epoch -> register ->
view the model. Every action runs the stage's own process, as ``irmsia run`` does."""

from __future__ import annotations

import asyncio
import time

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from pipeline.api.results import CollectResult, IndexResult, Registration, SplitResult, TrainResult
from pipeline.menu.app import MenuApp

pytestmark = pytest.mark.slow
SIZE = (160, 60)


async def _until_idle(app: MenuApp, pilot, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    await pilot.pause()
    while app.busy:
        assert time.monotonic() < deadline, "the menu's action did not finish"
        await pilot.pause(0.2)


async def _tab(pilot, key: str) -> None:
    """Switch tabs and let the new pane lay out before clicking into it."""
    await pilot.press(key)
    await pilot.pause()


async def _type(pilot, selector: str, text: str) -> None:
    """Click a text field, clear it and type ``text`` key by key."""
    await pilot.click(selector)
    await pilot.press("end", "ctrl+u", *text)


def _log_text(app: MenuApp) -> str:
    return "\n".join(line.text for line in app.query_one("#log").lines)


async def _demo_workflow(store_uri: str) -> MenuApp:
    app = MenuApp(store=store_uri)
    async with app.run_test(size=SIZE) as pilot:
        # GIVEN the menu on an empty store, on the Collect tab with the demo source chosen
        await _tab(pilot, "f1")
        await _type(pilot, "#collect-options", "patients=12")
        # WHEN each step of the demo is clicked in turn
        await pilot.click("#collect-run")
        await _until_idle(app, pilot)
        await _tab(pilot, "f2")
        await pilot.click("#index-run")
        await _until_idle(app, pilot)
        await pilot.click("#split-run")
        await _until_idle(app, pilot)
        await pilot.click("#stats-run")
        await _tab(pilot, "f3")
        await _type(pilot, "#train-model", "small-cnn")
        await _type(pilot, "#train-epochs", "1")
        await _type(pilot, "#train-image-size", "32")
        await _type(pilot, "#train-batch-size", "8")
        await _type(pilot, "#train-options", "device=cpu")
        await _type(pilot, "#register-name", "demo-model")
        await pilot.click("#train-run")
        await _until_idle(app, pilot)
        await pilot.click("#register-run")
        await _until_idle(app, pilot)
        await _tab(pilot, "f4")
        await _type(pilot, "#model-name", "demo-model")
        await pilot.click("#model-show")
        await pilot.pause()
        app.shown_record = str(app.query_one("#model-record").render())
        app.shown_stats = str(app.query_one("#stats-text").render())
        app.shown_models = app.query_one("#models-table").row_count
        app.shown_log = _log_text(app)
        await pilot.press("q")
    return app


def test_the_whole_demo_workflow_from_the_menu(tmp_path):
    store_uri = str(tmp_path / "store")
    app = asyncio.run(_demo_workflow(store_uri))
    # THEN every action returned the stage's typed result, none failed
    kinds = [type(r) for r in app.results]
    assert [k for k in kinds if issubclass(k, Exception)] == [], app.shown_log
    assert kinds[:3] == [CollectResult, IndexResult, SplitResult]
    assert TrainResult in kinds and Registration in kinds, app.shown_log
    collect, index, split = app.results[:3]
    assert collect.files > 12 and index.rows > 0 and sum(split.rows.values()) == index.rows
    # AND the stages sealed their outputs in the store, as the CLI's stages would
    store = open_store(store_uri)
    for prefix in ("raw/demo/", "index/demo/", "splits/demo/"):
        assert read_manifest(store, prefix) is not None
    train = next(r for r in app.results if isinstance(r, TrainResult))
    assert read_manifest(store, f"runs/{train.run_id}/").summary["epochs_run"] == 1
    # AND the screens showed the statistics, the registered model and the stages' own log lines and progress
    assert f"{index.rows} images of 12 patients" in app.shown_stats
    assert '"version": 1' in app.shown_record and '"champion"' in app.shown_record
    assert train.run_id in app.shown_record and app.shown_models == 1
    for line in ("==> collect: irmsia-collect", "--source demo --dataset demo --patients 12", "==> index:",
                 "indexed ", "==> train:", "epoch 1/1", "<<< register"):  # fmt: skip
        assert line in app.shown_log, line


async def _collect_and_index(store_uri: str) -> MenuApp:
    app = MenuApp(store=store_uri)
    async with app.run_test(size=SIZE) as pilot:
        await _type(pilot, "#collect-dataset", "menu-s3")
        await _type(pilot, "#collect-options", "patients=4")
        await pilot.click("#collect-run")
        await _until_idle(app, pilot)
        await _tab(pilot, "f2")
        await _type(pilot, "#dataset-name", "menu-s3")
        await pilot.click("#index-run")
        await _until_idle(app, pilot)
        await pilot.press("r")
        app.shown_datasets = [app.query_one("#datasets-table").get_row_at(i)
                              for i in range(app.query_one("#datasets-table").row_count)]  # fmt: skip
    return app


@pytest.mark.integration
def test_the_menu_works_against_s3(s3_store_uri):
    # GIVEN the menu on an S3 store, WHEN the demo is collected and indexed
    app = asyncio.run(_collect_and_index(s3_store_uri))
    # THEN both stages sealed their output there and the Datasets table shows them
    assert [type(r) for r in app.results] == [CollectResult, IndexResult], app.results
    store = open_store(s3_store_uri)
    assert read_manifest(store, "index/menu-s3/") is not None
    (row,) = app.shown_datasets
    assert row[0] == "menu-s3" and row[3:] == ["sealed", "sealed", "-"]


async def _bad_option(store_uri: str) -> MenuApp:
    app = MenuApp(store=store_uri)
    async with app.run_test(size=SIZE) as pilot:
        await _type(pilot, "#collect-options", "patients=1")
        await pilot.click("#collect-run")
        await _until_idle(app, pilot)
        app.shown_log = _log_text(app)
    return app


def test_a_bad_option_is_the_stage_s_own_one_line_error(tmp_path):
    app = asyncio.run(_bad_option(str(tmp_path / "store")))
    # THEN nothing ran: the collect settings refused the value with the CLI's message
    assert "--patients 1: must be between 4 and 2000" in app.shown_log
    assert not (tmp_path / "store" / "raw").exists()
