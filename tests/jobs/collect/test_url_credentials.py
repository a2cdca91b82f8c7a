"""``--source url`` with credentials in the URL: they authenticate the request and are kept nowhere else (not in
the store's object names or contents, the manifest, the logs, the result file or the summary)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from jobs.core.urls import URL_ENV
from tests.jobs.collect.conftest import make_zip

MEMBERS = {"xray/NORMAL/n1.png": b"\x89PNG normal" * 50, "LICENSE": b"CC0-1.0\n"}
PASSWORD = "Pa55w0rd-never-stored"
TOKEN = "tok3n-never-stored"


def _require_basic_auth(server, path: str, user: str, password: str) -> None:
    """Serve ``path`` only to requests carrying ``user:password`` as HTTP Basic auth (401 otherwise)."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def route(handler, query, body) -> bool:
        if handler.headers.get("Authorization") == expected:
            return False  # fall through to the file
        handler.send_body(401, b"authentication required", "text/plain")
        return True

    server.routes[path] = route


def _everything_stored(root) -> list[str]:
    """Every name (relative path) and every file's bytes under a folder store, as text, hidden folders included."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            found.append(os.path.relpath(path, root))
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    found.append(fh.read().decode("utf-8", errors="replace"))
    return found


@pytest.mark.parametrize(
    ("userinfo", "query", "user", "password"),
    [
        (f"reader:{PASSWORD}@", "", "reader", PASSWORD),
        (f"{TOKEN}@", "", TOKEN, ""),  # a bare token as the user name, as GitHub and others take it
        (f"reader:{PASSWORD}@", f"?token={TOKEN}&v=2", "reader", PASSWORD),
    ],
    ids=["user-password", "bare-token", "password-and-query-token"],
)
@pytest.mark.parametrize(("log_format", "server_checks"), [("json", True), ("text", True), ("json", False)])
def test_credentials_authenticate_and_are_kept_nowhere(tmp_path, http_server, monkeypatch, capsys, userinfo, query,
                                                       user, password, log_format, server_checks):  # fmt: skip
    # GIVEN an archive that the server hands out only with the right credentials (or to anyone)
    http_server.add_file("/private/set.zip", make_zip(MEMBERS))
    if server_checks:
        _require_basic_auth(http_server, "/private/set.zip", user, password)
    url = http_server.base.replace("http://", f"http://{userinfo}") + "/private/set.zip" + query
    store = tmp_path / "store"
    result = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    # WHEN it is collected, twice (the second run is a cache hit)
    argv = ["--source", "url", "--dataset", "priv", "--url", url, "--store", str(store), "--log-format", log_format]
    assert main(argv) == 0
    assert main(argv) == 0
    # THEN the credentials opened the file: every member is stored byte for byte
    manifest = read_manifest(open_store(str(store)), "raw/priv/")
    for name, data in MEMBERS.items():
        assert open_store(str(store)).get_bytes(f"raw/priv/{name}") == data
    assert json.loads(result.read_text())["cached"] is True
    # AND no secret is in any object name or content (records, manifest), the logs or the result file
    secrets = [s for s in (PASSWORD, TOKEN) if s in url]
    logs = capsys.readouterr()
    for text in [*_everything_stored(store), logs.err, logs.out, result.read_text()]:
        assert not any(s in text for s in secrets), text[:300]
    # AND the summary shows the public URL, and the identity distinguishes these credentials without revealing them
    assert manifest.summary["url"] == http_server.url("/private/set.zip") + query.replace(TOKEN, "***")
    assert manifest.params["url"].startswith(manifest.summary["url"] + "#credentials-scrypt:")


def test_other_credentials_are_another_identity(tmp_path, http_server, capsys):
    # GIVEN a server that accepts two users for the same file
    http_server.add_file("/set.zip", make_zip(MEMBERS))
    store = str(tmp_path / "store")

    def url(user: str) -> str:
        return http_server.base.replace("http://", f"http://{user}:{PASSWORD}@") + "/set.zip"

    def collect(u: str) -> dict:
        assert main(["--source", "url", "--dataset", "d", "--url", u, "--store", store, "--log-format", "json"]) == 0
        return read_manifest(open_store(store), "raw/d/").params

    # WHEN it is collected as one user and then as the other
    first, second = collect(url("alice")), collect(url("bob"))
    # THEN the URLs share their public form but not their identity (the second run is no cache hit of the first)
    assert first["url"].split("#")[0] == second["url"].split("#")[0] == http_server.url("/set.zip")
    assert first["url"] != second["url"]
    assert PASSWORD not in capsys.readouterr().err


def test_url_is_read_from_the_environment_when_the_flag_is_empty(tmp_path, http_server, monkeypatch):
    # GIVEN the URL (with a password) in IRMSIA_URL, as the local runner passes it, and an empty --url
    data = make_zip(MEMBERS)
    http_server.add_file("/env.zip", data)
    _require_basic_auth(http_server, "/env.zip", "reader", PASSWORD)
    monkeypatch.setenv(URL_ENV, http_server.base.replace("http://", f"http://reader:{PASSWORD}@") + "/env.zip")
    store = str(tmp_path / "store")
    # WHEN the stage runs
    code = main(["--source", "url", "--dataset", "d", "--url", "", "--store", store, "--log-format", "json"])
    # THEN it downloaded that URL, authenticated
    assert code == 0
    manifest = read_manifest(open_store(store), "raw/d/")
    assert manifest.summary["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_bad_url_is_reported_without_its_password(tmp_path, capsys):
    # WHEN the URL has a password but the wrong scheme
    code = main(["--source", "url", "--dataset", "d", "--url", f"ftp://u:{PASSWORD}@host/x.zip",
                 "--store", str(tmp_path / "s"), "--log-format", "text"])  # fmt: skip
    # THEN the one-line usage error names the URL without it
    err = capsys.readouterr().err
    assert code == 2 and "ftp://host/x.zip" in err and PASSWORD not in err


def test_the_url_never_reaches_a_repr():
    from jobs.collect.settings import CollectSettings

    settings = CollectSettings.parse(
        ["--source", "url", "--dataset", "d", "--url", f"https://u:{PASSWORD}@h/x.zip"], {}
    )
    assert settings.options.url == f"https://u:{PASSWORD}@h/x.zip"
    assert PASSWORD not in repr(settings)
