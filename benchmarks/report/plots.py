"""PNG plots: latency percentiles vs offered rate (from the sweeps) and a latency CDF per scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter

PCT_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def latency_vs_rate(entries: list[dict[str, Any]], slo_ms: float, path: Path) -> Path:
    swept = [e for e in entries if e.get("sweep")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    for ax, key, label in zip(axes, ("p50_ms", "p99_ms", "p999_ms"), ("p50", "p99", "p99.9"), strict=True):
        for e in swept:
            steps = e["sweep"]
            ax.plot([s["target_rps"] for s in steps], [max(s[key], 1e-3) for s in steps], marker="o", label=e["name"])
        ax.axhline(slo_ms, color="red", linestyle="--", linewidth=1, label=f"SLO {slo_ms:g} ms")
        ax.set_title(f"{label} latency vs offered rate")
        ax.set_xlabel("offered rate (requests/s)")
        ax.set_xscale("log")  # sweep rates grow geometrically
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, from intended send time)")
    axes[-1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _nines(pct: float) -> float:
    """Percentile -> 1 / (1 - p): spreads the tail so p99 and p99.9 get as much room as p50."""
    return 1.0 / max(1.0 - pct / 100.0, 1e-6)


def latency_cdf(entries: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for e in entries:
        points = [p for p in e.get("cdf") or [] if p[1] < 100.0] or e.get("cdf") or []
        if not points:
            continue
        rate = "closed loop" if e.get("mode") == "inprocess" else f"{e.get('target_rps', 0):g} rps"
        ax.plot([_nines(p) for _, p in points], [v for v, _ in points], label=f"{e['name']} ({rate})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator([_nines(p) for p in PCT_TICKS]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{100 * (1 - 1 / x):g}%"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency distribution per scenario (fixed-rate runs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    entries = [e for e in doc["scenarios"] if "skipped" not in e]
    return [
        latency_vs_rate(entries, doc["settings"]["slo_ms"], out / "latency_vs_rate.png"),
        latency_cdf(entries, out / "latency_cdf.png"),
    ]
