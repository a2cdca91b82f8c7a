"""What every API object shares: the store it works on, how it runs stages, and who watches them run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from jobs.core.store import DEFAULT_STORE, Store, open_store
from pipeline.api.execution import MODES, execute, prepare
from pipeline.api.results import StageRun
from pipeline.runner import RunObserver

R = TypeVar("R", bound=StageRun)


class StoreClient:
    """Runs stages against one store (a folder or ``s3://bucket/prefix``).

    ``mode``: ``"inprocess"`` (default; the stage's errors are raised as they are) or ``"process"`` (each stage in
    its own process, as ``irmsia run`` runs it); ``observer``: a ``pipeline.runner.RunObserver`` that receives a
    stage process's log lines and progress (``irmsia menu`` passes one); ``env``: the environment the stages read
    (default ``os.environ``).
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        mode: str = "inprocess",
        observer: RunObserver | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if mode not in MODES:
            from jobs.core.errors import UsageError

            raise UsageError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        self.store_uri = open_store(store or DEFAULT_STORE).uri
        self.mode = mode
        self.observer = observer
        self.env = env

    @property
    def store(self) -> Store:
        """The store, opened afresh (a ``Store`` is cheap and holds no state worth keeping)."""
        return open_store(self.store_uri)

    def _run(self, stage: str, result_type: type[R], *, force: bool = False, extra: Mapping[str, Any] | None = None,
             **options: Any) -> R:  # fmt: skip
        call = prepare(stage, options, store=self.store_uri, force=force)
        out = execute(call, mode=self.mode, env=self.env, observer=self.observer)
        return result_type(stage=stage, store=self.store_uri, prefix=out.prefix, cached=out.cached,
                           content_sha256=out.content_sha256, summary=out.summary, duration_s=out.duration_s,
                           **dict(extra or {}))  # fmt: skip
