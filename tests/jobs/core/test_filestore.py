"""The file store's own behaviour: checksums in extended attributes, the ``.meta`` fallback, and key listing."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest

from jobs.core.errors import ChecksumMismatch
from jobs.core.filestore import SHA_XATTR, FileStore


def _meta_files(root) -> list[str]:
    meta = root / ".meta"
    return sorted(p.relative_to(meta).as_posix() for p in meta.rglob("*") if p.is_file()) if meta.exists() else []


def _refuse_xattrs(monkeypatch) -> list[str]:
    """Make the file system refuse user extended attributes (as older NFS does); returns the paths tried."""
    tried = []

    def setxattr(path, *args, **kwargs):
        tried.append(str(path))
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", setxattr)
    return tried


def test_every_write_path_records_the_checksum_as_an_attribute_of_the_file(tmp_path):
    # GIVEN a file store on a file system with user extended attributes
    store = FileStore(str(tmp_path / "s"))
    src = tmp_path / "src.bin"
    src.write_bytes(b"copied")
    scratch = tmp_path / "s" / ".tmp" / "scratch.bin"
    scratch.parent.mkdir(parents=True)
    scratch.write_bytes(b"moved")
    # WHEN objects are written every way the store offers
    store.put_bytes("a/bytes", b"small")
    store.put_file("a/file", src)
    store.move_file("a/moved", scratch, sha256=hashlib.sha256(b"moved").hexdigest(), size=5)
    assert store.put_if_absent("a/claim", b"claimed")
    # THEN each file carries its raw digest and no .meta record exists
    for key, body in [("a/bytes", b"small"), ("a/file", b"copied"), ("a/moved", b"moved"), ("a/claim", b"claimed")]:
        assert os.getxattr(tmp_path / "s" / key, SHA_XATTR) == hashlib.sha256(body).digest(), key
        assert store.head(key).sha256 == hashlib.sha256(body).hexdigest()
        assert store.get_bytes(key) == body
    assert _meta_files(tmp_path / "s") == []


def test_a_tampered_file_fails_verification_through_its_attribute(tmp_path):
    # GIVEN an object rewritten in place behind the store's back (the attribute survives a truncating write)
    store = FileStore(str(tmp_path))
    store.put_bytes("raw/x", b"original")
    with open(tmp_path / "raw" / "x", "r+b") as fh:
        fh.write(b"tampered")
    # THEN a verified read names the key
    with pytest.raises(ChecksumMismatch, match="raw/x"):
        store.get_bytes("raw/x")


def test_without_attributes_the_store_falls_back_to_meta_records_and_asks_only_once(tmp_path, monkeypatch):
    # GIVEN a file system that refuses user extended attributes
    tried = _refuse_xattrs(monkeypatch)
    store = FileStore(str(tmp_path))
    # WHEN several objects are written
    for i in range(3):
        store.put_bytes(f"raw/{i}", b"body %d" % i)
    # THEN the checksums live in .meta records, are verified on read, and the refusal was not retried per object
    assert _meta_files(tmp_path) == ["raw/0.json", "raw/1.json", "raw/2.json"]
    record = json.loads((tmp_path / ".meta" / "raw" / "1.json").read_text())
    assert record == {"sha256": hashlib.sha256(b"body 1").hexdigest(), "size": 6}
    assert store.get_bytes("raw/1") == b"body 1"
    (tmp_path / "raw" / "1").write_bytes(b"body X")
    with pytest.raises(ChecksumMismatch):
        store.get_bytes("raw/1")
    assert len(tried) == 1


def test_a_store_written_with_meta_records_stays_readable_and_a_rewrite_drops_the_stale_record(tmp_path, monkeypatch):
    # GIVEN a store whose objects were recorded in .meta (an earlier version, or a file system without attributes)
    with monkeypatch.context() as patch:
        _refuse_xattrs(patch)
        old = FileStore(str(tmp_path))
        old.put_bytes("raw/kept", b"old layout")
        old.put_bytes("raw/rewritten", b"first")
    # WHEN a store on a file system with attributes opens it and rewrites one object
    store = FileStore(str(tmp_path))
    assert store.head("raw/kept").sha256 == hashlib.sha256(b"old layout").hexdigest()
    store.put_bytes("raw/rewritten", b"second")
    # THEN the old record still verifies the untouched object, the rewritten one is tagged, its record is gone
    assert store.get_bytes("raw/kept") == b"old layout"
    assert store.get_bytes("raw/rewritten") == b"second"
    assert _meta_files(tmp_path) == ["raw/kept.json"]
    # AND deleting the old object removes its record too
    store.delete("raw/kept")
    assert _meta_files(tmp_path) == []


def test_a_file_dropped_in_by_hand_reads_unverified(tmp_path):
    # GIVEN a file nobody recorded a checksum for
    store = FileStore(str(tmp_path))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "hand.txt").write_bytes(b"by hand")
    # THEN it has no checksum and reads without verification
    assert store.head("raw/hand.txt").sha256 is None
    assert store.get_bytes("raw/hand.txt") == b"by hand"


def test_keys_lists_the_same_objects_as_list_without_hidden_folders(tmp_path, monkeypatch):
    # GIVEN objects in nested folders, plus the hidden folders a fallback store keeps
    store = FileStore(str(tmp_path))
    for key in ["raw/b/2", "raw/a/1", "raw/c", "index/x"]:
        store.put_bytes(key, key.encode())
    with monkeypatch.context() as patch:
        _refuse_xattrs(patch)
        FileStore(str(tmp_path)).put_bytes("raw/meta-recorded", b"m")
    # THEN keys() and list() agree, sorted and prefix-scoped, and neither shows .meta or .tmp
    assert list(store.keys("raw/")) == [o.key for o in store.list("raw/")]
    assert list(store.keys("raw/")) == ["raw/a/1", "raw/b/2", "raw/c", "raw/meta-recorded"]
    assert list(store.keys()) == ["index/x", "raw/a/1", "raw/b/2", "raw/c", "raw/meta-recorded"]
