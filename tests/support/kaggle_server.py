"""A local Kaggle API server on 127.0.0.1 speaking what the current client library sends.

``POST /api/v1/datasets.DatasetApiService/ListDatasets`` (JSON ``search``), ``GetDataset`` and
``DownloadDataset`` (a 302 redirect to ``/files/<owner>/<slug>.zip``, served with Content-Length, ETag and
Range support, and ``FaultyHttpServer`` faults), all requiring the configured credentials (Basic or Bearer).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_server import FaultyHttpServer

SERVICE = "/api/v1/datasets.DatasetApiService/"


@dataclass
class KaggleServer(FaultyHttpServer):
    username: str = "irmsia-user"
    key: str = "not-a-real-key-0123"
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_dataset(self, ref: str, zip_bytes: bytes, title: str, license_name: str = "CC BY 4.0") -> str:
        path = f"/files/{ref}.zip"
        self.add_file(path, zip_bytes)
        self.datasets[ref] = {"ref": ref, "title": title, "totalBytes": len(zip_bytes), "licenseName": license_name,
                              "url": f"https://www.kaggle.com/datasets/{ref}"}  # fmt: skip
        return path

    def __post_init__(self) -> None:
        for method in ("ListDatasets", "GetDataset", "DownloadDataset"):
            self.routes[SERVICE + method] = getattr(self, "_" + method)

    def _authorised(self, handler) -> bool:
        auth = handler.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        if handler.command == "POST" and auth in (basic, f"Bearer {self.key}"):
            return True
        handler.send_json({"code": 401, "message": "Unauthenticated"}, 401)
        return False

    def _dataset(self, handler, body: bytes) -> dict[str, Any] | None:
        request = json.loads(body or b"{}")
        ref = f"{request.get('ownerSlug')}/{request.get('datasetSlug')}"
        if ref not in self.datasets:
            handler.send_json({"code": 404, "message": f"Dataset {ref} not found"}, 404)
            return None
        return self.datasets[ref]

    def _ListDatasets(self, handler, query, body) -> bool:
        if self._authorised(handler):
            text = (json.loads(body or b"{}").get("search") or "").lower()
            hits = [d for d in self.datasets.values() if text in (d["title"] + " " + d["ref"]).lower()]
            handler.send_json({"datasets": hits, "nextPageToken": ""})
        return True

    def _GetDataset(self, handler, query, body) -> bool:
        if self._authorised(handler) and (dataset := self._dataset(handler, body)) is not None:
            handler.send_json(dataset)
        return True

    def _DownloadDataset(self, handler, query, body) -> bool:
        if self._authorised(handler) and (dataset := self._dataset(handler, body)) is not None:
            handler.redirect(self.url(f"/files/{dataset['ref']}.zip"))
        return True
