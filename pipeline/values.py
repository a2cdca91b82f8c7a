"""The parameter values of one pipeline run: the DAG's defaults, then a profile's, then the given ones; and the
stable local name of a run (its workflow id) derived from them."""

from __future__ import annotations

from collections.abc import Mapping

from jobs.core.errors import UsageError
from jobs.core.hashing import sha256_json
from jobs.core.paths import check_name
from jobs.core.urls import url_identity
from pipeline.dag import PIPELINE, Pipeline
from pipeline.profiles import profile_values


def resolve_values(pipeline: Pipeline, given: Mapping[str, str | None], profile: str | None = None) -> dict[str, str]:
    """Parameter values: the given ones over the profile's over the defaults. An empty ``run_id`` stays empty: the
    train stage derives it from its cache key and the runner hands it on to the stages after it."""
    values = pipeline.defaults()
    chosen = profile_values(profile, values)
    values.update(chosen)
    values.update({k: v for k, v in given.items() if v is not None and k in values})
    require_dataset(values, named=given.get("dataset") is not None or "dataset" in chosen)
    check_name(values["dataset"], "--dataset")
    if values.get("run_id"):
        check_name(values["run_id"], "--run-id")
    return values


def require_dataset(values: Mapping[str, str], *, named: bool) -> None:
    """A source other than the demo needs its dataset named: the default dataset is the demo's, and a real download
    must not land in ``raw/demo/`` unasked (``irmsia run`` and ``irmsia submit`` both check it)."""
    if values.get("source", "demo") != "demo" and not named:
        raise UsageError(
            f"--source {values['source']} needs --dataset NAME: the store folder raw/<NAME>/ to collect into"
        )


def local_run_name(values: dict[str, str], pipeline: Pipeline = PIPELINE) -> str:
    """A stable name for a local run without a given run id: the dataset and a hash of every parameter value (a
    secret one by its identity: a fast hash of a URL's password must not end up in a name). A spec's DAG, whose
    values live in its stages' arguments rather than in parameters, is named after itself and those arguments."""
    secret = {p for s in pipeline.stages for flag, _ in s.secret_flags for p in s.parameters_of(flag)}
    hashed: dict[str, object] = {k: url_identity(v) if k in secret and v else v for k, v in values.items()}
    if "dataset" not in values:
        hashed["stages"] = {s.name: list(s.args) for s in pipeline.stages}
    label = values.get("dataset") or pipeline.name.removeprefix("irmsia-")
    return f"{label[:40].rstrip('-._')}-{sha256_json(hashed)[:10]}"
