"""A local Kaggle API server on 127.0.0.1 speaking what the current client library sends.

Datasets: ``POST /api/v1/datasets.DatasetApiService/ListDatasets`` (JSON ``search``), ``GetDataset`` (with
``currentVersionNumber``) and ``DownloadDataset`` (a 302 redirect to the ZIP of the current version,
``/files/<owner>/<slug>.zip``, or of the ``datasetVersionNumber`` asked for, ``/files/<owner>/<slug>/versions/<n>.zip``;
an unknown version is 404, as on Kaggle). Competitions: ``POST /api/v1/competitions.CompetitionApiService/
ListCompetitions`` (``search``), ``GetCompetition`` and ``DownloadDataFiles`` (a redirect to
``/files/competitions/<name>.zip``; 403 with Kaggle's message until the competition's rules are accepted). ZIPs
are served with Content-Length, ETag and Range support, and ``FaultyHttpServer`` faults. Every RPC requires the
configured credentials (Basic or Bearer).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_server import FaultyHttpServer

SERVICE = "/api/v1/datasets.DatasetApiService/"
COMPETITIONS = "/api/v1/competitions.CompetitionApiService/"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."


@dataclass
class KaggleServer(FaultyHttpServer):
    username: str = "irmsia-user"
    key: str = "not-a-real-key-0123"
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    competitions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_dataset(self, ref: str, zip_bytes: bytes, title: str, license_name: str = "CC BY 4.0",
                    versions: dict[int, bytes] | None = None) -> str:  # fmt: skip
        """A dataset whose current version is ``zip_bytes`` (the highest of ``versions``, when given)."""
        versions = versions or {1: zip_bytes}
        current = max(versions)
        path = f"/files/{ref}.zip"
        self.add_file(path, versions[current])
        for number, data in versions.items():
            self.add_file(f"/files/{ref}/versions/{number}.zip", data)
        self.datasets[ref] = {"ref": ref, "title": title, "totalBytes": len(versions[current]),
                              "licenseName": license_name, "url": f"https://www.kaggle.com/datasets/{ref}",
                              "currentVersionNumber": current, "_versions": sorted(versions)}  # fmt: skip
        return path

    def add_competition(self, name: str, zip_bytes: bytes, title: str, entered: bool = True) -> str:
        path = f"/files/competitions/{name}.zip"
        self.add_file(path, zip_bytes)
        self.competitions[name] = {"ref": name, "title": title, "url": f"https://www.kaggle.com/competitions/{name}",
                                   "category": "Featured", "userHasEntered": entered,
                                   "licenseName": "Subject to Competition Rules"}  # fmt: skip
        return path

    def __post_init__(self) -> None:
        for method in ("ListDatasets", "GetDataset", "DownloadDataset"):
            self.routes[SERVICE + method] = getattr(self, "_" + method)
        for method in ("ListCompetitions", "GetCompetition", "DownloadDataFiles"):
            self.routes[COMPETITIONS + method] = getattr(self, "_" + method)

    def _authorised(self, handler) -> bool:
        auth = handler.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        if handler.command == "POST" and auth in (basic, f"Bearer {self.key}"):
            return True
        handler.send_json({"code": 401, "message": "Unauthenticated"}, 401)
        return False

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def _dataset(self, handler, request: dict[str, Any]) -> dict[str, Any] | None:
        ref = f"{request.get('ownerSlug')}/{request.get('datasetSlug')}"
        if ref not in self.datasets:
            handler.send_json({"code": 404, "message": f"Dataset {ref} not found"}, 404)
            return None
        return self.datasets[ref]

    def _ListDatasets(self, handler, query, body) -> bool:
        if self._authorised(handler):
            text = (json.loads(body or b"{}").get("search") or "").lower()
            hits = [self._public(d) for d in self.datasets.values() if text in (d["title"] + " " + d["ref"]).lower()]
            handler.send_json({"datasets": hits, "nextPageToken": ""})
        return True

    def _GetDataset(self, handler, query, body) -> bool:
        if self._authorised(handler) and (dataset := self._dataset(handler, json.loads(body or b"{}"))) is not None:
            handler.send_json(self._public(dataset))
        return True

    def _DownloadDataset(self, handler, query, body) -> bool:
        request = json.loads(body or b"{}")
        if self._authorised(handler) and (dataset := self._dataset(handler, request)) is not None:
            version = request.get("datasetVersionNumber")
            if version is None:
                handler.redirect(self.url(f"/files/{dataset['ref']}.zip"))
            elif int(version) in dataset["_versions"]:
                handler.redirect(self.url(f"/files/{dataset['ref']}/versions/{int(version)}.zip"))
            else:
                handler.send_json({"code": 404, "message": f"Version {version} of {dataset['ref']} not found"}, 404)
        return True

    def _competition(self, handler, body: bytes) -> dict[str, Any] | None:
        name = json.loads(body or b"{}").get("competitionName")
        if name not in self.competitions:
            handler.send_json({"code": 404, "message": f"Competition {name} not found"}, 404)
            return None
        return self.competitions[name]

    def _ListCompetitions(self, handler, query, body) -> bool:
        if self._authorised(handler):
            text = (json.loads(body or b"{}").get("search") or "").lower()
            hits = [c for c in self.competitions.values() if text in (c["title"] + " " + c["ref"]).lower()]
            handler.send_json({"competitions": hits, "nextPageToken": ""})
        return True

    def _GetCompetition(self, handler, query, body) -> bool:
        if self._authorised(handler) and (competition := self._competition(handler, body)) is not None:
            handler.send_json(competition)
        return True

    def _DownloadDataFiles(self, handler, query, body) -> bool:
        if self._authorised(handler) and (competition := self._competition(handler, body)) is not None:
            if not competition["userHasEntered"]:
                handler.send_json({"code": 403, "message": RULES_MESSAGE}, 403)
            else:
                handler.redirect(self.url(f"/files/competitions/{competition['ref']}.zip"))
        return True
