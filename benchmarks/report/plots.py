"""PNG plots: latency vs offered rate (sweeps), latency CDFs (all rows; per protocol: gRPC V2, HTTP), server and client CPU per call (comparison), and
how cost grows with rows, models and workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter

from benchmarks.report.results import figure

PCT_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def _top(e: dict[str, Any]) -> str:
    closed = e.get("closed") or {}
    return max(closed, key=int) if closed else "8"


def latency_vs_rate(entries: list[dict[str, Any]], slo_ms: float, path: Path) -> Path:
    swept = [e for e in entries if e.get("sweep", {}).get("steps")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), sharey=True)
    for ax, key, label in zip(axes, ("p50_ms", "p99_ms", "p999_ms"), ("p50", "p99", "p99.9"), strict=True):
        for e in swept:
            steps = e["sweep"]["steps"]
            ax.plot([s["target_rps"] for s in steps], [max(s[key], 1e-3) for s in steps], marker="o", label=e["label"])
        ax.axhline(slo_ms, color="red", linestyle="--", linewidth=1, label=f"SLO {slo_ms:g} ms")
        ax.set_title(f"{label} latency vs offered rate (median sweep)")
        ax.set_xlabel("offered rate (requests/s)")
        ax.set_xscale("log")  # sweep rates grow geometrically
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, from intended send time)")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _nines(pct: float) -> float:
    """Percentile -> 1 / (1 - p): spreads the tail so p99 and p99.9 get as much room as p50."""
    return 1.0 / max(1.0 - pct / 100.0, 1e-6)


def _cdf_axes(ax: Any, curves: list[tuple[str, list[Any] | None, str]], title: str) -> None:
    """Latency CDF curves (label, [(ms, percentile)], line style) on a percentile axis stretched toward the tail."""
    for label, cdf, style in curves:
        points = [p for p in cdf or [] if p[1] < 100.0] or cdf or []
        if points:
            ax.plot([_nines(p) for _, p in points], [v for v, _ in points], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator([_nines(p) for p in PCT_TICKS]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{100 * (1 - 1 / x):g}%"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left")


def latency_cdf(entries: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 5.5))
    curves = [(f"{e['label']} closed c=1", e.get("cdf_c1"), "-") for e in entries if e["section"] == "compare"]
    curves += [
        (f"{e['label']} at {e['fixed']['target_rps']:g} rps", e["fixed"].get("cdf"), "-")
        for e in entries
        if e["section"] == "scenarios" and "fixed" in e
    ]
    _cdf_axes(ax, curves, "Latency distribution: comparison rows (closed loop, c=1) and fixed-rate scenario runs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def protocol_curves(entries: list[dict[str, Any]], protocol: str, rows: int) -> list[tuple[str, Any, str]]:
    """One protocol's closed-loop CDFs at `rows`: gRPC V2 = the comparison's V2 rows under the project's client
    (c=1); HTTP = the HTTP field under wrk, c=1 solid and the top concurrency dashed."""
    if protocol == "grpc":
        mine = [e for e in entries if e["section"] == "compare" and e["api"] == "v2" and e["client"] == "python"]
        return [(e["name"], e.get("cdf_c1"), f"C{i}-") for i, e in enumerate(e for e in mine if e["rows"] == rows)]
    curves = []
    for i, e in enumerate(e for e in entries if e["section"] == "http" and e["rows"] == rows):
        runs = e.get("http") or {}
        for c in sorted(runs, key=int):  # one colour per server: c=1 solid, higher concurrencies dashed
            curves.append((f"{e['name']} c={c}", runs[c].get("cdf"), f"C{i}-" if c == "1" else f"C{i}--"))
    return curves


def protocol_cdf(entries: list[dict[str, Any]], protocol: str, rows_list: list[int], path: Path) -> Path:
    """The per-protocol latency CDF plot: one panel per rows per call."""
    n = max(1, len(rows_list))
    fig, axes = plt.subplots(1, n, figsize=(8 * n, 5.5), squeeze=False)
    name = "gRPC KServe V2, the project's client" if protocol == "grpc" else "HTTP, one client for all (wrk)"
    for ax, rows in zip(axes[0], rows_list, strict=False):
        _cdf_axes(ax, protocol_curves(entries, protocol, rows), f"{name}: {rows} row{'s' if rows > 1 else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cpu_per_call(entries: list[dict[str, Any]], rows_list: list[int], path: Path) -> Path:
    fig, axes = plt.subplots(1, max(1, len(rows_list)), figsize=(7 * max(1, len(rows_list)), 5), squeeze=False)
    for ax, rows in zip(axes[0], rows_list, strict=False):
        mine = [e for e in entries if e["section"] == "compare" and e["rows"] == rows and "closed" in e]
        labels = [e["name"] for e in mine]
        for offset, key, color in (
            (-0.2, "server_cpu_us_per_call", "tab:blue"),
            (0.2, "client_cpu_us_per_call", "tab:gray"),
        ):
            where = [f"closed.{_top(e)}" for e in mine]
            med = [figure(e, w, key) or 0.0 for e, w in zip(mine, where, strict=True)]
            lo = [m - (figure(e, w, key, "min") or m) for e, w, m in zip(mine, where, med, strict=True)]
            hi = [(figure(e, w, key, "max") or m) - m for e, w, m in zip(mine, where, med, strict=True)]
            ax.barh(
                [i + offset for i in range(len(mine))],
                med,
                height=0.4,
                xerr=[lo, hi],
                color=color,
                label="server" if key.startswith("server") else "client",
                capsize=3,
            )
        ax.set_yticks(range(len(mine)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("CPU µs per call (closed loop, top concurrency; bars: median, whiskers: min-max)")
        ax.set_title(f"CPU per call, {rows} row{'s' if rows > 1 else ''}")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def growth(entries: list[dict[str, Any]], path: Path) -> Path:
    dims = (
        ("growth-rows", "rows", "rows per call"),
        ("growth-models", "models", "models per call"),
        ("growth-workers", "workers", "worker processes"),
    )
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for col, (dim, axis, title) in enumerate(dims):
        mine = [e for e in entries if dim in (e.get("params") or {}).get("dimensions", []) and "closed" in e]
        for api in sorted({e["api"] for e in mine}):
            line = sorted((e for e in mine if e["api"] == api), key=lambda e: e["params"][axis])
            xs = [e["params"][axis] for e in line]
            axes[0][col].plot(
                xs, [figure(e, f"closed.{_top(e)}", "server_cpu_us_per_call") for e in line], marker="o", label=f"{api}"
            )
            axes[1][col].plot(xs, [figure(e, "closed.1", "p99_ms") for e in line], marker="o", label=f"{api} c=1")
            axes[1][col].plot(
                xs,
                [figure(e, f"closed.{_top(e)}", "p99_ms") for e in line],
                marker="s",
                linestyle="--",
                label=f"{api} c={_top(line[0])}",
            )
        for row, ylabel in ((0, "server CPU µs per call"), (1, "p99 latency (ms)")):
            ax = axes[row][col]
            if axis == "rows":
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(title)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        axes[0][col].set_title(f"sibyl cost vs {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    entries = [e for e in doc["entries"] if "skipped" not in e]
    return [
        latency_vs_rate(entries, doc["settings"]["slo_ms"], out / "latency_vs_rate.png"),
        latency_cdf(entries, out / "latency_cdf.png"),
        protocol_cdf(entries, "grpc", list(doc["settings"]["compare_rows"]), out / "latency_cdf_grpc.png"),
        protocol_cdf(entries, "http", list(doc["settings"]["compare_rows"]), out / "latency_cdf_http.png"),
        cpu_per_call(entries, list(doc["settings"]["compare_rows"]), out / "cpu_per_call.png"),
        growth(entries, out / "growth.png"),
    ]
