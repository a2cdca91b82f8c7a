"""``--source local``: a folder tree copied into ``raw/<dataset>/`` byte for byte, cached by its content."""

from __future__ import annotations

import hashlib
import os

import pytest

from jobs.collect.__main__ import main
from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.unprivileged import run_stage


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


# -- what is copied, and what stops the stage: links, unreadable entries, names that are not UTF-8 ------------------
def _error_line(capsys) -> str:
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    return line


def _nothing_sealed(store: str) -> bool:
    return read_manifest(open_store(store), "raw/xray/") is None


@pytest.mark.parametrize(
    ("make_link", "symlinks", "message"),
    [
        (lambda tree, outside: (tree / "train/NORMAL/shadow").symlink_to(outside / "shadow"), "inside",
         "is a symbolic link to {outside}/shadow, outside the folder"),
        (lambda tree, outside: (tree / "train/escape").symlink_to(outside), "inside",
         "is a symbolic link to {outside}, outside the folder"),
        (lambda tree, outside: (tree / "train/NORMAL/loop").symlink_to(tree / "train"), "inside",
         "loops back to"),
        (lambda tree, outside: (tree / "again.jpeg").symlink_to(tree / "train/NORMAL/a.jpeg"), "refuse",
         "is a symbolic link; refusing it (--symlinks refuse)"),
        (lambda tree, outside: (tree / "gone.jpeg").symlink_to(tree / "missing.jpeg"), "inside",
         "which does not exist"),
    ],
    ids=["file-out-of-tree", "folder-out-of-tree", "loop", "refuse-all", "dangling"],
)  # fmt: skip
def test_refused_links_stop_the_stage_before_anything_is_stored(tmp_path, tree, capsys, make_link, symlinks, message):
    # GIVEN a secret outside the tree, and a link in the tree that must not be followed
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    make_link(tree, outside)
    store = str(tmp_path / "store")
    # WHEN the folder is collected
    code = _collect(store, tree, *(["--symlinks", symlinks] if symlinks != "inside" else []), "--log-format", "text")
    # THEN it is refused with one line naming the link; nothing is sealed and the secret is nowhere in the store
    assert code == 3
    assert message.format(outside=outside) in _error_line(capsys)
    assert _nothing_sealed(store)
    assert not any(b"secret-hash" in p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())


def test_links_inside_the_tree_are_copied_as_what_they_point_to(tmp_path, tree):
    # GIVEN a link to a file and a link to a folder, both inside the tree
    (tree / "again.jpeg").symlink_to(tree / "train/NORMAL/a.jpeg")
    (tree / "alias").symlink_to(tree / "train/PNEUMONIA")
    store = str(tmp_path / "store")
    # WHEN the folder is collected
    assert _collect(store, tree) == 0
    # THEN each link is stored under its own name with its target's bytes
    s = open_store(store)
    assert s.get_bytes("raw/xray/again.jpeg") == (tree / "train/NORMAL/a.jpeg").read_bytes()
    assert s.get_bytes("raw/xray/alias/b.jpeg") == (tree / "train/PNEUMONIA/b.jpeg").read_bytes()


@pytest.mark.parametrize(
    "bad",
    [b"train/NORMAL/caf\xe9.jpeg", b"train/r\xe9sultats/a.jpeg"],
    ids=["file-name", "folder-name"],
)
def test_a_name_that_is_not_utf8_is_a_usage_error(tmp_path, tree, capsys, bad):
    # GIVEN a file (or a folder) named in Latin-1, not UTF-8
    path = os.fsencode(tree) + b"/" + bad
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"\xff\xd8 latin-1 name")
    store = str(tmp_path / "store")
    # WHEN the folder is collected
    code = _collect(store, tree, "--log-format", "text")
    # THEN one line names it by its bytes and says to rename it; nothing is sealed
    assert code == 2
    line = _error_line(capsys)
    assert "is not valid UTF-8" in line and "\\xe9" in line and "rename it" in line
    assert _nothing_sealed(store)


def test_an_unusable_store_folder_is_a_usage_error(tree, capsys):
    # WHEN the store is a folder that cannot be created
    code = _collect("/proc/irmsia-store", tree, "--log-format", "text")
    # THEN it is one line naming the store, exit 2, no traceback
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("irmsia-collect: error: file store file:///proc/irmsia-store")


def test_a_fifo_is_refused(tmp_path, tree, capsys):
    os.mkfifo(tree / "train" / "pipe.jpeg")
    store = str(tmp_path / "store")
    assert _collect(store, tree, "--log-format", "text") == 3
    assert "'train/pipe.jpeg' is not a regular file or folder" in _error_line(capsys)
    assert _nothing_sealed(store)


@pytest.mark.parametrize(
    ("lock", "message"),
    [
        ("train/PNEUMONIA", "cannot read folder '{tree}/train/PNEUMONIA' (Permission denied)"),
        ("train/PNEUMONIA/b.jpeg", "cannot read file '{tree}/train/PNEUMONIA/b.jpeg' (Permission denied)"),
    ],
    ids=["folder", "file"],
)
def test_unreadable_entries_are_errors_naming_them_not_the_store(tmp_path, lock, message):
    # GIVEN a tree with one folder (or file) that the stage's user may not read
    tree = tmp_path / "tree"
    for rel in ("train/NORMAL/a.jpeg", "train/PNEUMONIA/b.jpeg"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"\xff\xd8 " + rel.encode())
    (tree / lock).chmod(0)
    store = tmp_path / "store"
    try:
        # WHEN it is collected
        done = run_stage("jobs.collect", ["--source", "local", "--dataset", "xray", "--path", str(tree),
                                          "--store", str(store)], cwd=tmp_path)  # fmt: skip
    finally:
        (tree / lock).chmod(0o755)
    # THEN the stage stops with one line naming the entry and the cause, not the store; nothing is sealed
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "error:" in line]
    assert message.format(tree=tree) in line and "--store" not in line
    assert read_manifest(open_store(str(store)), "raw/xray/") is None
