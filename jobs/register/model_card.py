"""The model card (``docs/README.md``) of a registered version, generated from its metadata only.

Generated, never hand-edited: it says what the model is for, what data it saw, how it scored, and how to
check and load it, so that the card and ``configs/metadata.json`` cannot disagree.
"""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _interval(ci: dict[str, Any] | None) -> str:
    return f"{ci['low']:.4f} - {ci['high']:.4f}" if ci else "n/a"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows),
        "",
    ]


_PER_CLASS = tuple(f"{split}_{m}_" for split in ("val", "test") for m in ("auc", "sensitivity", "specificity"))
"""Interval keys of a class or finding (``val_auc_<class>``…): the per-class table, not the headline one."""


def _evaluation_lines(evaluation: dict[str, Any]) -> list[str]:
    """Per-class intervals, calibration, operating points and subgroups, as the train stage measured them."""
    lines: list[str] = []
    intervals = evaluation.get("intervals") or {}
    if per_class := [[k, _interval(v)] for k, v in intervals.items() if k.startswith(_PER_CLASS)]:
        lines += ["### Per class", "", *_table(["metric", "95 % interval"], per_class)]
    if calibration := evaluation.get("calibration"):
        fitted = calibration.get("fitted_on") or "nothing: not calibrated"
        lines += ["### Calibration", "", f"Temperature {calibration.get('temperature')} (fitted on {fitted}).", ""]
        rows = [[split, s.get("ece"), s.get("nll")] for split in ("val", "test") if (s := calibration.get(split))]
        lines += _table(["split", "expected calibration error", "NLL"], rows)
    if points := evaluation.get("operating_points"):
        rows = []
        for cls, by_name in points.items():
            for name, p in by_name.items():
                val, test = (p or {}).get("val", {}), (p or {}).get("test", {})
                rows.append([cls, name, p["threshold"] if p else "n/a", val.get("sensitivity"),
                             val.get("specificity"), test.get("sensitivity"), test.get("specificity")])  # fmt: skip
        header = ["class", "point", "threshold", "val sensitivity", "val specificity", "test sensitivity",
                  "test specificity"]  # fmt: skip
        lines += ["### Operating points (chosen on val, evaluated on test)", "", *_table(header, rows)]
    if subgroups := (evaluation.get("subgroups") or {}).get("test"):
        rows = []
        for column, groups in subgroups.items():
            for value, g in groups.items():
                scores = ["too small"] * 3 if g.get("too_small") else [g.get("accuracy"), g.get("balanced_accuracy"),
                                                                        g.get("auc")]  # fmt: skip
                rows.append([column, value, g["n"], g["patients"], *scores])
        header = ["column", "value", "images", "patients", "accuracy", "balanced accuracy", "AUC"]
        lines += ["### Subgroups (test)", "", *_table(header, rows)]
    if skipped := evaluation.get("not_applicable"):
        lines += ["### Not applicable to this task", "", *_table(["part", "why"], [[k, v] for k, v in skipped.items()])]
    return lines


_OUTPUTS = {
    "classification": "logits, one per class in the order above; apply softmax for probabilities",
    "multilabel": "logits, one per finding in the order above; apply a sigmoid and each finding's threshold "
    "(`thresholds` in the run config, chosen on val)",
    "segmentation": "one logit map per class in the order above (class i = mask value `label_values[i]`); "
    "argmax for the label map",
}


def _quantization(q: dict[str, Any] | None) -> list[str]:
    """``--quantize int8``: whether the INT8 model was kept and why, its size, latency and val metrics vs fp32."""
    if not q:
        return []
    kept = f"kept as `{q['file']}`" if q.get("kept") else "not kept: the bundle serves fp32 only"
    lines = ["## INT8 model", "", f"Requested `--quantize {q.get('requested')}`; {kept}. {q.get('reason')}.", ""]
    if method := q.get("method"):
        lines += [f"Method: {method}.", ""]
    if sizes := q.get("size_bytes"):
        ms = q["latency_ms"]
        lines += _table(
            ["", "fp32 (`model.onnx`)", "int8", "int8 / fp32"],
            [["file size (bytes)", sizes["fp32"], sizes["int8"], q["size_ratio"]],
             [f"latency (ms per image, {ms['statistic']} of {ms['runs']}, {ms['threads']} thread)", ms["fp32"],
              ms["int8"], q["latency_ratio"]]],
        )  # fmt: skip
    if val := q.get("val"):
        rows = [[f"val_{k}", v, val["int8"].get(k), val["run_recorded"].get(k)] for k, v in val["fp32"].items()]
        lines += [
            f"On {val['images']} val images: top-1 agreement {_fmt(val['top1_agreement'])}, largest logit "
            f"difference {_fmt(val['max_abs_logit_diff'])}; `{val['metric']}` drop {_fmt(val['drop'])} "
            f"(tolerance {q.get('max_drop')}).",
            "",
            *_table(["metric", "fp32 ONNX", "int8 ONNX", "as the run recorded"], rows),
        ]
    return lines


def _sources(datasets: list[dict[str, Any]]) -> list[str]:
    """One subsection per collected dataset: release, licence and its attribution text, de-identification."""
    lines: list[str] = []
    for d in datasets:
        release = ", ".join(f"{k} `{v}`" for k, v in (d.get("release") or {}).items()) or "not recorded"
        lines += [f"### Source: `{d.get('dataset')}` ({d.get('source') or 'unknown'})", "",
                  f"- release: {release}", f"- licence: {d.get('license') or 'unknown'}",
                  f"- collect manifest: `{d.get('manifest_sha256')}`"]  # fmt: skip
        deid = d.get("deidentification")
        if deid:
            options = ", ".join(f"{k} {v}" for k, v in (deid.get("options") or {}).items())
            scan = deid.get("phi_scan") or {}
            scanned = f"{scan.get('headers', 0)} headers, {scan.get('findings', 0)} findings"
            lines.append(
                f"- de-identified at collect: {deid.get('profile')} ({deid.get('standard')}); options: {options}; "
                f"PHI scan: {scanned}"
            )
        else:
            lines.append("- de-identification: none at collect (the source's own, if any)")
        if text := d.get("attribution"):
            lines += ["", "Attribution, as the dataset's licence asks:", "", *(f"> {ln}" for ln in text.splitlines())]
        lines.append("")
    return lines


def _init_lines(init: dict[str, Any] | None) -> list[str]:
    """Where a fine-tuned model's starting weights came from (nothing for a model trained from scratch)."""
    if not init:
        return []
    source = init.get("source")
    if init.get("kind") == "registry":
        source = f"registered model `{init.get('model_name')}` v{init.get('version')} (run `{init.get('run_id')}`)"
    else:
        source = f"{init.get('kind', 'weights').replace('_', ' ')} `{source}`"
    return [f"- fine-tuned from {source}, SHA-256 `{init.get('sha256')}`"]


def _chain(manifests: list[dict[str, Any]]) -> list[str]:
    """Every manifest between the run and the collected files, with its SHA-256."""
    if not manifests:
        return []
    rows = [f"| {m.get('stage')} | `{m.get('prefix')}` | `{m.get('content_sha256')}` |" for m in manifests]
    return ["### Manifests", "", "| stage | prefix | SHA-256 |", "| --- | --- | --- |", *rows, ""]


def _cross_validation(cv: dict[str, Any] | None) -> list[str]:
    """Mean ± sd of every metric over the folds of the run's settings, with each fold's value."""
    if not cv:
        return []
    folds = [r["fold"] for r in cv["runs"]]
    rows = [f"| {k} | {_fmt(m['mean'])} | {_fmt(m['sd'])} | {' / '.join(_fmt(v) for v in m['values'])} |"
            for k, m in cv["metrics"].items()]  # fmt: skip
    return [
        f"### Cross-validation ({cv['folds']} folds)",
        "",
        f"The same settings trained {cv['folds']} times, each fold validated on its own patients and trained on "
        f"the others (`crossval/{cv['cv_id']}/`): an estimate of how well they train; this model is the run above.",
        "",
        f"| metric | mean | sd | folds {' / '.join(map(str, folds))} |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]


def render_model_card(meta: dict[str, Any], picture: str | bool | None) -> str:
    """Markdown for ``docs/README.md``."""
    ours = meta["irmsia"]
    lineage = ours["lineage"]
    net = ours["network"]
    lines = [
        f"# {ours['model_name']} v{ours['registry_version']}",
        "",
        meta["description"],
        "",
        "## Intended use",
        "",
        meta["intended_use"],
        f"Task: {meta['task']}.",
        "",
        "## Model",
        "",
        f"- network: `{net['name']}`, {net['in_channels']} input channel(s), {net['num_classes']} classes "
        f"({', '.join(ours['classes'])}), input size {net.get('image_size') or 'any'}",
        f"- {net.get('dims', 2)}-D input; outputs: {_OUTPUTS.get(ours.get('task'), _OUTPUTS['classification'])}",
        f"- preprocessing: `{meta['network_data_format'].get('preprocessing') or 'see the run config'}`",
        f"- trained by run `{ours['run_id']}`, code version {ours['code_version']}"
        + (f", image `{ours['image']}`" if ours.get("image") else ""),
        *_init_lines(lineage.get("init")),
        "",
        "## Data",
        "",
        f"- dataset: `{lineage.get('dataset') or 'unknown'}` from {lineage.get('source') or 'an unknown source'}",
        f"- licence: {lineage.get('license') or 'unknown'}",
    ]
    for what, label in (("patients", "patients"), ("studies", "studies"), ("series", "series"), ("rows", "images")):
        if counts := lineage.get(f"{what}_per_split"):
            lines.append(f"- {label} per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    evaluation = ours.get("evaluation") or {}
    intervals = evaluation.get("intervals") or {}
    bootstrap = evaluation.get("bootstrap")
    lines += [
        f"- split manifest: `{lineage.get('split_manifest_sha256')}`",
        f"- index manifest: `{lineage.get('index_manifest_sha256')}`",
        "",
        *_sources(lineage.get("datasets") or []),
        *_chain(lineage.get("manifests") or []),
        "## Metrics",
        "",
        f"Chosen metric for promotion: `{ours['metric']['name']}` = {_fmt(ours['metric']['value'])}.",
        "",
    ]
    if bootstrap:
        patients = ", ".join(f"{k} {v}" for k, v in (bootstrap.get("patients") or {}).items())
        lines += [
            f"Intervals: {bootstrap['level']:.0%} {bootstrap['method']} intervals from {bootstrap['resamples']} "
            f"patient-level bootstrap resamples (seed {bootstrap['seed']}; patients {patients}).",
            "",
        ]
    lines += [
        "| metric | value | 95 % interval |",
        "| --- | --- | --- |",
        *(f"| {k} | {_fmt(v)} | {_interval(intervals.get(k))} |" for k, v in ours["metrics"].items()),
        "",
        *_evaluation_lines(evaluation),
        *_cross_validation(ours.get("cross_validation")),
    ]
    lines += _quantization(ours.get("quantization"))
    if picture:
        name = picture if isinstance(picture, str) else "confusion_matrix.png"
        lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({name})", ""]
    lines += [
        "## Files",
        "",
        "| file | SHA-256 |",
        "| --- | --- |",
        *(f"| `{k}` | `{v}` |" for k, v in ours["model_files"].items()),
        "",
        "Check every file and the ledger with `irmsia registry verify "
        f"{ours['model_name']}`; load it with `jobs.register.api.load_model(store, "
        f"{ours['model_name']!r}, version={ours['registry_version']})`.",
        "",
    ]
    return "\n".join(lines)
