"""results.json and results.md from one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = ("target_rps", "achieved_rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")


def _errors(e: dict[str, Any]) -> str:
    errors = e.get("errors") or {}
    return ", ".join(f"{code} {n}" for code, n in errors.items()) or "0"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    s = doc["settings"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        f"# sibyl benchmark ({'quick' if s['quick'] else 'full'} run)",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}.  ",
        f"Commit {m['git_sha']}; started {doc['started_at']}; load average at start "
        f"{m.get('loadavg_at_start', '?')}.  ",
        f"Packages: {pkgs}.  ",
        f"Client and servers share this machine. Latency is measured from each request's intended send time "
        f"(open loop); fixed runs {s['duration_s']:g} s after {s['warmup_s']:g} s warm-up; SLO for the rate sweep: "
        f"p99 <= {s['slo_ms']:g} ms.",
        "",
        "| scenario | kind | offered rps | achieved rps | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors "
        f"| max rps at p99 <= {s['slo_ms']:g} ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for e in doc["scenarios"]:
        if "skipped" in e:
            lines.append(f"| {e['name']} | {e['kind']} | skipped: {e['skipped']} |||||||||")
            continue
        offered = "closed loop" if e.get("mode") == "inprocess" else _num(e.get("target_rps"))
        cells = [_num(e.get(c)) for c in COLUMNS[1:]]
        lines.append(
            f"| {e['name']} | {e['kind']} | {offered} | {' | '.join(cells)} | {_errors(e)} "
            f"| {_num(e.get('max_rps_at_slo'))} |"
        )
    lines += ["", "## Targets", "", "| target | result | detail |", "|---|---|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['text']} | {t['status']} | {t['detail']} |")
    lines += ["", "Scenarios:", ""]
    lines += [f"- `{e['name']}`: {e['description']}" for e in doc["scenarios"]]
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    md_path.write_text(markdown(doc))
    return [json_path, md_path]
