"""The ``irmsia`` command's one-line error: redacted like every stage's (URL credentials never printed), with usage
hints such as ``key=value`` left as written."""

from __future__ import annotations

import socket

import pytest

from pipeline.cli import main
from tests.support.argo_schema import REPO_ROOT

CONFIG = str(REPO_ROOT / "irmsia.yaml")
SECRET = "cli-S3cret-never-printed"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("server", "params", "code", "shown", "hidden"),
    [
        # an unreachable server whose URL carries a password: the error names the server, not the password
        (f"http://admin:{SECRET}@127.0.0.1:{{port}}", ["dataset=demo"], 75, "http://127.0.0.1:{port}", SECRET),
        (f"http://{SECRET}@127.0.0.1:{{port}}", ["dataset=demo"], 75, "http://127.0.0.1:{port}", SECRET),
        # a usage hint that merely looks like a field is printed as it is
        ("http://127.0.0.1:{port}", ["bad"], 2, "-p 'bad': use key=value, e.g. -p epochs=5", "***"),
    ],
    ids=["user-password", "bare-token", "usage-hint"],
)
def test_cli_error_line_is_redacted_but_keeps_hints(capsys, server, params, code, shown, hidden):
    # GIVEN an Argo Server address where nothing listens
    port = _closed_port()
    argv = ["submit", "--argo-server", server.format(port=port), "--config", CONFIG]
    for p in params:
        argv += ["-p", p]
    # WHEN a run is submitted
    assert main(argv) == code
    # THEN the error is one line that says what happened, without the secret
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("irmsia submit: error: ")
    assert shown.format(port=port) in line and hidden not in line
