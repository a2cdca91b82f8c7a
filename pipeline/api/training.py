"""Train and register from Python (the seed's ``TrainingPipeline(...).train(num_epochs=50)``).

``TrainingPipeline(dataset, model=..., image_size=..., ...)`` holds the train stage's options (any of
``irmsia-train --help``, by name); ``train(num_epochs)`` runs the train stage on the sealed ``splits/<dataset>/``
and returns the run with its metrics; ``register(model_name)`` makes it the next version of a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.core.errors import UsageError
from pipeline.api.client import StoreClient
from pipeline.api.results import Registration, TrainResult
from pipeline.runner import RunObserver


class TrainingPipeline(StoreClient):
    """Training runs of one dataset with one set of options."""

    def __init__(
        self,
        dataset: str,
        store: str | None = None,
        *,
        mode: str = "inprocess",
        observer: RunObserver | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(store, mode=mode, observer=observer, env=env)
        self.dataset = dataset
        self.options = options
        self.last_run: TrainResult | None = None

    def train(self, num_epochs: int | None = None, *, force: bool = False, **options: Any) -> TrainResult:
        """Train for ``num_epochs`` (or the ``epochs`` option) with the pipeline's options updated by
        ``options``; a run with the same inputs and options is a cache hit and returns at once."""
        chosen = {**self.options, **options}
        if num_epochs is not None:
            chosen["epochs"] = num_epochs
        self.last_run = self._run("train", TrainResult, force=force, dataset=self.dataset, **chosen)
        return self.last_run

    def register(self, model_name: str, *, run_id: str | None = None, promote: str = "auto",
                 **options: Any) -> Registration:  # fmt: skip
        """Register ``run_id`` (default: the last run trained here) as the next version of ``model_name``;
        ``promote``: auto (champion if it beats the champion's metric), always or never."""
        return register(self.store_uri, model_name, run_id or self._last_run_id(), promote=promote, mode=self.mode,
                        observer=self.observer, env=self.env, **options)  # fmt: skip

    def _last_run_id(self) -> str:
        if self.last_run is None:
            raise UsageError("nothing trained yet: call train() first, or pass run_id=")
        return self.last_run.run_id


def register(
    store: str | None,
    model_name: str,
    run_id: str,
    *,
    promote: str = "auto",
    mode: str = "inprocess",
    observer: RunObserver | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> Registration:
    """Register the sealed training run ``run_id`` as the next version of ``model_name`` (a cache hit when that
    run is registered already)."""
    client = StoreClient(store, mode=mode, observer=observer, env=env)
    return client._run("register", Registration, run_id=run_id, model_name=model_name, promote=promote, **options)
