"""What the local runner hands a stage process: never a credential on its command line, never code from the
current folder. Real stage processes (``irmsia-collect``), a real HTTP server on loopback."""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass, field

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from pipeline.dag import PIPELINE, Pipeline
from pipeline.docker_executor import DockerExecutor
from pipeline.runner import ProcessExecutor, run_pipeline
from tests.jobs.collect.conftest import make_zip
from tests.support.http_server import FaultyHttpServer

PASSWORD = "runner-Pa55-never-on-argv"
COLLECT_ONLY = Pipeline(name="collect-only", parameters=PIPELINE.parameters, stages=(PIPELINE.stage("collect"),))


@dataclass(frozen=True)
class RecordingExecutor(ProcessExecutor):
    """The process executor, keeping every command line it builds (exactly what ``subprocess`` executes)."""

    commands: list[list[str]] = field(default_factory=list)

    def command(self, stage, argv):
        cmd = super().command(stage, argv)
        self.commands.append(cmd)
        return cmd


@pytest.fixture
def server():
    with FaultyHttpServer() as s:
        yield s


def test_a_url_with_a_password_reaches_the_stage_by_environment_only(tmp_path, server):
    # GIVEN a private archive, served only with the password
    server.add_file("/p/set.zip", make_zip({"a/x.png": b"\x89PNG x" * 20}))
    expected = "Basic " + base64.b64encode(f"reader:{PASSWORD}".encode()).decode()
    server.routes["/p/set.zip"] = lambda h, q, b: (
        h.headers.get("Authorization") != expected and (h.send_body(401, b"no", "text/plain") or True)
    )
    url = server.base.replace("http://", f"http://reader:{PASSWORD}@") + "/p/set.zip"
    values = {**PIPELINE.defaults(), "source": "url", "dataset": "priv", "url": url}
    store = str(tmp_path / "store")
    executor, shown = RecordingExecutor(), []
    # WHEN the runner runs collect with it
    (outcome,) = run_pipeline(COLLECT_ONLY, values, store=store, executor=executor,
                              on_stage=lambda stage, argv: shown.append(argv))  # fmt: skip
    # THEN the stage downloaded it (the password reached it) ...
    assert outcome.exit_code == 0
    assert read_manifest(open_store(store), "raw/priv/").summary["url"] == server.url("/p/set.zip")
    # ... while neither its command line nor what the runner printed held the password
    (command,) = executor.commands
    assert not any(PASSWORD in arg for arg in command)
    assert command[command.index("--url") + 1] == ""
    (printed,) = shown
    assert printed[printed.index("--url") + 1] == server.url("/p/set.zip")
    assert PASSWORD not in json.dumps(outcome.result)


@dataclass(kw_only=True)
class DockerCommandRecorder(DockerExecutor):
    """The docker executor with no engine behind it: keeps the ``docker run`` command the runner would execute and
    runs a no-op instead."""

    commands: list[list[str]] = field(default_factory=list)

    def command(self, stage, argv):
        self.commands.append(super().command(stage, argv))
        return [sys.executable, "-c", "pass"]


def test_the_docker_executor_forwards_the_url_by_name(tmp_path):
    # GIVEN a URL with a password, run through the docker executor
    url = f"https://u:{PASSWORD}@host.example/x.zip"
    values = {**PIPELINE.defaults(), "source": "url", "dataset": "priv", "url": url}
    executor = DockerCommandRecorder(docker="docker")
    # WHEN the runner prepares the collect container
    run_pipeline(COLLECT_ONLY, values, store="s3://bucket/p", executor=executor)
    # THEN the URL travels only in the environment docker copies by name, never on its command line
    (cmd,) = executor.commands
    assert not any(PASSWORD in arg for arg in cmd)
    assert "IRMSIA_URL" in [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--env"]
    assert cmd[cmd.index("--url") + 1] == ""


TRAP = """\
# A booby trap: a file named like a module the stage imports, in the folder the runner is started from.
import importlib.util, pathlib, sys, sysconfig
pathlib.Path({marker!r}).write_text("imported " + __name__ + " from the current folder")
_real_file = pathlib.Path(sysconfig.get_paths()["stdlib"], __name__ + ".py")
_spec = importlib.util.spec_from_file_location(__name__, _real_file)
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
sys.modules[__name__] = _real  # the stage then works as usual, so only the marker tells
"""


@pytest.mark.parametrize("module", ["argparse", "secrets"])
def test_stages_never_import_from_the_current_folder(tmp_path, monkeypatch, module):
    # GIVEN a folder holding a file named like a standard module, as the current folder of `irmsia run`
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "trap-sprung"
    (cwd / f"{module}.py").write_text(TRAP.format(marker=str(marker)))
    data = tmp_path / "data"
    (data / "NORMAL").mkdir(parents=True)
    (data / "NORMAL" / "a.png").write_bytes(b"\x89PNG a")
    monkeypatch.chdir(cwd)
    values = {**PIPELINE.defaults(), "source": "local", "dataset": "d", "path": str(data)}
    # WHEN the runner runs a stage from there (collect imports argparse whatever the source; the demo source's
    # dependencies import secrets)
    if module == "secrets":
        values = {**PIPELINE.defaults(), "source": "demo", "dataset": "demo"}
    (outcome,) = run_pipeline(COLLECT_ONLY, values, store=str(tmp_path / "store"),
                              executor=ProcessExecutor(python=sys.executable))  # fmt: skip
    # THEN the stage ran with the real module and never executed the file in the current folder
    assert outcome.exit_code == 0
    assert not marker.exists(), marker.read_text()
