"""The model card (``docs/README.md``) of a registered version, generated from its metadata only.

Generated, never hand-edited: it says what the model is for, what data it saw, how it scored, and how to
check and load it, so that the card and ``configs/metadata.json`` cannot disagree.
"""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


_OUTPUTS = {
    "classification": "logits, one per class in the order above; apply softmax for probabilities",
    "multilabel": "logits, one per finding in the order above; apply a sigmoid and each finding's threshold "
    "(`thresholds` in the run config, chosen on val)",
    "segmentation": "one logit map per class in the order above (class i = mask value `label_values[i]`); "
    "argmax for the label map",
}


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


def _chain(manifests: list[dict[str, Any]]) -> list[str]:
    """Every manifest between the run and the collected files, with its SHA-256."""
    if not manifests:
        return []
    rows = [f"| {m.get('stage')} | `{m.get('prefix')}` | `{m.get('content_sha256')}` |" for m in manifests]
    return ["### Manifests", "", "| stage | prefix | SHA-256 |", "| --- | --- | --- |", *rows, ""]


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
        "",
        "## Data",
        "",
        f"- dataset: `{lineage.get('dataset') or 'unknown'}` from {lineage.get('source') or 'an unknown source'}",
        f"- licence: {lineage.get('license') or 'unknown'}",
    ]
    for what, label in (("patients", "patients"), ("studies", "studies"), ("series", "series"), ("rows", "images")):
        if counts := lineage.get(f"{what}_per_split"):
            lines.append(f"- {label} per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
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
        "| metric | value |",
        "| --- | --- |",
        *(f"| {k} | {_fmt(v)} |" for k, v in ours["metrics"].items()),
        "",
    ]
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
