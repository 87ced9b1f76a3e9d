"""Soak with churn (issue 30 item 7): a real `sibyl serve` (file log, Redis features, cache off) under open-loop
load while predictor p is promoted back and forth between m@1 and m@2 through the catalog every `promote_every_s`
and its Redis (a real redis-server with an append-only file, so it comes back with its data) is stopped and
started every `redis_every_s`. The server's RSS, open descriptors (/proc/PID/fd) and threads (/proc/PID/status)
are sampled every second.

Asserted (docs/reliability.md#soak-with-churn-testsfaultstest_soak_churnpy):
- every call answers OK (5 s deadlines: a slow machine is not a failure; features missing while Redis is down
  take their defaults);
- every answered prediction is in the file log after the server's SIGTERM (exit 0);
- every promote is seen in the answers, and once a call was answered by the new version no later-sent call of
  that interval is answered by the old one (no flip-back); features come back from Redis after every restart;
- flat after warm-up: the warm-up and each window are one Redis period; the late window's median RSS is within
  5% of the early window's, and its median descriptor (Redis connections apart) and thread counts within
  max(2, 5%) of the early ones. Why a floor of 2: the counts are small (tens), and a connection being re-made or
  a thread pool that grows lazily to its bound moves them by one or two without any leak; a leak keeps growing
  with the churn, past any fixed floor. Redis connections are judged apart: the client's pool holds as many as
  the most fetches that were ever in flight at once since the last restart (it follows the load; figures in the
  docs), so its late median may not pass the early window's peak by more than 2.

Forms: the CI form runs 60 s (promote every 10 s, Redis restart every 20 s, so a 20 s warm-up and two 20 s windows
to compare; a fixed 80 calls/s, well under this 2-core machine's capacity), not the issue's 3 minutes: the whole CI
suite has to stay under 15 minutes on 2 cores (it ran 90 s with 30 s periods before the CI-time cut).
The long form (`--runslow`) runs 30 minutes at 60% of the capacity it measures first (closed loop), a promote
every minute and a Redis restart every 5 minutes; SIBYL_SOAK_LONG_S shortens it (the Redis period stays a sixth
of the run). The figures are printed: `pytest -s`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sibyl.config import FeatureSettings
from sibyl.features import build_store
from sibyl.models.catalog import Catalog
from sibyl.models.store import FileStore
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from tests.faults.harness import Load, OpenLoad, Shot, logged_ids_from_file, p99_ms
from tests.faults.scenario import log_tail, stop
from tests.support.inproc import PRIMARY_WEIGHTS, serve_subprocess
from tests.support.onnxgen import publish_logistic
from tests.support.servers import RedisServer
from tests.support.workers import answering

pytestmark = [pytest.mark.faults]

CONSUMERS, STORES = 50, 10
DEADLINE_S = 5.0
REDIS_DOWN_S = 1.0  # between the old redis-server's exit and the new one's start
RSS_TOLERANCE = 0.05
COUNT_TOLERANCE, COUNT_FLOOR = 0.05, 2  # descriptors and threads: see the module docstring
CAPACITY_CLIENTS, CAPACITY_S = 8, 5.0


@dataclass(frozen=True, slots=True)
class Form:
    duration_s: float
    promote_every_s: float
    redis_every_s: float  # also the warm-up and each compared window
    rate: float | None  # calls/s; None: 60% of the capacity measured at the start


@dataclass(frozen=True, slots=True)
class Usage:
    t: float
    rss_mib: float
    fds: int  # open descriptors, Redis connections excluded
    redis: int  # connections to Redis (its client's pool)
    threads: int


FIELDS = ("rss_mib", "fds", "redis", "threads")


def usage(pid: int, redis_port: int, t: float) -> Usage:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed since the listing
            continue
    rows = (line.split() for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:])
    to_redis = {f"socket:[{row[9]}]" for row in rows if int(row[2].rsplit(":", 1)[1], 16) == redis_port}
    redis = sum(link in to_redis for link in links)
    return Usage(t, int(status["VmRSS"].split()[0]) / 1024, len(links) - redis, redis, int(status["Threads"]))


def request(i: int) -> PredictRequest:
    row = FeatureRow(features={"amount": float(i % 7)}, entities={"store_id": f"s{i % STORES}"})
    return PredictRequest(request_id=f"r{i}", predictor="p", context={"consumer_id": f"c{i % CONSUMERS}"}, rows=[row])


def version(shot: Shot) -> str:
    return shot.response.results[0].version if shot.response is not None else ""


def from_redis(shot: Shot) -> bool:
    return shot.response is not None and not shot.response.defaulted


async def write_features(url: str) -> None:
    store = build_store(FeatureSettings(backend="redis", url=url))
    rows = [("consumer_id", f"c{i}", {"age": 20.0 + i, "emb": [0.1, -0.1]}) for i in range(CONSUMERS)]
    rows += [("store_id", f"s{i}", {"rating": 3.0 + i / 10}) for i in range(STORES)]
    try:
        await store.write_entities(rows)
    finally:
        await store.close()


async def capacity(target: str) -> float:
    """Answered calls/s of a closed loop of CAPACITY_CLIENTS clients, after a warm-up."""
    async with Load(target, request, concurrency=CAPACITY_CLIENTS, pause_s=0.0) as warm:
        await warm.settle(200, timeout_s=60)
    async with Load(target, request, concurrency=CAPACITY_CLIENTS, pause_s=0.0) as closed:
        await asyncio.sleep(CAPACITY_S)
        elapsed = closed.now()
    return sum(o.code == "OK" for o in closed.outcomes) / elapsed


@dataclass
class Churn:
    """What run() did, with the load's clock: promotes (time, version), Redis restarts (time started again)."""

    promotes: list[tuple[float, str]]
    restarts: list[float]


async def churn(load: OpenLoad, catalog: Catalog, redis: RedisServer, form: Form) -> Churn:
    """Promotes at k * promote_every_s (m@2, m@1, m@2, ...) and Redis restarts at (k + 1/2) * redis_every_s, in
    time order, until the end of the run."""
    events = [(k * form.promote_every_s, "promote") for k in range(1, int(form.duration_s / form.promote_every_s))]
    restarts = int(form.duration_s / form.redis_every_s)
    events += [((k + 0.5) * form.redis_every_s, "redis") for k in range(restarts)]
    done = Churn([], [])
    for at, what in sorted(events):
        await asyncio.sleep(max(0.0, at - load.now()))
        if what == "promote":
            new = "2" if len(done.promotes) % 2 == 0 else "1"
            await asyncio.to_thread(catalog.promote, "p", f"m@{new}")
            done.promotes.append((load.now(), new))
        else:
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(REDIS_DOWN_S)
            await asyncio.to_thread(redis.start)
            done.restarts.append(load.now())
    await asyncio.sleep(max(0.0, form.duration_s - load.now()))
    return done


async def sample(pid: int, redis_port: int, load: OpenLoad, samples: list[Usage]) -> None:
    while True:
        samples.append(usage(pid, redis_port, load.now()))
        await asyncio.sleep(1.0)


def promote_figures(shots: list[Shot], promotes: list[tuple[float, str]]) -> list[tuple[float | None, list[Shot]]]:
    """Per promote: seconds until the first answer by the new version (None: never, before the next promote),
    and the flip-backs: calls sent after that answer, before the next promote, answered by another version."""
    figures: list[tuple[float | None, list[Shot]]] = []
    for k, (t0, new) in enumerate(promotes):
        t1 = promotes[k + 1][0] if k + 1 < len(promotes) else float("inf")
        interval = [s for s in shots if s.response is not None and t0 <= s.t < t1]
        seen = min((s.t + s.latency_s for s in interval if version(s) == new), default=None)
        flips = [s for s in interval if seen is not None and s.t > seen and version(s) != new]
        figures.append((None if seen is None else seen - t0, flips))
    return figures


def median_of(samples: list[Usage], start: float, end: float, field: str) -> float:
    return statistics.median(getattr(u, field) for u in samples if start <= u.t < end)


async def soak(tmp_path: Path, form: Form) -> None:
    redis = RedisServer(extra_args=["--appendonly", "yes"]).start()  # a restart keeps the features
    try:
        await write_features(redis.url)
        env = {
            "SIBYL_FEATURES__BACKEND": "redis",
            "SIBYL_FEATURES__URL": redis.url,
            "SIBYL_FEATURES__CACHE_TTL_S": "0",  # every call asks Redis: each restart reaches the request path
            "SIBYL_MODEL_STORE__POLL_INTERVAL_S": "1",
            "SIBYL_METRICS__PORT": "0",
            "SIBYL_LOG_LEVEL": "INFO",
        }
        proc, port, _ = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)
        try:
            answering(port, 1)
            catalog = Catalog(FileStore(tmp_path / "store"))
            publish_logistic(catalog, "m", "2", [w * 0.9 for w in PRIMARY_WEIGHTS], bias=-0.4)
            target = f"127.0.0.1:{port}"
            measured = await capacity(target) if form.rate is None else None
            rate = form.rate if measured is None else 0.6 * measured
            samples: list[Usage] = []
            load = OpenLoad(
                target, request, rate=rate, deadline_s=DEADLINE_S, max_calls=int(rate * (form.duration_s + 60))
            )
            async with load:
                sampler = asyncio.create_task(sample(proc.pid, redis.port, load, samples))
                try:
                    done = await churn(load, catalog, redis, form)
                finally:
                    sampler.cancel()
                load.mark("end")
        finally:
            code = await asyncio.to_thread(stop, proc)
        logged = logged_ids_from_file([tmp_path / "predictions.jsonl"])
    finally:
        redis.close()
    judge(form, load, done, samples, logged, code, measured, tmp_path)


def judge(
    form: Form,
    load: OpenLoad,
    done: Churn,
    samples: list[Usage],
    logged: set[str],
    code: int,
    measured: float | None,
    tmp_path: Path,
) -> None:
    period, end = form.redis_every_s, form.duration_s
    early = {f: median_of(samples, period, 2 * period, f) for f in FIELDS}
    late = {f: median_of(samples, end - period, end, f) for f in FIELDS}
    swaps = promote_figures(load.shots, done.promotes)
    recoveries = [
        min((s.t - t0 for s in load.shots if s.t >= t0 and from_redis(s)), default=None) for t0 in done.restarts
    ]
    answered = load.answered()
    rss_change = (late["rss_mib"] / early["rss_mib"] - 1) * 100
    per_period = [
        "/".join(f"{median_of(samples, k * period, (k + 1) * period, f):g}" for f in FIELDS)
        for k in range(int(end / period))
    ]
    rate = f"60% of a measured {measured:.0f}/s" if measured is not None else "fixed"
    print(
        f"\n[soak {end:.0f} s] rate {load.rate:.0f}/s ({rate}); calls {len(load.shots)} {dict(load.codes())}; "
        f"p99 {p99_ms(load.shots):.1f} ms; answered {len(answered)}, logged {len(answered & logged)}; exit {code}\n"
        f"  promotes {len(done.promotes)}: new version answering after {_seconds(s for s, _ in swaps)} s; "
        f"flip-backs {sum(len(f) for _, f in swaps)}\n"
        f"  redis restarts {len(done.restarts)}: features from Redis again after {_seconds(recoveries)} s; calls "
        f"answered with defaults {sum(not from_redis(s) for s in load.shots if s.code == 'OK')}\n"
        f"  RSS start {samples[0].rss_mib:.1f} MiB, max {max(u.rss_mib for u in samples):.1f}; medians, early "
        f"[{period:.0f}, {2 * period:.0f}) s vs late [{end - period:.0f}, {end:.0f}) s: RSS {early['rss_mib']:.1f} -> "
        f"{late['rss_mib']:.1f} MiB ({rss_change:+.1f}%), "
        + ", ".join(f"{f} {early[f]:g} -> {late[f]:g} (range {_range(samples, f)})" for f in FIELDS[1:])
        + f"\n  medians per Redis period ({' / '.join(FIELDS)}): {'; '.join(per_period)}"
    )
    assert code == 0, log_tail(tmp_path)
    assert not load.failed(), f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert answered <= logged, f"{len(answered - logged)} answered predictions missing from the log"
    assert all(s is not None for s, _ in swaps), f"a promote was never answered: {swaps}"
    assert not any(f for _, f in swaps), f"flip-backs: {[(round(s.t, 2), version(s)) for _, f in swaps for s in f]}"
    assert all(r is not None for r in recoveries), f"features never came back from Redis: {recoveries}"
    assert abs(late["rss_mib"] - early["rss_mib"]) <= RSS_TOLERANCE * early["rss_mib"], "RSS not flat"
    for count in ("fds", "threads"):
        allowed = max(COUNT_FLOOR, COUNT_TOLERANCE * early[count])
        assert abs(late[count] - early[count]) <= allowed, f"{count} not flat: {early[count]} -> {late[count]}"
    early_peak = max(u.redis for u in samples if period <= u.t < 2 * period)
    assert late["redis"] <= early_peak + COUNT_FLOOR, f"Redis connections grew: {early_peak} -> {late['redis']}"


def _seconds(values: Iterable[float | None]) -> str:
    return ", ".join("never" if v is None else f"{v:.2f}" for v in values)


def _range(samples: list[Usage], field: str) -> str:
    values = [getattr(u, field) for u in samples]
    return f"{min(values)}-{max(values)}"


@pytest.mark.timeout(300)
async def test_soak_with_promotes_and_redis_restarts_stays_flat(tmp_path: Path) -> None:
    await soak(tmp_path, Form(duration_s=60, promote_every_s=10, redis_every_s=20, rate=80.0))


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_soak_with_promotes_and_redis_restarts_stays_flat_long(tmp_path: Path) -> None:
    duration = float(os.environ.get("SIBYL_SOAK_LONG_S", "1800"))
    await soak(tmp_path, Form(duration_s=duration, promote_every_s=60, redis_every_s=duration / 6, rate=None))
