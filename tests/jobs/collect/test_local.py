"""``--source local``: a folder tree copied into ``raw/<dataset>/`` byte for byte, cached by its content."""

from __future__ import annotations

import hashlib
import os

import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "chest_xray"
    files = {
        "train/NORMAL/a.jpeg": b"\xff\xd8 normal a",
        "train/PNEUMONIA/b.jpeg": b"\xff\xd8 pneumonia b",
        "Viral Pneumonia/images/c.png": b"\x89PNG c",
        "LICENSE": b"CC BY 4.0\nfull text\n",
        "labels.csv": b"file,label\n",
        ".DS_Store": b"hidden",
        ".git/config": b"hidden folder",
        "train/.hidden.jpeg": b"hidden file",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _collect(store_uri, path, *extra) -> int:
    return main(["--source", "local", "--dataset", "xray", "--path", str(path), "--store", store_uri,
                 "--log-format", "json", *extra])  # fmt: skip


def test_local_copy_round_trip(store_uri, tree):
    # WHEN the folder is collected
    assert _collect(store_uri, tree) == 0
    store = open_store(store_uri)
    manifest = read_manifest(store, "raw/xray/")
    # THEN every visible file is in the store under its relative path, byte for byte; hidden ones are not
    visible = sorted(
        p.relative_to(tree).as_posix()
        for p in tree.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(tree).parts)
    )
    assert [o.key for o in manifest.outputs] == [f"raw/xray/{rel}" for rel in visible]
    for out in manifest.outputs:
        data = (tree / out.key.removeprefix("raw/xray/")).read_bytes()
        assert store.get_bytes(out.key) == data
        assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert manifest.summary["license"] == "CC BY 4.0"
    assert manifest.summary["files"] == 5


def test_local_cache_follows_folder_content(store_uri, tree, tmp_path, monkeypatch):
    import json

    result = tmp_path / "result.json"
    monkeypatch.setenv("IRMSIA_RESULT_FILE", str(result))
    assert _collect(store_uri, tree) == 0
    # GIVEN an unchanged folder, THEN the rerun is a cache hit
    assert _collect(store_uri, tree) == 0
    assert json.loads(result.read_text())["cached"] is True
    # WHEN a file changes, THEN it is collected again with the new bytes
    changed = tree / "train/NORMAL/a.jpeg"
    changed.write_bytes(b"\xff\xd8 normal a, rescanned")
    os.utime(changed, ns=(1, 1))
    assert _collect(store_uri, tree) == 0
    assert json.loads(result.read_text())["cached"] is False
    assert open_store(store_uri).get_bytes("raw/xray/train/NORMAL/a.jpeg") == b"\xff\xd8 normal a, rescanned"


def test_empty_folder_is_a_usage_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / ".only-hidden").mkdir(parents=True)
    assert _collect(str(tmp_path / "store"), empty) == 2
    assert "--path" in capsys.readouterr().err


def test_file_instead_of_folder_is_a_usage_error(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert _collect(str(tmp_path / "store"), f) == 2
    assert "is not a folder" in capsys.readouterr().err
