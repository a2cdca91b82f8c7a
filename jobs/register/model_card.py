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
    if patients := lineage.get("patients_per_split"):
        lines.append("- patients per split: " + ", ".join(f"{k} {v}" for k, v in patients.items()))
    if rows := lineage.get("rows_per_split"):
        lines.append("- images per split: " + ", ".join(f"{k} {v}" for k, v in rows.items()))
    lines += [
        f"- split manifest: `{lineage.get('split_manifest_sha256')}`",
        f"- index manifest: `{lineage.get('index_manifest_sha256')}`",
        "",
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
