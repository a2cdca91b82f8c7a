"""``irmsia menu``: the seed's interactive menu as a full-screen Textual app over the Python API.

Tabs (keys 1-6, or F1-F6 while typing; ctrl+q quits): **Collect** (demo, local folder, URL, TCIA, Kaggle,
NIH), **Datasets** (scan and index, split, statistics, merge, export), **Train** (the training options, live
epoch progress and logs; register the run), **Models** (versions and aliases; show, promote), **Status** (what
the store holds; why a stage would rerun), **Docs** (the recommended datasets with their commands, the quick
start). Every action runs the stage's own process through ``pipeline.api`` (``mode="process"``), exactly as
``irmsia run`` would, against any store; its log lines and progress bar show below the tabs while it runs. One
action runs at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Markdown,
    ProgressBar,
    RichLog,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from jobs.core.errors import IrmsiaError
from jobs.core.store import DEFAULT_STORE, open_store
from jobs.stages import STAGES
from pipeline.api import DatasetManager, TrainingPipeline, register
from pipeline.api.collectors import dataset_name_for
from pipeline.api.models import promote, show_model
from pipeline.explain import explain
from pipeline.menu.activity import MenuObserver, parse_options
from pipeline.secret_args import set_arguments
from pipeline.status import store_status
from pipeline.values import resolve_values

SOURCES = ("demo", "local", "url", "tcia", "kaggle", "nih")
REFERENCE = {"demo": None, "local": "path", "url": "url", "tcia": "collection", "kaggle": "ref", "nih": "path"}
"""The option each source's main field fills (the demo needs none)."""
QUICK_START = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
TABS = ("collect", "datasets", "train", "models", "status", "docs")


def _field(label: str, widget: Any) -> Horizontal:
    return Horizontal(Label(label, classes="label"), widget, classes="field")


class MenuApp(App[int]):
    """The operator menu of one store."""

    TITLE = "IRMSIA Pipeline"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    .field { height: 3; }
    .label { width: 18; padding: 1 1 0 0; }
    .field Input, .field Select { width: 1fr; }
    .buttons { height: 3; }
    .buttons Button { margin-right: 1; }
    #activity { height: 14; border-top: solid $accent; }
    #progress-row { height: 1; }
    #progress-label { width: 40; }
    #log { height: 1fr; }
    #model-record, #status-text, #stats-text, #explain-text { height: auto; }
    """
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        # 1-6 where no text field has the focus; F1-F6 anywhere
        *(Binding(str(i), f"tab('{name}')", name.capitalize()) for i, name in enumerate(TABS, 1)),
        *(
            Binding(f"f{i}", f"tab('{name}')", name.capitalize(), show=False, priority=True)
            for i, name in enumerate(TABS, 1)
        ),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, store: str | None = None) -> None:
        super().__init__()
        self.store_uri = open_store(store or DEFAULT_STORE).uri
        self.busy = False
        self.last_run_id = ""
        self.results: list[Any] = []
        """Every result an action returned, oldest first (a typed ``pipeline.api`` result, or an error)."""

    # -- layout --------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"store: {self.store_uri}", id="store")
        with TabbedContent(id="tabs", initial="collect"):
            with TabPane("1 Collect", id="collect"), VerticalScroll():
                yield _field("source", Select([(s, s) for s in SOURCES], value="demo", allow_blank=False,
                                              id="collect-source"))  # fmt: skip
                yield _field("dataset", Input("demo", id="collect-dataset"))
                yield _field("reference", Input(placeholder="TCIA collection, Kaggle owner/slug, folder or URL",
                                                id="collect-ref"))  # fmt: skip
                yield _field("options", Input(placeholder="e.g. patients=12 | max_patients=10 modality=CT",
                                              id="collect-options"))  # fmt: skip
                yield Horizontal(Button("Collect", id="collect-run", variant="primary"), classes="buttons")
            with TabPane("2 Datasets", id="datasets"), VerticalScroll():
                yield DataTable(id="datasets-table")
                yield _field("dataset", Input("demo", id="dataset-name"))
                yield _field("options", Input(placeholder="index: layout=folder labels=x.csv | split: seed=7",
                                              id="dataset-options"))  # fmt: skip
                yield _field("ratios", Input("0.7,0.15,0.15", id="split-ratios"))
                yield _field("merge", Input(placeholder="datasets to merge into the dataset, e.g. a,b",
                                            id="merge-names"))  # fmt: skip
                yield _field("export to", Input(placeholder="a local folder", id="export-folder"))
                yield Horizontal(
                    Button("Scan & index", id="index-run", variant="primary"),
                    Button("Split", id="split-run"),
                    Button("Merge", id="merge-run"),
                    Button("Statistics", id="stats-run"),
                    Button("Export", id="export-run"),
                    classes="buttons",
                )
                yield Static(id="stats-text")
            with TabPane("3 Train", id="train"), VerticalScroll():
                yield _field("dataset", Input("demo", id="train-dataset"))
                yield _field("model", Input("densenet121", id="train-model"))
                yield _field("epochs", Input("10", id="train-epochs"))
                yield _field("image size", Input("224", id="train-image-size"))
                yield _field("batch size", Input("32", id="train-batch-size"))
                yield _field("options", Input(placeholder="e.g. lr=0.001 patience=3 device=cpu",
                                              id="train-options"))  # fmt: skip
                yield _field("model name", Input("demo-classifier", id="register-name"))
                yield Horizontal(
                    Button("Train", id="train-run", variant="primary"),
                    Button("Register last run", id="register-run"),
                    classes="buttons",
                )
            with TabPane("4 Models", id="models"), VerticalScroll():
                yield DataTable(id="models-table")
                yield _field("model", Input("demo-classifier", id="model-name"))
                yield _field("version", Input("latest", id="model-version"))
                yield Horizontal(
                    Button("Show", id="model-show", variant="primary"),
                    Button("Promote to champion", id="model-promote"),
                    classes="buttons",
                )
                yield Static(id="model-record")
            with TabPane("5 Status", id="status"), VerticalScroll():
                yield Static(id="status-text")
                yield _field("explain", Select([(s.name, s.name) for s in STAGES], value="train", allow_blank=False,
                                               id="explain-stage"))  # fmt: skip
                yield _field("parameters", Input(placeholder="as irmsia run: dataset=demo epochs=5 (profile=demo)",
                                                 id="explain-parameters"))  # fmt: skip
                yield Horizontal(Button("Why would it rerun?", id="explain-run", variant="primary"), classes="buttons")
                yield Static(id="explain-text")
            with TabPane("6 Docs", id="docs"), VerticalScroll():
                yield DataTable(id="catalog-table")
                yield Markdown(self._quick_start(), id="quick-start")
        with Vertical(id="activity"):
            with Horizontal(id="progress-row"):
                yield Label("idle", id="progress-label")
                yield ProgressBar(id="progress", show_eta=True)
            yield RichLog(id="log", wrap=True, max_lines=2000)
        yield Footer()

    @staticmethod
    def _quick_start() -> str:
        if QUICK_START.is_file():
            return QUICK_START.read_text(encoding="utf-8")
        return "# Quick start\n\n`make demo`, then `irmsia status`. The guides are in the repository's `docs/`."

    def on_mount(self) -> None:
        self._fill_catalog()
        self.action_refresh()

    # -- tables --------------------------------------------------------------------------------------------
    def _fill_catalog(self) -> None:
        from jobs.collect.catalog import catalogue

        table = self.query_one("#catalog-table", DataTable)
        table.add_columns("name", "source", "modality", "task", "size", "licence", "access", "command")
        for e in catalogue():
            table.add_row(e.name, e.source, e.modality, e.task, e.size, e.license, e.access, e.command)

    def action_refresh(self) -> None:
        """Re-read the store: datasets, models, status."""
        try:
            status = store_status(open_store(self.store_uri), 10)
        except IrmsiaError as exc:
            self._write_log(f"cannot read {self.store_uri}: {exc}")
            return
        table = self.query_one("#datasets-table", DataTable)
        table.clear(columns=True)
        table.add_columns("dataset", "files", "rows", "collect", "index", "split")
        for d in status.datasets:
            marks = ["sealed" if s in d.sealed else "-" for s in ("collect", "index", "split")]
            table.add_row(d.name, str(d.files), str(d.rows if d.rows is not None else "-"), *marks)
        table = self.query_one("#models-table", DataTable)
        table.clear(columns=True)
        table.add_columns("model", "version", "aliases", "run", "metric", "value")
        for m in status.models:
            for v in m.versions:
                value = "-" if v["value"] is None else f"{v['value']:.4f}"
                table.add_row(m.name, str(v["version"]), ",".join(v["aliases"]) or "-", v["run_id"], v["metric"], value)
        lines = [f"{len(status.datasets)} datasets, {len(status.runs)} training runs, {len(status.models)} models"]
        lines += [f"  run {r.run_id}: {'sealed' if r.sealed else 'unfinished'} {r.metrics}" for r in status.runs]
        lines += [f"  pipeline run {p.workflow_id} at {p.started_at}: exit {p.exit_code}, "
                  + " ".join(f"{s.name}:{s.state}" for s in p.stages) for p in status.pipeline_runs]  # fmt: skip
        cache = status.cache
        lines.append(f"cache: {cache['hits']} hits, {cache['misses']} misses, {cache['failed']} failed")
        self.query_one("#status-text", Static).update("\n".join(lines))

    # -- navigation ----------------------------------------------------------------------------------------
    def action_tab(self, name: str) -> None:
        # drop the focus first: a focused widget left in the hidden pane would pull its tab back to the front
        self.set_focus(None)
        self.query_one("#tabs", TabbedContent).active = name

    # -- running actions -----------------------------------------------------------------------------------
    def _value(self, selector: str) -> str:
        widget = self.query_one(selector)
        return str(widget.value or "").strip()  # type: ignore[attr-defined]

    def _write_log(self, line: str) -> None:
        self.query_one("#log", RichLog).write(line)

    def _post(self, kind: str, stage: str, payload: Any) -> None:
        """From a worker thread: show a stage's activity on the app's thread."""
        self.call_from_thread(self._show, kind, stage, payload)

    def _show(self, kind: str, stage: str, payload: Any) -> None:
        label, bar = self.query_one("#progress-label", Label), self.query_one("#progress", ProgressBar)
        if kind == "started":
            label.update(f"{stage}: starting")
            bar.update(total=None, progress=0)
            self._write_log(f"==> {stage}: irmsia-{stage} {' '.join(set_arguments(payload))}")
        elif kind == "line":
            self._write_log(payload)
        elif kind == "progress":
            label.update(f"{stage}: {payload.get('desc', '')}"[:40])
            bar.update(total=payload.get("total"), progress=payload.get("done", 0))
        elif kind == "finished":
            state = "failed" if payload.exit_code else ("cached" if (payload.result or {}).get("cached") else "done")
            label.update(f"{stage}: {state} in {payload.duration_s:.1f}s")

    def _start(self, what: str, action: Callable[[MenuObserver], Any]) -> None:
        if self.busy:
            self.notify("an action is running; wait for it to finish", severity="warning")
            return
        self.busy = True
        self._write_log(f"--- {what}")
        self._run(what, action)

    @work(thread=True, exclusive=True)
    def _run(self, what: str, action: Callable[[MenuObserver], Any]) -> None:
        try:
            result = action(MenuObserver(self._post))
        except IrmsiaError as exc:
            result = exc
        self.call_from_thread(self._done, what, result)

    def _done(self, what: str, result: Any) -> None:
        self.busy = False
        self.results.append(result)
        if isinstance(result, Exception):
            self._write_log(f"!!! {what} failed: {result}")
            self.notify(f"{what} failed", severity="error")
        else:
            self._write_log(f"<<< {what}: {_describe(result)}")
        self.action_refresh()

    # -- the actions ---------------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        handler = getattr(self, f"_do_{(event.button.id or '').replace('-', '_')}", None)
        if handler is None:
            return
        try:
            handler()
        except IrmsiaError as exc:
            self._write_log(f"!!! {exc}")
            self.notify(str(exc), severity="error")

    def _datasets(self, observer: MenuObserver) -> DatasetManager:
        return DatasetManager(self.store_uri, mode="process", observer=observer)

    def _do_collect_run(self) -> None:
        source = self._value("#collect-source")
        options: dict[str, Any] = parse_options(self._value("#collect-options"))
        ref = self._value("#collect-ref")
        if (field := REFERENCE[source]) and ref:
            options[field] = ref
        dataset = self._value("#collect-dataset") or (dataset_name_for(ref) if ref else "")
        self._start(f"collect {source} into raw/{dataset}/",
                    lambda o: self._datasets(o).collect(source, dataset, **options))  # fmt: skip

    def _do_index_run(self) -> None:
        dataset = self._value("#dataset-name")
        options: dict[str, Any] = dict(parse_options(self._value("#dataset-options")))
        self._start(f"index {dataset}", lambda o: self._datasets(o).scan_directory(dataset, **options))

    def _do_split_run(self) -> None:
        dataset = self._value("#dataset-name")
        options: dict[str, Any] = dict(parse_options(self._value("#dataset-options")))
        ratios = tuple(float(r) for r in self._value("#split-ratios").split(",")) if self._value("#split-ratios") \
            else (0.7, 0.15, 0.15)  # fmt: skip
        options.setdefault("seed", "42")
        self._start(
            f"split {dataset}",
            lambda o: self._datasets(o).create_train_val_test_split(dataset, ratios=ratios, **options),
        )

    def _do_merge_run(self) -> None:
        into, names = self._value("#dataset-name"), [n for n in self._value("#merge-names").split(",") if n.strip()]
        self._start(f"merge {','.join(names)} into {into}",
                    lambda o: self._datasets(o).merge_datasets([n.strip() for n in names], into))  # fmt: skip

    def _do_stats_run(self) -> None:
        stats = DatasetManager(self.store_uri).get_dataset_statistics(self._value("#dataset-name"))
        text = (
            f"{stats.dataset}: {stats.images} images of {stats.patients} patients, {stats.quarantined} quarantined\n"
            f"classes {stats.classes}\nformats {stats.formats}  modalities {stats.modalities}"
        )
        if stats.splits:
            text += "\n" + "\n".join(f"{name}: {s['rows']} rows, {s['patients']} patients, {s['classes']}"
                                     for name, s in stats.splits["splits"].items())  # fmt: skip
        self.query_one("#stats-text", Static).update(text)
        self.results.append(stats)

    def _do_export_run(self) -> None:
        dataset, folder = self._value("#dataset-name"), self._value("#export-folder")
        if not folder:
            raise IrmsiaError("export: type a local folder to export into")
        files = DatasetManager(self.store_uri).export(dataset, folder)
        self._write_log(f"<<< exported {len(files)} files of splits/{dataset}/ into {folder}")
        self.results.append(files)

    def _do_train_run(self) -> None:
        dataset = self._value("#train-dataset")
        options: dict[str, Any] = {"model": self._value("#train-model"), "epochs": self._value("#train-epochs"),
                                   "image_size": self._value("#train-image-size"),
                                   "batch_size": self._value("#train-batch-size")}  # fmt: skip
        options.update(parse_options(self._value("#train-options")))

        def train(o: MenuObserver) -> Any:
            run = TrainingPipeline(dataset, self.store_uri, mode="process", observer=o, **options).train()
            self.last_run_id = run.run_id
            return run

        self._start(f"train on {dataset}", train)

    def _do_register_run(self) -> None:
        name = self._value("#register-name")
        if not self.last_run_id:
            raise IrmsiaError("register: train a run first (Train), then register it")
        run_id = self.last_run_id
        self._start(f"register {run_id} as {name}",
                    lambda o: register(self.store_uri, name, run_id, mode="process", observer=o))  # fmt: skip

    def _do_model_show(self) -> None:
        name, version = self._value("#model-name"), self._value("#model-version") or "latest"
        record = show_model(name, version, store=self.store_uri)
        summary = {k: record[k] for k in ("model_name", "version", "aliases")}
        summary["run_id"] = record["metadata"]["irmsia"]["run_id"]
        summary["metrics"] = {k: v for k, v in record["metadata"]["irmsia"]["metrics"].items()
                              if isinstance(v, int | float)}  # fmt: skip
        summary["files"] = sorted(record["files"])
        self.query_one("#model-record", Static).update(json.dumps(summary, indent=2))
        self.results.append(record)

    def _do_model_promote(self) -> None:
        name, version = self._value("#model-name"), self._value("#model-version")
        if not version.isdigit():
            raise IrmsiaError("promote: type the version number to promote")
        promote(name, int(version), "champion", store=self.store_uri)
        self._write_log(f"<<< {name} champion -> v{version}")
        self.action_refresh()

    def _do_explain_run(self) -> None:
        stage = self._value("#explain-stage")
        given: dict[str, str | None] = dict(parse_options(self._value("#explain-parameters")))
        profile = given.pop("profile", None)
        from pipeline.dag import PIPELINE

        values = resolve_values(PIPELINE, given, profile)
        lines = []
        for item in explain(stage, values, self.store_uri):
            lines.append(f"{item.stage} ({item.prefix}): {item.verdict}")
            lines += [f"  - {change}" for change in item.changes]
        self.query_one("#explain-text", Static).update("\n".join(lines))


def _describe(result: Any) -> str:
    prefix = getattr(result, "prefix", "")
    state = "cache hit" if getattr(result, "cached", False) else "sealed"
    summary = getattr(result, "summary", {}) or {}
    shown = {k: v for k, v in summary.items() if isinstance(v, int | float | str) and k != "license"}
    return f"{state} {prefix} {shown}"
