"""The store behaves the same on the file backend and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from jobs.core.errors import ChecksumMismatch, ObjectNotFound, UsageError
from jobs.core.store import open_store


def test_put_get_roundtrip_records_sha256(store_uri):
    # GIVEN a store
    store = open_store(store_uri)
    # WHEN an object is written
    info = store.put_bytes("raw/demo/a.bin", b"hello")
    # THEN its size and SHA-256 are recorded and it reads back verified
    assert info.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert store.head("raw/demo/a.bin").sha256 == info.sha256
    assert store.get_bytes("raw/demo/a.bin") == b"hello"
    assert store.exists("raw/demo/a.bin")
    assert not store.exists("raw/demo/b.bin")


def test_put_bytes_records_a_digest_the_caller_computed_and_reads_are_checked_against_it(store_uri):
    # GIVEN a store and bytes whose SHA-256 the caller already computed (the split hashes each output as it
    # renders it, beside the thread that writes)
    store = open_store(store_uri)
    data = b"train,a\n" * 1000
    known = hashlib.sha256(data).hexdigest()
    # WHEN they are written with it
    info = store.put_bytes("splits/demo/train.csv", data, sha256=known)
    # THEN that digest is the one recorded, and the object reads back verified against it
    assert info.sha256 == known == store.head("splits/demo/train.csv").sha256
    assert store.get_bytes("splits/demo/train.csv") == data
    # AND a digest that is not the bytes' is what a verified read then refuses (it is recorded, not recomputed)
    store.put_bytes("splits/demo/val.csv", data, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch, match=r"splits/demo/val\.csv"):
        store.get_bytes("splits/demo/val.csv")


def test_put_parts_writes_the_joined_parts_without_the_caller_joining_them(store_uri):
    # GIVEN an object in pieces as the split renders it: bytes, a view of an Arrow buffer, a slice, an empty piece
    import pyarrow as pa

    store = open_store(store_uri)
    body = pa.py_buffer(b"a,b,train\n" * 50_000)
    parts = [b"key,label,split\n", memoryview(body), memoryview(b"tail-xx")[:4], b""]
    joined = b"".join(parts)
    # WHEN they are written as parts
    info = store.put_parts("splits/demo/train.csv", parts)
    # THEN the object is their concatenation, with its size and SHA-256 recorded and verified on read
    assert (info.size, info.sha256) == (len(joined), hashlib.sha256(joined).hexdigest())
    assert store.head("splits/demo/train.csv").sha256 == info.sha256
    assert store.get_bytes("splits/demo/train.csv") == joined


def test_parts_reader_reads_seeks_and_rereads_like_the_joined_bytes():
    # GIVEN the stream an S3 request body reads (botocore may read it for a checksum, then rewind)
    from jobs.core.store import PartsReader

    parts = [b"abc", memoryview(b"defgh"), b"", b"ij"]
    reader = PartsReader(parts)
    # THEN reads of any size cross the parts' boundaries as the joined bytes would, and a seek rereads
    assert reader.read(4) == b"abcd" and reader.read(3) == b"efg" and reader.tell() == 7
    assert reader.read() == b"hij" and reader.read(5) == b""
    assert reader.seek(-3, os.SEEK_END) == 7 and reader.read() == b"hij"
    reader.seek(0)
    assert reader.read() == b"abcdefghij"
    with pytest.raises(ValueError):
        reader.seek(-1)


def test_list_is_sorted_and_prefix_scoped(store_uri):
    store = open_store(store_uri)
    for key in ["raw/b/2", "raw/a/1", "raw/a/sub/3", "index/a/x"]:
        store.put_bytes(key, key.encode())
    assert [o.key for o in store.list("raw/a/")] == ["raw/a/1", "raw/a/sub/3"]
    assert [o.key for o in store.list("raw/")] == ["raw/a/1", "raw/a/sub/3", "raw/b/2"]
    assert [o.size for o in store.list("index/")] == [len(b"index/a/x")]


def test_streaming_file_roundtrip_multipart(store_uri, tmp_path):
    # GIVEN a file large enough for a multipart upload on S3 (threshold lowered to 5 MiB parts)
    store = open_store(store_uri)
    if hasattr(store, "transfer"):
        from boto3.s3.transfer import TransferConfig

        store.transfer = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20, max_concurrency=4)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 << 20))
    # WHEN it is uploaded and downloaded
    info = store.put_file("raw/big.bin", src)
    out = store.get_file("raw/big.bin", tmp_path / "out" / "big.bin")
    # THEN the bytes and hashes agree
    assert (tmp_path / "out" / "big.bin").read_bytes() == src.read_bytes()
    assert out.sha256 == info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert not (tmp_path / "out" / "big.bin.part").exists()


def test_open_write_streams_and_commits(store_uri):
    store = open_store(store_uri)
    with store.open_write("runs/r1/log.txt") as fh:
        for i in range(1000):
            fh.write(f"line {i}\n".encode())
    assert store.get_bytes("runs/r1/log.txt").count(b"\n") == 1000


def test_missing_key_raises_object_not_found(store_uri):
    store = open_store(store_uri)
    with pytest.raises(ObjectNotFound, match="nope"):
        store.get_bytes("raw/nope")
    with pytest.raises(ObjectNotFound):
        store.head("raw/nope")


def test_delete_and_delete_prefix(store_uri):
    store = open_store(store_uri)
    for i in range(5):
        store.put_bytes(f"tmp/x/{i}", b"x")
    store.delete("tmp/x/0")
    store.delete("tmp/x/does-not-exist")
    assert store.delete_prefix("tmp/x/") == 4
    assert list(store.list("tmp/")) == []


def test_put_if_absent_is_exclusive_under_concurrency(store_uri):
    # GIVEN eight writers racing for one key
    store = open_store(store_uri)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        results.append(store.put_if_absent("registry/m/versions/1.json", f"writer {i}".encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN exactly one wins and its content is what is stored
    assert results.count(True) == 1
    assert store.get_bytes("registry/m/versions/1.json").startswith(b"writer ")


@pytest.mark.parametrize("key", ["/abs", "a/../b", "a//b", "a/", "", "./a", "a/./b", "caf\udce9.dcm"])
def test_invalid_keys_are_rejected(store_uri, key):
    store = open_store(store_uri)
    with pytest.raises(UsageError, match="invalid store key"):
        store.put_bytes(key, b"x")


@pytest.mark.parametrize("method", ["put_file", "move_file"])
@pytest.mark.parametrize(
    ("make_source", "cause"),
    [
        (lambda d: d / "missing.dcm", "No such file or directory"),
        (lambda d: (d / "folder.dcm").mkdir() or d / "folder.dcm", "Is a directory"),
    ],
    ids=["missing", "folder"],
)
def test_a_source_file_that_cannot_be_read_is_named_not_the_store(store_uri, tmp_path, method, make_source, cause):
    # GIVEN a local file the store cannot read
    source = make_source(tmp_path)
    store = open_store(store_uri)
    # WHEN it is stored
    with pytest.raises(UsageError) as raised:
        getattr(store, method)("raw/d/a.dcm", source)
    # THEN the error names that file and the cause, and does not send the user to check --store
    message = str(raised.value)
    assert f"cannot read '{source}' ({cause})" in message and "--store" not in message
    assert "'raw/d/a.dcm'" in message


def test_file_store_detects_corruption(tmp_path):
    # GIVEN an object whose bytes changed behind the store's back
    store = open_store(str(tmp_path))
    store.put_bytes("raw/a", b"original")
    (tmp_path / "raw" / "a").write_bytes(b"tampered")
    # THEN a verified read fails and an unverified one does not
    with pytest.raises(ChecksumMismatch, match="raw/a"):
        store.get_bytes("raw/a")
    assert store.get_bytes("raw/a", verify=False) == b"tampered"


@pytest.mark.integration
def test_s3_store_detects_corruption(s3_store_uri, seaweedfs):
    store = open_store(s3_store_uri)
    store.put_bytes("raw/a", b"original")
    bucket, prefix = store.bucket, store.prefix
    seaweedfs.client().put_object(
        Bucket=bucket,
        Key=f"{prefix}/raw/a",
        Body=b"tampered",
        Metadata={"sha256": hashlib.sha256(b"original").hexdigest()},
    )
    with pytest.raises(ChecksumMismatch):
        store.get_bytes("raw/a")


@pytest.mark.integration
def test_s3_errors_map_to_contract(seaweedfs, s3_env, monkeypatch):
    from jobs.core.errors import TransientError

    # a missing bucket is a configuration error (exit 2)
    with pytest.raises(UsageError, match="does not exist"):
        open_store("s3://no-such-bucket-here/x").put_bytes("a", b"x")
    # wrong credentials are a configuration error naming the variables
    bucket = seaweedfs.create_bucket("creds-check")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(UsageError, match="AWS_ACCESS_KEY_ID"):
        open_store(f"s3://{bucket}").put_bytes("a", b"x")
    # an unreachable endpoint is transient (exit 75)
    from tests.support.seaweedfs import free_port

    store = open_store(f"s3://{bucket}", endpoint_url=f"http://127.0.0.1:{free_port()}")
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(TransientError, match="unreachable"):
        store.get_bytes("a")


def test_unsupported_scheme_is_usage_error():
    with pytest.raises(UsageError, match="unsupported scheme"):
        open_store("gs://bucket/x")


def test_move_file_stores_and_consumes_the_local_file(store_uri, tmp_path):
    # GIVEN a scratch file the caller no longer needs
    src = tmp_path / "scratch.bin"
    src.write_bytes(b"moved bytes")
    # WHEN it is moved into the store
    info = open_store(store_uri).move_file("raw/demo/m.bin", src)
    # THEN it reads back verified and the local file is gone
    assert info.sha256 == hashlib.sha256(b"moved bytes").hexdigest()
    assert open_store(store_uri).get_bytes("raw/demo/m.bin") == b"moved bytes"
    assert not src.exists()
