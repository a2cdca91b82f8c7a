"""``report.html``: one self-contained page per run that a clinician can read without the pipeline.

Inline SVG only (no scripts, no external files, no fonts), rendered from what the run already sealed: metrics with
their patient-bootstrap intervals, confusion matrices, ROC and precision-recall curves per class, the reliability
diagram, operating points, subgroups, training curves, split statistics and lineage. Deterministic: the same run
renders the same bytes. No torch here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jobs.ml.predictions import Scored

REPORT = "report.html"
_W, _H, _PAD = 320, 240, 36
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
    "svg{border:1px solid #ddd;margin:4px}.small{color:#888}h2{border-bottom:1px solid #ccc}"
)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _e("" if value is None else value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


# -- curves ----------------------------------------------------------------------------------------------------
def roc_points(positive: np.ndarray, scores: np.ndarray) -> list[tuple[float, float]]:
    """``(false positive rate, true positive rate)`` from (0, 0) to (1, 1), one step per distinct score."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return []
    points = [(0.0, 0.0)]
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        points.append((float((predicted & ~positive).sum() / n_neg), float((predicted & positive).sum() / n_pos)))
    return points


def pr_points(positive: np.ndarray, scores: np.ndarray) -> list[tuple[float, float]]:
    """``(recall, precision)`` per distinct score threshold, highest threshold first."""
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    if not n_pos:
        return []
    points = []
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        tp = int((predicted & positive).sum())
        points.append((tp / n_pos, tp / int(predicted.sum())))
    return points


Series = Sequence[tuple[str, Sequence[tuple[float, float]]]]


def _svg(title: str, xlabel: str, ylabel: str, series: Series, *, diagonal: bool = False, ymax: float = 1.0,
         bars: Sequence[tuple[float, float, float]] = ()) -> str:  # fmt: skip
    """An SVG plot of ``series`` (label, points in [0, 1] x [0, ymax]); ``bars`` are ``(x0, x1, height)``."""
    iw, ih = _W - 2 * _PAD, _H - 2 * _PAD

    def px(x: float, y: float) -> tuple[str, str]:
        return f"{_PAD + x * iw:.1f}", f"{_H - _PAD - (y / ymax) * ih:.1f}"

    def xy(x: float, y: float) -> str:
        return ",".join(px(x, y))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}">',
             f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{_e(title)}</text>',
             f'<rect x="{_PAD}" y="{_PAD}" width="{iw}" height="{ih}" fill="none" stroke="#999"/>',
             f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle" font-size="11">{_e(xlabel)}</text>',
             f'<text x="10" y="{_H / 2}" font-size="11" transform="rotate(-90 10 {_H / 2})" '
             f'text-anchor="middle">{_e(ylabel)}</text>']  # fmt: skip
    for tick in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{_PAD + tick * iw:.1f}" y="{_H - _PAD + 12}" font-size="9" text-anchor="middle">'
                     f"{tick:g}</text>")  # fmt: skip
        parts.append(f'<text x="{_PAD - 4}" y="{_H - _PAD - tick * ih + 3:.1f}" font-size="9" text-anchor="end">'
                     f"{tick * ymax:g}</text>")  # fmt: skip
    if diagonal:
        (ax, ay), (bx, by) = px(0, 0), px(1, ymax)
        parts.append(f'<line x1="{ax}" y1="{ay}" x2="{bx}" y2="{by}" stroke="#ccc" stroke-dasharray="4"/>')
    for x0, x1, height in bars:
        top = px(x0, height)
        parts.append(f'<rect x="{top[0]}" y="{top[1]}" width="{(x1 - x0) * iw:.1f}" height="{height / ymax * ih:.1f}"'
                     ' fill="#9ecae1" stroke="#fff"/>')  # fmt: skip
    for i, (label, points) in enumerate(series):
        if not points:
            continue
        colour = _COLOURS[i % len(_COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
                     f'points="{" ".join(xy(x, y) for x, y in points)}"/>')  # fmt: skip
        parts.append(f'<text x="{_PAD + 6}" y="{_PAD + 14 + 12 * i}" font-size="10" fill="{colour}">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _curves(scored: Scored, classes: Sequence[str]) -> str:
    roc = [(c, roc_points(scored.labels == i, scored.probs[:, i])) for i, c in enumerate(classes)]
    pr = [(c, pr_points(scored.labels == i, scored.probs[:, i])) for i, c in enumerate(classes)]
    return _svg("ROC (one vs rest)", "false positive rate", "sensitivity", roc, diagonal=True) + _svg(
        "precision-recall", "recall", "precision", pr
    )


def _reliability(section: Mapping[str, Any], split: str) -> str:
    bins = [(b["low"], b["high"], b["accuracy"]) for b in section.get("bins", []) if b.get("count")]
    means = [(b["confidence"], b["accuracy"]) for b in section.get("bins", []) if b.get("count")]
    title = f"reliability ({split}, ECE {_num(section.get('ece'))})"
    return _svg(title, "confidence", "accuracy", [("bin mean", means)], diagonal=True, bars=bins)


def _history(history: Sequence[Mapping[str, Any]]) -> str:
    if not history:
        return ""
    epochs = [h["epoch"] for h in history]
    span = max(1, max(epochs) - min(epochs))
    losses = [v for h in history for v in (h.get("train_loss"), h.get("val_loss")) if v is not None]
    top = max(losses) * 1.1 if losses else 1.0

    def series(key: str) -> list[tuple[float, float]]:
        return [((h["epoch"] - min(epochs)) / span, h[key]) for h in history if h.get(key) is not None]

    return _svg("loss per epoch", "epoch", "cross-entropy", [("train", series("train_loss")),
                ("val", series("val_loss"))], ymax=top) + _svg("val metrics per epoch", "epoch", "score",
                [("accuracy", series("val_accuracy")), ("auc", series("val_auc")),
                 ("dice", series("val_dice"))])  # fmt: skip


# -- sections --------------------------------------------------------------------------------------------------
def _headline(metrics: Mapping[str, Any]) -> str:
    intervals = metrics.get("intervals") or {}
    rows = []
    for split in ("val", "test"):
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "exact_match", "dice", "hd95", "loss"):
            key = f"{split}_{name}"
            if key in metrics:
                ci = intervals.get(key)
                rows.append([key, metrics[key], f"{ci['low']:.4f} - {ci['high']:.4f}" if ci else "n/a"])
    boot = metrics.get("bootstrap")
    note = (f"<p class='small'>95 % percentile intervals from {boot['resamples']} patient-level bootstrap resamples "
            f"(seed {boot['seed']}); patients: {_e(boot.get('patients'))}</p>") if boot else ""  # fmt: skip
    return _table(["metric", "value", "95 % interval"], rows) + note


def _confusion(details: Mapping[str, Any]) -> str:
    out = []
    for split, d in details.items():
        classes = d.get("classes") or []
        cm = d.get("confusion_matrix") or []
        rows = [[f"true {c}", *row] for c, row in zip(classes, cm, strict=False)]
        out.append(f"<h3>{_e(split)}</h3>" + _table(["", *(f"predicted {c}" for c in classes)], rows))
        per_class = d.get("per_class") or {}
        out.append(_table(["class", "support", "AUC", "sensitivity", "specificity", "precision", "F1"],
                          [[c, p.get("support"), p.get("auc"), p.get("sensitivity"), p.get("specificity"),
                            p.get("precision"), p.get("f1")] for c, p in per_class.items()]))  # fmt: skip
    return "".join(out)


def _operating_points(points: Mapping[str, Any]) -> str:
    rows = []
    for c, by_name in points.items():
        for name, p in by_name.items():
            val, test = (p or {}).get("val", {}), (p or {}).get("test", {})
            rows.append([c, name, p["threshold"] if p else "n/a", val.get("sensitivity"), val.get("specificity"),
                         test.get("sensitivity"), test.get("specificity")])  # fmt: skip
    return _table(["class", "point", "threshold", "val sens.", "val spec.", "test sens.", "test spec."], rows)


def _subgroups(subgroups: Mapping[str, Any]) -> str:
    rows = []
    for split, columns in subgroups.items():
        for column, groups in columns.items():
            for value, g in groups.items():
                scores = ["too small"] * 3 if g.get("too_small") else [g.get("accuracy"), g.get("balanced_accuracy"),
                                                                        g.get("auc")]  # fmt: skip
                rows.append([split, column, value, g["n"], g["patients"], *scores])
    if not rows:
        return "<p>No index column with two or more values (modality, body part, sex, age band…) in val or test.</p>"
    return _table(["split", "column", "value", "images", "patients", "accuracy", "balanced accuracy", "AUC"], rows)


def render_report(
    *,
    run_id: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    scored: Mapping[str, Scored],
    split_stats: Mapping[str, Any] | None,
) -> bytes:
    """The HTML page for one run."""
    classes = list(config.get("classes") or [])
    calibration = metrics.get("calibration") or {}
    if config.get("task", "classification") != "classification":
        return _page(run_id, _task_body(run_id, config, metrics, history, split_stats))
    body = [
        f"<h1>Run {_e(run_id)}</h1>",
        f"<p>{_e(config.get('model'))} on dataset <b>{_e(config.get('dataset'))}</b>, "
        f"classes {_e(', '.join(classes))}; "
        f"best epoch {_e(metrics.get('best_epoch'))} of {_e(metrics.get('epochs_run'))} "
        f"(monitor val {_e(metrics.get('monitor'))}).</p>",
        "<h2>Metrics</h2>", _headline(metrics),
        "<h2>Confusion matrices and per-class scores</h2>", _confusion(metrics.get("details") or {}),
        "<h2>ROC and precision-recall</h2>",
        *(f"<h3>{_e(split)}</h3>" + _curves(s, classes) for split, s in scored.items() if len(s.labels)),
        "<h2>Calibration</h2>",
        f"<p>Temperature {_e(calibration.get('temperature', 1.0))} "
        f"(fitted on {_e(calibration.get('fitted_on') or 'nothing: not calibrated')}).</p>",
        *(_reliability(calibration[split], split) for split in ("val", "test") if split in calibration),
        "<h2>Operating points (chosen on val, evaluated on test)</h2>",
        _operating_points(metrics.get("operating_points") or {}),
        "<h2>Subgroups</h2>", _subgroups(metrics.get("subgroups") or {}),
        "<h2>Training</h2>", _history(history),
        "<h2>Split</h2>",
        f"<pre>{_e(_pretty(split_stats))}</pre>" if split_stats else "<p>no split statistics</p>",
        "<h2>Lineage</h2>", _lineage(run_id, config),
    ]  # fmt: skip
    return _page(run_id, body)


def _lineage(run_id: str, config: Mapping[str, Any]) -> str:
    init = config.get("init")  # a fine-tuned run's starting weights (``--init``)
    started = [["fine-tuned from", f"{init.get('source')} (SHA-256 {init.get('sha256')})"]] if init else []
    return _table(["what", "value"], [["run", run_id], *started,
                                      ["split manifest", config.get("split_manifest_sha256")],
                                      ["code version", config.get("code_version")],
                                      ["preprocessing", _pretty(config.get("preprocessing"))]])  # fmt: skip


def _task_body(
    run_id: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    split_stats: Mapping[str, Any] | None,
) -> list[str]:
    """A multi-label or segmentation run: metrics with intervals, per-finding/class scores, what does not apply."""
    per_split = []
    for split, d in (metrics.get("details") or {}).items():
        per_class = d.get("per_class") or {}
        columns = sorted({k for p in per_class.values() if isinstance(p, dict) for k in p})
        per_split.append(f"<h3>{_e(split)}</h3>" + _table(["class", *columns],
                         [[c, *(p.get(k) for k in columns)] for c, p in per_class.items()]))  # fmt: skip
    skipped = [[part, why] for part, why in (metrics.get("not_applicable") or {}).items()]
    return [
        f"<h1>Run {_e(run_id)}</h1>",
        f"<p>{_e(config.get('model'))} ({_e(config.get('task'))}) on dataset <b>{_e(config.get('dataset'))}</b>, "
        f"classes {_e(', '.join(config.get('classes') or []))}; best epoch {_e(metrics.get('best_epoch'))} of "
        f"{_e(metrics.get('epochs_run'))} (monitor val {_e(metrics.get('monitor'))}).</p>",
        "<h2>Metrics</h2>", _headline(metrics),
        "<h2>Per class</h2>", *per_split,
        "<h2>Not applicable to this task</h2>", _table(["part", "why"], skipped),
        "<h2>Training</h2>", _history(history),
        "<h2>Split</h2>",
        f"<pre>{_e(_pretty(split_stats))}</pre>" if split_stats else "<p>no split statistics</p>",
        "<h2>Lineage</h2>", _lineage(run_id, config),
    ]  # fmt: skip


def _page(run_id: str, body: Sequence[str]) -> bytes:
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>IRMSIA run {_e(run_id)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return page.encode("utf-8")


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=1, sort_keys=True, default=str)
