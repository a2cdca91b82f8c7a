"""The register stage: turn a sealed training run into the next version of a model, or find it already there.

Order of writes, so that a crash never leaves a version that readers would trust half-written, nor one that
lacks the alias it earned:

1. Everything is checked and built locally first (run manifest, model hash, metric, lineage, TorchScript and
   ONNX exports verified against the state dict, and with ``--quantize int8`` the INT8 model checked against
   fp32 on val, ``quantize.py``). A bad run fails here and the registry is untouched. A run
   whose train manifest (same content hash) the ledger already registers is a cache hit returning that version
   (asked with another ``--quantize`` than that version was, it says so: ``--force`` registers it again).
2. The version number is claimed (``versions.claim_version``: exclusive create of ``claims/<n>.json``, above
   every number claimed, registered or holding objects, so even lost claims never hand out a sealed version).
3. The bundle is written into ``registry/<name>/<n>/`` and sealed with its ``_SUCCESS.json`` (``StageWriter``).
4. One ledger entry is appended (``ledger.append``: exclusive create of entry ``head+1``), built from exactly the
   chain it links to: it registers ``n`` *and* carries the promotion decided against that chain's champion
   (``aliases.promotion``). This is the commit point of the version and of its alias move together: readers
   (``irmsia registry``, ``api.load_model``, ``verify``) know both only through the ledger. If another entry
   took that number first, the entry is rebuilt on the new chain; if that chain now registers the same run (a
   concurrent registration of it committed first), this one backs off, removes its bundle and returns the
   other's version as a cache hit, so the same run registered at once by any number of registrants is one
   version. ``--force`` registers it again as a new version regardless.
5. MLflow is told last, best-effort.

A crash after 2 and before 4 leaves a claimed number that never reaches the ledger: it is skipped forever (never
reused, so no race), ``verify`` lists it as abandoned, and the run stays registrable by the next attempt (there is
no lock to leave behind). On an error after 2 the partial folder is removed. A crash after 4 leaves a complete,
promoted version, so a rerun's cache hit has nothing left to finish.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any

from jobs.core.hashing import pretty_json, sha256_bytes
from jobs.core.manifest import Manifest, StageWriter, fetch_output, read_manifest, read_output
from jobs.core.store import Store
from jobs.ml.predictions import PREDICTIONS as RUN_PREDICTIONS
from jobs.register import aliases, comparison, ledger
from jobs.register.bundle import build_metadata
from jobs.register.crossval import load_cross_validation
from jobs.register.export import ExportedModel, export_model
from jobs.register.keys import (
    METADATA,
    MODEL_CARD,
    MODEL_INT8,
    MODEL_ONNX,
    MODEL_PT,
    MODEL_TS,
    PREDICTIONS,
    REPORT,
    TASK_PICTURES,
    version_prefix,
)
from jobs.register.lineage import Lineage, walk_lineage
from jobs.register.model_card import render_model_card
from jobs.register.quantize import Quantized, quantize_model
from jobs.register.settings import RegisterSettings
from jobs.register.source_run import SourceRun, check_metric, chosen_metric, load_source_run
from jobs.register.telemetry import record_registration
from jobs.register.versions import claim_version, new_token, now_iso

log = logging.getLogger("irmsia.register")
RUN_REPORT = "report.html"


def _cached(
    store: Store,
    settings: RegisterSettings,
    run: SourceRun,
    entries: list[ledger.LedgerEntry],
    cv: dict[str, Any] | None = None,
) -> tuple[Manifest, bool] | None:
    """The version in ``entries`` that already registers this exact run (same train manifest content) with the
    same cross-validation record (none, or the same sealed aggregate), if any."""
    name = settings.model_name
    cv_sha = (cv or {}).get("manifest_sha256")
    for entry in reversed(list(ledger.registrations(entries).values())):
        if entry.fields.get("train_manifest_sha256") != run.manifest.content_sha256:
            continue
        if (entry.fields.get("cross_validation") or {}).get("manifest_sha256") != cv_sha:
            continue
        manifest = read_manifest(store, version_prefix(name, entry.version))
        if manifest is not None and manifest.content_sha256 == entry.fields.get("manifest_sha256"):
            log.info("run %s is already %s v%d; cache hit", run.run_id, name, entry.version)
            if (was := entry.fields.get("quantize", "none")) != settings.quantize:
                log.warning(
                    "%s v%d was registered with --quantize %s, not %s; pass --force to register the run again",
                    name, entry.version, was, settings.quantize,
                )  # fmt: skip
            summary = {**manifest.summary, "version": entry.version, "ledger_sha256": entry.sha256}
            return dataclasses.replace(manifest, summary=summary), True
    return None


def _write_bundle(  # noqa: PLR0913 - every part of one bundle; the optional cross-validation keyword-only
    store: Store,
    settings: RegisterSettings,
    version: int,
    run: SourceRun,
    exported: ExportedModel,
    quantized: Quantized | None,
    lineage: Lineage,
    workdir: Path,
    *,
    cv: tuple[Manifest, dict[str, Any]] | None = None,
) -> tuple[Manifest, dict, str]:
    """Write and seal ``registry/<name>/<version>/``; returns its manifest, metadata and metadata SHA-256."""
    writer = StageWriter(
        store,
        "register",
        version_prefix(settings.model_name, version),
        {**settings.result_params(), "version": version},
        {run.prefix: run.manifest.content_sha256, **({cv[0].prefix: cv[0].content_sha256} if cv else {})},
    )
    writer.begin()
    files = {MODEL_PT: exported.state_dict, MODEL_TS: exported.torchscript}
    if exported.onnx is not None:
        files[MODEL_ONNX] = exported.onnx
    if quantized is not None and quantized.path is not None:
        files[MODEL_INT8] = quantized.path
    model_files = {name: writer.put_file(name, path).sha256 for name, path in files.items()}
    picture = next((name for name in TASK_PICTURES if (workdir / name).exists()), None)
    if picture is not None:
        writer.put_file(f"docs/{picture}", workdir / picture)
    if (predictions := workdir / RUN_PREDICTIONS).exists():
        writer.put_file(PREDICTIONS, predictions)
    if (report := workdir / RUN_REPORT).exists():
        writer.put_file(REPORT, report)
    meta = build_metadata(
        name=settings.model_name,
        version=version,
        run=run,
        lineage=lineage,
        metric=settings.metric,
        model_files=model_files,
        image=settings.image,
        description=settings.description,
        cross_validation=cv[1] if cv else None,
    )
    meta["irmsia"]["export_max_abs_diff"] = exported.max_abs_diff
    if quantized is not None:
        meta["irmsia"]["quantization"] = quantized.record
    meta_bytes = pretty_json(meta)
    writer.put_bytes(METADATA, meta_bytes)
    writer.put_bytes(MODEL_CARD, render_model_card(meta, picture).encode())
    manifest = writer.commit(
        summary={
            "model_name": settings.model_name,
            "version": version,
            "run_id": run.run_id,
            settings.metric: meta["irmsia"]["metric"]["value"],
            "files": len(writer.outputs),
        }
    )
    return manifest, meta, sha256_bytes(meta_bytes)


def _abandon(store: Store, name: str, version: int) -> None:
    """Remove the bundle of a version this registration claimed but will not commit, unless the ledger names it.

    The claim stays (a number is never reused). If the ledger cannot be read, nothing is removed: a sealed
    bundle that the ledger names must never lose its files.
    """
    try:
        if version not in ledger.registrations(ledger.read_entries(store, name)):
            store.delete_prefix(version_prefix(name, version))
    except Exception:
        log.warning("could not clean up v%d of %s; irmsia registry verify lists it as abandoned", version, name)


def register(store: Store, settings: RegisterSettings) -> tuple[Manifest, bool]:
    """Register ``settings.run_id`` as the next version of ``settings.model_name`` (see the module docstring)."""
    name, force = settings.model_name, settings.common.force
    with tempfile.TemporaryDirectory(prefix="irmsia-register-") as tmp:
        workdir = Path(tmp)
        run = load_source_run(store, settings.run_id, workdir)
        cv = load_cross_validation(store, settings.cv_id, run.manifest)
        cv_record = cv[1] if cv else None
        settings = dataclasses.replace(settings, metric=chosen_metric(run, settings.metric))
        if (
            not force
            and (hit := _cached(store, settings, run, ledger.read_entries(store, name), cv_record)) is not None
        ):
            return hit
        value = check_metric(run, settings.metric)
        exported = export_model(run.config, run.model_path, workdir / "models")
        lineage = walk_lineage(store, run.manifest)
        for picture in TASK_PICTURES:
            if run.has_output(picture):
                fetch_output(store, run.manifest, picture, workdir / picture)
        if run.has_output(RUN_REPORT):
            fetch_output(store, run.manifest, RUN_REPORT, workdir / RUN_REPORT)
        challenger = None
        if run.has_output(RUN_PREDICTIONS):
            challenger = read_output(store, run.manifest, RUN_PREDICTIONS)
            (workdir / RUN_PREDICTIONS).write_bytes(challenger)
        quantized = None
        if settings.quantize == "int8":
            quantized = quantize_model(
                store=store, run=run, onnx_path=exported.onnx, predictions=challenger, metric=settings.metric,
                max_drop=settings.quantize_max_drop,
            )  # fmt: skip
        compared: dict[int, comparison.Comparison] = {}

        def compare(champion: ledger.LedgerEntry) -> comparison.Comparison:
            # once per champion: the builder below may run again on a newer chain
            if champion.version not in compared:
                theirs = comparison.champion_predictions(store, name, champion.version)
                compared[champion.version] = comparison.compare(
                    challenger, theirs, settings.metric, resamples=settings.bootstrap_resamples
                )
            return compared[champion.version]

        token = new_token()
        version = claim_version(store, name, run.run_id, token)
        log.info("claimed %s v%d for run %s", name, version, run.run_id)
        outcome: dict[str, Any] = {}
        try:
            manifest, meta, meta_sha = _write_bundle(
                store, settings, version, run, exported, quantized, lineage, workdir, cv=cv
            )
            fields = {
                "kind": ledger.REGISTER,
                "version": version,
                "run_id": run.run_id,
                "train_manifest_sha256": run.manifest.content_sha256,
                "split_manifest_sha256": meta["irmsia"]["lineage"]["split_manifest_sha256"],
                "metadata_sha256": meta_sha,
                "manifest_sha256": manifest.content_sha256,
                "manifest_file_sha256": sha256_bytes(manifest.to_json()),
                "metric": settings.metric,
                "metrics": meta["irmsia"]["metrics"],
                **({"cross_validation": cv_record} if cv_record else {}),
                "quantize": settings.quantize,
                "registered_at": now_iso(),
            }

            def build(entries: list[ledger.LedgerEntry]) -> dict[str, Any] | None:
                # Decided on exactly the entries this one links to, and committed with it in one exclusive create.
                if not force and (hit := _cached(store, settings, run, entries, cv_record)) is not None:
                    outcome["hit"] = hit  # registered by a concurrent registrant meanwhile
                    return None
                alias, decision = aliases.promotion(
                    settings.promote, settings.metric, ledger.LedgerEntry(0, fields, ""), entries, compare
                )
                outcome["decision"] = decision
                test = {"promotion_test": decision.test} if decision.test is not None else {}
                return {**fields, "alias": alias, "promotion": decision.reason, **test}

            entry, _ = ledger.append(store, name, build, token)
        except BaseException:
            _abandon(store, name, version)
            raise
    if entry is None:
        _abandon(store, name, version)
        return outcome["hit"]
    decision: aliases.Decision = outcome["decision"]
    log.info("%s v%d is %s: %s", name, version, decision.alias, decision.reason)
    record_registration(version, decision.alias)
    if settings.mlflow_tracking_uri:
        from jobs.register.mlflow_sync import sync_version

        sync_version(settings.mlflow_tracking_uri, store, name, version, meta, decision.alias)
    summary = {
        **manifest.summary,
        settings.metric: value,
        "alias": decision.alias,
        "promotion": decision.reason,
        **({"promotion_test": decision.test} if decision.test is not None else {}),
        "ledger_seq": entry.seq,
        "ledger_sha256": entry.sha256,
    }
    return dataclasses.replace(manifest, summary=summary), False
