"""results.json and results.md from one run: the comparison (per rows per call), perf_analyzer, the HTTP field, the floors, the
scenarios, how cost grows, memory and the targets. Repeated figures read "median (min-max)"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report.results import figure

CLIENT_BOUND = 0.9  # client cores over the window: at or above, the client may be what limited the run


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.3f}"


def cell(e: dict[str, Any], where: str, key: str) -> str:
    return _spread(*(figure(e, where, key, s) for s in ("median", "min", "max")))


def _spread(med: float | None, lo: float | None, hi: float | None) -> str:
    """ "median (min-max)", the median alone when the runs agree, "-" without one."""
    if med is None:
        return "-"
    if lo is None or hi is None or lo == hi:
        return _fmt(med)
    return f"{_fmt(med)} ({_fmt(lo)}-{_fmt(hi)})"


def top(e: dict[str, Any]) -> str:
    closed = e.get("closed") or {}
    return max(closed, key=int) if closed else "8"


def _client_flag(e: dict[str, Any]) -> str:
    cores = figure(e, f"closed.{top(e)}", "client_cores", "max")
    return " (client-bound?)" if cores is not None and cores >= CLIENT_BOUND else ""


def _errors(e: dict[str, Any]) -> str:
    total: dict[str, int] = {}
    for c in (e.get("closed") or {}).values():
        for r in c["runs"]:
            for code, n in r["errors"].items():
                total[code] = total.get(code, 0) + n
    for code, n in ((e.get("fixed") or {}).get("errors") or {}).items():
        total[code] = total.get(code, 0) + n
    return ", ".join(f"{code} {n}" for code, n in sorted(total.items())) or "0"


def _skipped(entries: list[dict[str, Any]]) -> list[str]:
    return [f"| {e['label']} | skipped: {e['skipped']} |" for e in entries if "skipped" in e]


def comparison(entries: list[dict[str, Any]], rows: int, slo_ms: float) -> list[str]:
    rows_of = [e for e in entries if e["section"] == "compare" and e["rows"] == rows and e["client"] == "python"]
    if not rows_of:
        return []
    c = top(next((e for e in rows_of if "closed" in e), {}))
    per_row = rows > 1
    head = (
        f"| server | kind | API | c=1 p50 ms | c=1 p99 ms | c=1 p99.9 ms | c={c} req/s | c={c} p99 ms "
        f"| c={c} p99.9 ms | server CPU µs/call | client CPU µs/call "
        f"| {'rows per server CPU-s | ' if per_row else ''}max rps at p99 <= {slo_ms:g} ms |"
    )
    lines = [f"### {rows} row{'s' if rows > 1 else ''} per call", "", head, "|---|---|---|" + "---:|" * (9 + per_row)]
    for e in rows_of:
        if "skipped" in e:
            continue
        cpu = figure(e, f"closed.{c}", "server_cpu_us_per_call")
        extra = f"{_fmt(rows / (cpu * 1e-6)) if cpu else '-'} | " if per_row else ""
        lines.append(
            f"| {e['name']} | {e['kind']} | {e['api']} | {cell(e, 'closed.1', 'p50_ms')} | {cell(e, 'closed.1', 'p99_ms')} "
            f"| {cell(e, 'closed.1', 'p999_ms')} | {cell(e, f'closed.{c}', 'achieved_rps')}{_client_flag(e)} "
            f"| {cell(e, f'closed.{c}', 'p99_ms')} | {cell(e, f'closed.{c}', 'p999_ms')} "
            f"| {cell(e, f'closed.{c}', 'server_cpu_us_per_call')} | {cell(e, f'closed.{c}', 'client_cpu_us_per_call')} "
            f"| {extra}{cell(e, 'sweep', 'max_rps') if 'sweep' in e else '-'} |"
        )
    return [*lines, *_skipped(rows_of), ""]


def perf_table(entries: list[dict[str, Any]]) -> list[str]:
    runs = [e for e in entries if e["client"] == "perf_analyzer"]
    if not runs:
        return []
    lines = [
        "### perf_analyzer (C++ client, closed loop)",
        "",
        "| server | rows | concurrency | req/s | p50 ms | p99 ms | server CPU µs/call | client CPU µs/call | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in runs:
        for c, node in sorted((e.get("perf") or {}).items(), key=lambda kv: int(kv[0])):
            w = f"perf.{c}"
            errors = "; ".join(node.get("errors") or []) or "0"
            lines.append(
                f"| {e['name']} | {e['rows']} | {c} | {cell(e, w, 'requests_per_s')} | {cell(e, w, 'p50_ms')} "
                f"| {cell(e, w, 'p99_ms')} | {cell(e, w, 'server_cpu_us_per_call')} "
                f"| {cell(e, w, 'client_cpu_us_per_call')} | {errors} |"
            )
    return [*lines, *_skipped(runs), ""]


def http_table(entries: list[dict[str, Any]]) -> list[str]:
    """The HTTP field: every server under wrk, closed loop, per rows and concurrency; skipped ones with why."""
    rows_of = [e for e in entries if e["section"] == "http"]
    if not rows_of:
        return []
    lines = [
        "## HTTP, one client for all (wrk)",
        "",
        "wrk 4.1 (C, one thread, closed loop: c connections, each sending its next request when the last is "
        "answered), each server's own body for the same rows; its scores checked equal to onnxruntime's first. "
        "Errors: connect/read/write/timeout and answers outside 2xx. Idle cores: the server tree's CPU with no "
        "calls (read before the runs), a part of its CPU per call under load.",
        "",
        "| server | rows | c | p50 ms | p99 ms | p99.9 ms | req/s | server CPU µs/call | client CPU µs/call "
        "| idle cores | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in sorted(rows_of, key=lambda e: e["rows"]):
        for c, node in sorted((e.get("http") or {}).items(), key=lambda kv: int(kv[0])):
            w = f"http.{c}"
            total = sum(r["errors"] for r in node["runs"])
            failed = "; ".join(node.get("failed") or [])
            lines.append(
                f"| {e['name']} | {e['rows']} | {c} | {cell(e, w, 'p50_ms')} | {cell(e, w, 'p99_ms')} "
                f"| {cell(e, w, 'p999_ms')} | {cell(e, w, 'requests_per_s')} | {cell(e, w, 'server_cpu_us_per_call')} "
                f"| {cell(e, w, 'client_cpu_us_per_call')} | {_fmt((e.get('params') or {}).get('idle_cores'))} "
                f"| {total}{f' (failed runs: {failed})' if failed else ''} |"
            )
    return [*lines, *_skipped(rows_of), ""]


def floors(entries: list[dict[str, Any]]) -> list[str]:
    limits = [e for e in entries if e["section"] == "limits" and "fixed" in e]
    if not limits:
        return []
    lines = [
        "### In-process floor",
        "",
        "| entry | rows | calls/s | p50 ms | p99 ms | CPU µs/call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for e in limits:
        f = e["fixed"]
        lines.append(
            f"| {e['name']} | {e['rows']} | {_fmt(f['achieved_rps'])} | {_fmt(f['p50_ms'])} | {_fmt(f['p99_ms'])} "
            f"| {_fmt(f['server_cpu_us_per_call'])} |"
        )
    return [*lines, ""]


def scenarios(entries: list[dict[str, Any]], slo_ms: float) -> list[str]:
    rows = [e for e in entries if e["section"] == "scenarios"]
    if not rows:
        return []
    lines = [
        "## Scenarios (native Predict, default settings but for what each needs)",
        "",
        f"| scenario | rows | c=1 p50 ms | c=1 p99 ms | c=8 req/s | server CPU µs/call | max rps at p99 <= {slo_ms:g} ms "
        "| fixed run rps | fixed p50 ms | fixed p99 ms | fixed p99.9 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in rows:
        if "skipped" in e:
            continue
        c, f = top(e), e.get("fixed") or {}
        lines.append(
            f"| {e['name']} | {e['rows']} | {cell(e, 'closed.1', 'p50_ms')} | {cell(e, 'closed.1', 'p99_ms')} "
            f"| {cell(e, f'closed.{c}', 'achieved_rps')} "
            f"| {cell(e, f'closed.{c}', 'server_cpu_us_per_call')} | {cell(e, 'sweep', 'max_rps')} "
            f"| {_fmt(f.get('target_rps'))} | {_fmt(f.get('p50_ms'))} | {_fmt(f.get('p99_ms'))} "
            f"| {_fmt(f.get('p999_ms'))} | {_errors(e)} |"
        )
    return [*lines, *_skipped(rows), ""]


def interference(notes: dict[str, Any]) -> list[str]:
    """The interference entry (benchmarks.scenarios.interference): small calls' tail with and without big ones."""
    doc = notes.get("interference")
    if not doc:
        return []
    head = ["## Interference: 1-row calls beside 10,000-row calls", ""]
    if "skipped" in doc:
        return [*head, f"Skipped: {doc['skipped']}", ""]
    s = doc["settings"]
    lines = [
        *head,
        f"Client A: 1-row {s['protocol']} Predict, open loop at {s['rate']:g} rps (latency from each call's intended "
        f"send time). Client B, another process: {s['big_rows']:,}-row map Predicts ({s['big_bytes'] / 1e6:.1f} MB) "
        f"back to back. {s['repeats']} x {s['duration_s']:g} s per phase, B off and on alternating; median (min-max).",
        "",
        "| B | A p50 ms | A p99 ms | A p99.9 ms | server cores busy | B calls/s | B p50 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]

    def spread(node: dict[str, float] | None) -> str:
        return _spread(node["median"], node["min"], node["max"]) if node else "-"

    for phase in ("off", "on"):
        p = doc["variants"]["defaults"][phase]
        lines.append(
            f"| {phase} | {spread(p['p50'])} | {spread(p['p99'])} | {spread(p['p999'])} | {spread(p['cores'])} "
            f"| {spread(p['big_calls_s'])} | {spread(p['big_p50'])} | {p['errors'] or '-'} |"
        )
    return [*lines, ""]


def growth(entries: list[dict[str, Any]]) -> list[str]:
    points = [e for e in entries if e["section"] == "growth"]
    if not points:
        return []
    out = ["## How cost grows (sibyl, default settings)", ""]
    for dim, axis in (("growth-rows", "rows"), ("growth-models", "models"), ("growth-workers", "workers")):
        mine = [e for e in points if dim in (e.get("params") or {}).get("dimensions", [])]
        if not mine:
            continue
        c = top(next((e for e in mine if "closed" in e), {}))
        out += [
            f"### {axis} per call" if axis != "workers" else "### worker processes",
            "",
            f"| API | {axis} | server CPU µs/call | server CPU µs/row | c=1 p99 ms | c={c} p99 ms | c={c} req/s "
            "| client CPU µs/call |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in sorted(mine, key=lambda e: (e["api"], e["params"][axis])):
            if "skipped" in e:
                out.append(f"| {e['api']} | {e['params'][axis]} | skipped: {e['skipped']} ||||||")
                continue
            cpu = figure(e, f"closed.{c}", "server_cpu_us_per_call")
            out.append(
                f"| {e['api']} | {e['params'][axis]} | {cell(e, f'closed.{c}', 'server_cpu_us_per_call')} "
                f"| {_fmt(cpu / e['rows'] if cpu else None)} | {cell(e, 'closed.1', 'p99_ms')} "
                f"| {cell(e, f'closed.{c}', 'p99_ms')} | {cell(e, f'closed.{c}', 'achieved_rps')}{_client_flag(e)} "
                f"| {cell(e, f'closed.{c}', 'client_cpu_us_per_call')} |"
            )
        out.append("")
    return out


def memory(notes: dict[str, Any]) -> list[str]:
    mem = notes.get("memory")
    if not mem:
        return []
    lines = [
        "## Memory (the sibyl group's server after its runs)",
        "",
        f"Model files loaded by the benchmark predictors: {mem['model_bytes'] / 1024:,.0f} KiB.",
        "",
        "| pid | command | RSS MiB |",
        "|---:|---|---:|",
    ]
    lines += [f"| {p['pid']} | `{p['command']}` | {p['rss_bytes'] / 2**20:,.1f} |" for p in mem["processes"]]
    return [*lines, ""]


def markdown(doc: dict[str, Any]) -> str:
    m, s, entries = doc["machine"], doc["settings"], doc["entries"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        f"# sibyl benchmark ({'quick' if s['quick'] else 'full'} run)",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}.  ",
        f"Commit {m['git_sha']}; started {doc['started_at']}, {doc['elapsed_s']:g} s; load average at start "
        f"{m.get('loadavg_at_start', '?')}.  ",
        f"Packages: {pkgs}.  ",
        f"Client and servers share this machine. Closed loops: {s['duration_s']:g} s after {s['warmup_s']:g} s "
        f"warm-up, concurrency {', '.join(map(str, s['concurrency']))}, {s['repeats']} run(s) each; open-loop "
        f"sweeps ({s['sweep_repeats']} per row, {s['sweep_step_s']:g} s steps) to p99 <= {s['slo_ms']:g} ms. "
        "Figures: median (min-max) over the runs. Server CPU: utime+stime of the server's process tree "
        "(/proc) over the measured window / answered calls; client CPU: the load client's own. A row marked "
        "client-bound? had its client near one full core.",
        "",
        "## Comparison: same client, same protocol (KServe V2 for all; sibyl native Predict beside)",
        "",
    ]
    for rows in s["compare_rows"]:
        lines += comparison(entries, rows, s["slo_ms"])
    lines += (
        perf_table(entries)
        + http_table(entries)
        + floors(entries)
        + scenarios(entries, s["slo_ms"])
        + interference(doc.get("notes") or {})
        + growth(entries)
    )
    lines += memory(doc.get("notes") or {})
    lines += ["## Targets (issues 16 and 33)", "", "| target | result | detail |", "|---|---|---|"]
    lines += [f"| {t['text']} | {t['status']} | {t['detail']} |" for t in doc["targets"]]
    lines += ["", "## Entries", ""]
    seen: set[str] = set()
    for e in entries:
        key = f"{e['name']}|{e['client']}"
        if key not in seen:
            seen.add(key)
            via = {"perf_analyzer": " (perf_analyzer)", "wrk": " (wrk, HTTP)"}.get(e["client"], "")
            lines.append(f"- `{e['name']}`{via}: {e['description']}")
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    md_path.write_text(markdown(doc))
    return [json_path, md_path]
