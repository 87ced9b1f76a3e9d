"""`sibyl models compare`: the primary against each shadow and arm on the same labelled rows, per slice, with 95%
confidence intervals and a verdict per pair; and the promote gate built on it.

Read from the monitor's state dir (every partition's SQLite file, read-only; the monitor may be writing): the
joined rows since `since`, each with its outcome, its slice labels and every model's score. A pair is compared on
the rows both models scored (paired): AUC difference by DeLong's method, log-loss and Brier differences by a normal
interval on the per-row differences (sibyl.quality.compare). The JSON form is documented in docs/monitoring.md and
stable.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sibyl.errors import FailedPrecondition, NotFound
from sibyl.monitor.state import PAIR, SEP, model_parts
from sibyl.quality import binary, regression
from sibyl.quality.compare import delong, paired_loss_diff, verdict
from sibyl.serving.slices import label_order

HIGHER_IS_BETTER = {"auc": True, "log_loss": False, "brier": False}


@dataclass
class Joined:
    """The labelled rows of one predictor: per row its outcome, weight, slice labels and models' scores."""

    labels: np.ndarray  # float64 [n]
    weights: np.ndarray  # float64 [n]
    slices: list[list[str]]
    scores: dict[str, np.ndarray]  # model text (model, version, role) -> float32 [n], NaN where it did not score


def read_joined(state_dir: Path, predictor: str, since_ns: int) -> Joined:
    files = sorted(state_dir.glob("partition-*.db"))
    if not files:
        raise NotFound(f"no monitor state in {state_dir}: run `sibyl monitor` (same settings as `sibyl serve`)")
    labels: list[float] = []
    weights: list[float] = []
    slices: list[list[str]] = []
    by_model: dict[str, dict[int, float]] = defaultdict(dict)
    for path in files:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = dict(db.execute("SELECT id, text FROM names").fetchall())
            ids = [i for i, text in names.items() if text == predictor]
            if not ids:
                continue
            query = (
                "SELECT slices, label, weight, scores FROM rows WHERE label IS NOT NULL AND at >= ? AND predictor = ?"
            )
            for slice_id, label, weight, blob in db.execute(query, (since_ns, ids[0])):
                i = len(labels)
                labels.append(label)
                weights.append(weight)
                slices.append(names[slice_id].split(SEP) if slice_id is not None else ["all"])
                for model, score in np.frombuffer(blob, PAIR).tolist():
                    by_model[names[model]][i] = score
        finally:
            db.close()
    n = len(labels)
    scores = {}
    for model, values in by_model.items():
        column = np.full(n, np.nan, np.float32)
        column[list(values)] = list(values.values())
        scores[model] = column
    return Joined(np.asarray(labels, np.float64), np.asarray(weights, np.float64), slices, scores)


def _metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, float | None]:
    """The binary metrics when the outcomes are 0/1 and the scores probabilities (else None), MAE and RMSE always."""
    out: dict[str, float | None] = {"auc": None, "log_loss": None, "brier": None, "ece": None}
    if bool(np.isin(y, (0.0, 1.0)).all()) and (p.size == 0 or (p.min() >= 0.0 and p.max() <= 1.0)):
        out = {"auc": binary.auc(y, p, w), "log_loss": binary.log_loss(y, p, w), "brier": binary.brier(y, p, w),
               "ece": binary.ece(y, p, w)}  # fmt: skip
    return out | {"mae": regression.mae(y, p, w), "rmse": regression.rmse(y, p, w)}


def compare(
    state_dir: Path, predictor: str, since_s: float, slice_name: str | None = None, min_rows: int = 200
) -> dict[str, Any]:
    joined = read_joined(state_dir, predictor, time.time_ns() - int(since_s * 1e9))
    primaries = [m for m in joined.scores if model_parts(m)[2] == "primary"]
    candidates = [m for m in joined.scores if model_parts(m)[2] != "primary"]
    pairs = []
    for reference in primaries:
        for candidate in candidates:
            both = ~np.isnan(joined.scores[reference]) & ~np.isnan(joined.scores[candidate])
            if not both.any():
                continue
            pairs.append(_pair(joined, reference, candidate, both, slice_name, min_rows))
    return {"predictor": predictor, "since_s": since_s, "labelled_rows": int(joined.labels.size), "pairs": pairs}


def _pair(
    joined: Joined, reference: str, candidate: str, both: np.ndarray, slice_name: str | None, min_rows: int
) -> dict[str, Any]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i in np.flatnonzero(both).tolist():
        for label in joined.slices[i]:
            if slice_name is None or label == "all" or label.split("=", 1)[0] == slice_name:
                groups[label].append(i)
    rows = []
    for label in sorted(groups, key=label_order):
        index = np.asarray(groups[label])
        y, w = joined.labels[index], joined.weights[index]
        a = joined.scores[reference][index].astype(np.float64)
        b = joined.scores[candidate][index].astype(np.float64)
        row: dict[str, Any] = {
            "slice": label,
            "rows": int(index.size),
            "primary": _metrics(y, a, w),
            "candidate": _metrics(y, b, w),
        }
        # Differences are candidate - primary: a positive AUC difference, a negative loss difference favour it.
        binary_labels = row["primary"]["auc"] is not None and row["candidate"]["auc"] is not None
        auc = delong(y, b, a) if binary_labels else None
        row["auc_diff"] = None if auc is None else {"value": auc.difference, "ci95": list(auc.ci)}
        for kind in ("log_loss", "brier"):
            d = paired_loss_diff(y, b, a, kind=kind, w=w) if binary_labels else None
            row[f"{kind}_diff"] = None if d is None else {"value": d.difference, "ci95": list(d.ci)}
        row["verdict"] = verdict(auc.ci, True, min_rows, int(index.size)) if auc else "not enough evidence"
        rows.append(row)
    p_model, p_version, _ = model_parts(reference)
    c_model, c_version, c_role = model_parts(candidate)
    return {
        "primary": {"model": p_model, "version": p_version},
        "candidate": {"model": c_model, "version": c_version, "role": c_role},
        "slices": rows,
    }


def gate(result: dict[str, Any], candidate: str, metric: str, min_rows: int, max_loss: float) -> dict[str, Any]:
    """The evidence that `candidate` (model@version) may replace the primary: raises FailedPrecondition with one
    line naming the metric, slice and numbers unless every slice with min_rows rows ("all" must have them) loses at
    most max_loss of `metric` against the primary."""
    name, _, version = candidate.partition("@")
    pairs = [p for p in result["pairs"] if (p["candidate"]["model"], p["candidate"]["version"]) == (name, version)]
    if not pairs:
        raise FailedPrecondition(
            f"gate: no labelled rows scored by {candidate} beside the primary of {result['predictor']}; "
            "run it as a shadow or an arm first (or promote with --force)"
        )
    slices = pairs[-1]["slices"]
    everything = next((s for s in slices if s["slice"] == "all"), None)
    if everything is None or everything["rows"] < min_rows:
        have = 0 if everything is None else everything["rows"]
        raise FailedPrecondition(f"gate: {candidate} has {have} labelled rows (slice all), the gate needs {min_rows}")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    for s in slices:
        ours, theirs = s["candidate"][metric], s["primary"][metric]
        if s["rows"] < min_rows or ours is None or theirs is None:
            continue
        loss = sign * (theirs - ours)  # how much worse the candidate is
        if loss > max_loss:
            raise FailedPrecondition(
                f"gate: {candidate} {metric} {ours:.4f} vs primary {theirs:.4f} on slice {s['slice']} "
                f"({s['rows']} rows): worse by {loss:.4f}, more than the allowed {max_loss:g}"
            )
    return {"metric": metric, "min_rows": min_rows, "max_loss": max_loss, "slices": slices}


def _n(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    low, high = d["ci95"]
    return f"{d['value']:+.4f} [{low:+.4f}, {high:+.4f}]"


def table(result: dict[str, Any]) -> str:
    """The comparison as aligned text: one block per pair, one line per slice."""
    if not result["pairs"]:
        return (
            f"predictor {result['predictor']}: {result['labelled_rows']} labelled rows and no candidate beside the "
            "primary on them (a shadow or an arm gives one)\n"
        )
    lines = []
    head = (f"{'slice':<24} {'rows':>7} {'AUC p/c':>15} {'AUC c-p [95% CI]':>30} {'log loss p/c':>15} "
            f"{'Brier p/c':>15} {'ECE p/c':>15}  verdict")  # fmt: skip
    for pair in result["pairs"]:
        c, p = pair["candidate"], pair["primary"]
        lines += [f"{c['model']}@{c['version']} ({c['role']}) vs primary {p['model']}@{p['version']}", head]
        for r in pair["slices"]:
            a, b = r["primary"], r["candidate"]
            lines.append(
                f"{r['slice']:<24} {r['rows']:>7} {_n(a['auc']) + '/' + _n(b['auc']):>15} {_diff(r['auc_diff']):>30} "
                f"{_n(a['log_loss']) + '/' + _n(b['log_loss']):>15} {_n(a['brier']) + '/' + _n(b['brier']):>15} "
                f"{_n(a['ece']) + '/' + _n(b['ece']):>15}  {r['verdict']}"
            )
        lines.append("")
    return "\n".join(lines)
