"""How cost grows: sibyl on default settings (file log on, with feature values), closed loops at every
concurrency of the plan, against rows per call, models per call and worker processes.

- growth-rows     1, 10, 100, 1,000 rows per call; V2 ModelInfer (one FP32 [N, 16] tensor) and native Predict
                  (map-form rows), predictor bench (gbdt@1)
- growth-models   1-4 models per call: gbdt@1 primary + `extra_models` gbdt@2..4 (copies of the same file, so
                  each extra model costs what the first does); native Predict, 1 row
- growth-workers  `server.workers` 1 and 2 (2 = one per core here), V2 and native, 1 row

The points at 1 row, 1 model and 1 worker are one server and one measurement, shared by the three tables.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load import workload as w
from benchmarks.load.measure import Entry, Runner, Settings, say
from benchmarks.scenarios.definitions import MODEL_INFER, PREDICT, PREDICTOR, check_native, check_v2
from benchmarks.scenarios.entries import first_answers, sibyl_target

DIMENSIONS = ("growth-rows", "growth-models", "growth-workers")


@dataclass(frozen=True)
class Point:
    api: str  # "v2" or "native"
    rows: int
    models: int
    workers: int

    @property
    def name(self) -> str:
        return f"sibyl-{self.api}"

    def payload(self) -> bytes:
        if self.api == "v2":
            return w.v2_request(PREDICTOR, w.PRIMARY, self.rows)
        return w.request_features(PREDICTOR, w.PRIMARY, self.rows, w.COPIES[: self.models - 1])

    def dimensions(self) -> list[str]:
        """The tables this point belongs to."""
        dims = []
        if self.models == 1 and self.workers == 1:
            dims.append("growth-rows")
        if self.api == "native" and self.rows == 1 and self.workers == 1:
            dims.append("growth-models")
        if self.rows == 1 and self.models == 1:
            dims.append("growth-workers")
        return dims


def points(
    dims: Collection[str], rows: tuple[int, ...], models: tuple[int, ...], workers: tuple[int, ...]
) -> list[Point]:
    """Every point the chosen dimensions need, each once, in server order (workers, then rows and models)."""
    out: list[Point] = []
    if "growth-rows" in dims:
        out += [Point(api, n, 1, 1) for api in ("v2", "native") for n in rows]
    if "growth-models" in dims:
        out += [Point("native", 1, m, 1) for m in models]
    if "growth-workers" in dims:
        out += [Point(api, 1, 1, n) for n in workers for api in ("v2", "native")]
    unique = list(dict.fromkeys(out))
    return sorted(unique, key=lambda p: (p.workers, p.api, p.models, p.rows))


def entry_for(point: Point) -> Entry:
    params = {"rows": point.rows, "models": point.models, "workers": point.workers, "dimensions": point.dimensions()}
    return Entry(
        point.name,
        "growth",
        f"sibyl {point.api}, default settings, {point.rows} rows, {point.models} models, {point.workers} worker(s)",
        section="growth",
        rows=point.rows,
        api=point.api,
        params=params,
    )


def measure_point(runner: Runner, point: Point, target: str, pid: int | None) -> None:
    entry = entry_for(point)
    payload = point.payload()
    if point.api == "v2":
        problem = first_answers(target, MODEL_INFER, payload, lambda raw: check_v2(raw, point.rows))
    else:
        problem = first_answers(target, PREDICT, payload, lambda raw: check_native(raw, point.rows, point.models))
    if problem:
        runner.skip(entry, f"check failed: {problem}")
        return
    runner.measure(entry, target, MODEL_INFER if point.api == "v2" else PREDICT, payload, pid, sweep=False)


def run_growth(plan: Settings, runner: Runner, names: Collection[str], store: Path, axes: dict[str, tuple]) -> None:
    """axes: {"rows": (1, 10, ...), "models": (1, ...), "workers": (1, 2)}."""
    todo = points([d for d in DIMENSIONS if d in names], axes["rows"], axes["models"], axes["workers"])
    for workers in sorted({p.workers for p in todo}):
        group = [p for p in todo if p.workers == workers]
        if plan.target and workers != 1:
            for p in group:
                runner.skip(entry_for(p), "more workers need a local server (no --target)")
            continue
        say(f"growth: sibyl with {workers} worker(s): {len(group)} points")
        done: list[Point] = []
        try:
            with sibyl_target(plan, "plain", store, workers=workers) as (target, pid):
                for p in group:
                    measure_point(runner, p, target, pid)
                    done.append(p)
        except RuntimeError as exc:
            for p in group:
                if p not in done:
                    runner.skip(entry_for(p), f"server did not start: {exc}")
