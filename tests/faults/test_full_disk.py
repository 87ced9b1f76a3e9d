"""A full disk under the prediction log, under steady open-loop load (100 calls/s, 2 s deadline each) through a
real `sibyl serve` whose log lives on a 1 MiB tmpfs (tests/support/small_disk: a real filesystem in a private
mount namespace, so writes fail with the kernel's own ENOSPC, short writes at the edge included). Mid-run a
filler file takes every free byte for 5 s, then is removed.

File sink: no call fails; records that could not be written are counted as dropped with reason disk_full; the
file holds only whole JSON lines, exactly as many as the server counted written; every call answered after the
space came back is in the file. Kafka sink with the broker down (records go to the spool on the small disk): the
same, and once the broker starts the spool replays every record it kept, whole, with no sender restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sibyl.predlog.spool import MAGIC, scan_frames
from sibyl.process.banner import parse_serving_line
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, Role
from tests.faults.harness import OpenLoad, p99_ms
from tests.faults.scenario import stop
from tests.faults.scrape import scrape, value
from tests.support.inproc import publish_models, server_env
from tests.support.kafka_broker import KafkaBroker, create_topic
from tests.support.kafkaread import ids_in_topic
from tests.support.needs import missing
from tests.support.process import MissingBinaryError
from tests.support.small_disk import SmallDisk
from tests.support.workers import answering

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
DISK_BYTES, RATE, FULL_S = 1 << 20, 100.0, 5.0
TOPIC = "sibyl.predictions"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    try:
        small = SmallDisk(tmp_path / "disk", DISK_BYTES).start()
    except MissingBinaryError as exc:
        missing(exc)
    try:
        yield small
    finally:
        small.close()


def request(i: int) -> PredictRequest:
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=[FeatureRow(features={"amount": float(i % 5)})])


def serve_on(disk: SmallDisk, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], int, int]:
    """`sibyl serve` inside the disk's namespace (tests/support/inproc's store and settings, and `env`)."""
    publish_models(tmp_path / "store")
    full_env = server_env(tmp_path, SIBYL_METRICS__PORT="0", **env)
    command = disk.command([sys.executable, "-m", "sibyl", "serve", "--port", "0"])
    with (tmp_path / "server.log").open("ab") as log:
        proc = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    serving = parse_serving_line(proc.stdout.readline())
    if serving is None:
        proc.kill()
        raise AssertionError(f"sibyl serve did not start: {(tmp_path / 'server.log').read_text()[-3000:]}")
    answering(serving.port, 1)
    return proc, serving.port, serving.metrics_port


async def full_for_a_while(disk: SmallDisk, port: int) -> tuple[OpenLoad, int]:
    """Load; at 5 s (the Kafka sink spools from ~3 s) the disk fills for FULL_S; 4 s more after it is freed.
    (load, filler bytes)."""
    async with OpenLoad(f"127.0.0.1:{port}", request, rate=RATE, deadline_s=2.0) as load:
        load.mark("start")
        await asyncio.sleep(5.0)
        load.mark("fault")
        filled = await asyncio.to_thread(disk.fill)
        await asyncio.sleep(FULL_S)
        load.mark("repair")
        await asyncio.to_thread(disk.free)
        await asyncio.sleep(4.0)
        load.mark("end")
    return load, filled


async def settled(metrics_port: int, *outcomes: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape once the sink's queue is empty and the outcome counters stopped moving."""
    last = -1.0
    for _ in range(100):
        samples = await asyncio.to_thread(scrape, metrics_port)
        total = sum(value(samples, "sibyl_predlog_records_total", outcome=o) for o in outcomes)
        if value(samples, "sibyl_predlog_queue_depth") == 0 and total == last:
            return samples
        last = total
        await asyncio.sleep(0.3)
    raise AssertionError("the prediction log never settled")


def resumed_s(load: OpenLoad, kept: set[str]) -> str:
    """Space back -> the send time of the first call after it whose record was kept."""
    t0 = load.marks["repair"]
    first = min((s.t - t0 for s in load.shots if s.t >= t0 and s.prediction_id in kept), default=None)
    return "never" if first is None else f"{first:.2f} s"


def after_repair(load: OpenLoad, grace_s: float = 1.0) -> set[str]:
    """Calls answered from `grace_s` after the space came back: their records must be kept."""
    t0 = load.marks["repair"] + grace_s
    return {s.prediction_id for s in load.shots if s.code == "OK" and s.t >= t0}


async def test_file_log_on_a_full_disk_keeps_whole_lines_counts_losses_and_resumes(
    disk: SmallDisk, tmp_path: Path
) -> None:
    log_path = disk.mountpoint / "predictions.jsonl"
    proc, port, metrics_port = serve_on(disk, tmp_path, SIBYL_PREDLOG__PATH=str(log_path))
    try:
        load, filled = await full_for_a_while(disk, port)
        samples = await settled(metrics_port, "written", "dropped")
        text = disk.path(log_path).read_bytes().decode()
    finally:
        code = await asyncio.to_thread(stop, proc)
    lines = text.splitlines(keepends=True)
    records = [json.loads(line) for line in lines if line.endswith("\n")]
    torn = [line[:80] for line in lines if not line.endswith("\n")]
    primaries = {r.get("prediction_id") or r["predictionId"] for r in records if r.get("role") == "ROLE_PRIMARY"}
    written = value(samples, "sibyl_predlog_records_total", outcome="written")
    disk_full = value(samples, "sibyl_predlog_dropped_total", reason="disk_full")
    missing_ids = load.answered() - primaries
    print(
        f"\n[file log, disk full {FULL_S:.0f} s] calls {len(load.shots)} {dict(load.codes())}; p99 during "
        f"{p99_ms(load.between('fault', 'repair')):.1f} ms; filler {filled} bytes; records written {written:.0f}, "
        f"in the file {len(records)}, torn {len(torn)}; dropped (disk_full) {disk_full:.0f}; answered primaries "
        f"missing {len(missing_ids)}; after the repair missing {len(after_repair(load) - primaries)}; logging resumed "
        f"{resumed_s(load, primaries)} after the space came back"
    )
    assert code == 0
    assert load.failed() == [], f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert filled > 0 and disk_full > 0, "the disk was never full for the log"
    assert not torn, f"half-written records in the file: {torn}"
    assert len(records) == written, "the file does not hold what the server counted written"
    assert len(missing_ids) <= disk_full
    assert after_repair(load) <= primaries, "logging did not resume once space came back"


async def test_spool_on_a_full_disk_keeps_whole_frames_counts_losses_and_replays(
    disk: SmallDisk, tmp_path: Path
) -> None:
    broker = KafkaBroker()  # not started: every record goes to the spool until it is
    spool_dir = disk.mountpoint / "spool"
    env = {
        "SIBYL_PREDLOG__SINK": "kafka",
        "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": broker.bootstrap,
        "SIBYL_PREDLOG__TOPIC": TOPIC,
        "SIBYL_PREDLOG__SPOOL_DIR": str(spool_dir),
    }
    proc, port, metrics_port = serve_on(disk, tmp_path, **env)
    try:
        load, filled = await full_for_a_while(disk, port)
        during = await settled(metrics_port, "spooled", "dropped")
        segments = {p.name: p.read_bytes() for p in disk.path(spool_dir).glob("*.spool")}  # what replay will read
        broker.start()
        await asyncio.to_thread(create_topic, broker.bootstrap, TOPIC)
        deadline, seen = time.monotonic() + 60, set[str]()
        while time.monotonic() < deadline:
            seen = await asyncio.to_thread(ids_in_topic, broker.bootstrap, TOPIC, Role.ROLE_PRIMARY)
            if (
                after_repair(load) <= seen
                and value(await asyncio.to_thread(scrape, metrics_port), "sibyl_predlog_spool_bytes") == 0
            ):
                break
            await asyncio.sleep(1.0)
        samples = await asyncio.to_thread(scrape, metrics_port)
    finally:
        code = await asyncio.to_thread(stop, proc)
        broker.close()
    disk_full = value(samples, "sibyl_predlog_dropped_total", reason="disk_full")
    missing_ids = load.answered() - seen
    torn = {n: len(data) - scan_frames(data)[1] for n, data in segments.items() if scan_frames(data)[1] != len(data)}
    frames = sum(len(scan_frames(data)[0]) for data in segments.values())
    spooled = value(during, "sibyl_predlog_records_total", outcome="spooled")
    replayed = value(samples, "sibyl_predlog_records_total", outcome="replayed")
    restarts = value(samples, "sibyl_predlog_sender_restarts_total")
    print(
        f"\n[spool, disk full {FULL_S:.0f} s, broker down] calls {len(load.shots)} {dict(load.codes())}; p99 during "
        f"{p99_ms(load.between('fault', 'repair')):.1f} ms; spooled {spooled:.0f}, dropped (disk_full) "
        f"{disk_full:.0f}, replayed {replayed:.0f}; answered primaries missing from Kafka {len(missing_ids)}; after "
        f"the repair missing {len(after_repair(load) - seen)}; sender restarts {restarts:.0f}; spooling resumed "
        f"{resumed_s(load, seen)} after the space came back"
    )
    assert code == 0
    assert load.failed() == [], f"{load.codes()}: failed per second {load.failures_per_second()}"
    assert filled > 0 and disk_full > 0, "the disk was never full for the spool"
    assert restarts == 0
    assert all(data.startswith(MAGIC) for data in segments.values()), "a spool segment without its header"
    assert not torn, f"spool segments with torn tails: {torn}"
    assert frames == spooled, "the spool holds other than what was counted spooled"
    assert len(missing_ids) <= disk_full
    assert after_repair(load) <= seen, "spooling did not resume once space came back"
