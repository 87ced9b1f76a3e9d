"""The `--workers N` supervisor, with real processes: a SIGKILLed supervisor takes its workers with it, the restart
backoff starts afresh after a healthy run, a user's metrics directory is never wiped, and spool segments of
worker folders a smaller N no longer uses are replayed to Kafka."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sibyl.predlog.kafka import spool_payload
from sibyl.predlog.spool import Spool
from sibyl.process.spools import worker_dir
from sibyl.v1.predlog_pb2 import PredictionLog
from tests.support.inproc import publish_models, serve_subprocess, server_env
from tests.support.kafkaread import ids_in_topic
from tests.support.servers import KafkaBroker, create_topic
from tests.support.workers import alive, answering, kill_all, worker_pids

pytestmark = pytest.mark.timeout(180)
RUN_SUPERVISOR = Path(__file__).parent / "programs" / "run_supervisor.py"


def wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"SIBYL_SERVER__WORKERS": "2", "SIBYL_METRICS__PORT": "0", "SIBYL_LOG_JSON": "false"}
    return server_env(tmp_path, **{**settings, "SIBYL_LOG_LEVEL": "INFO", **extra})


def test_a_sigkilled_supervisor_takes_its_workers_off_the_port(tmp_path: Path) -> None:
    proc, port, _ = serve_subprocess(tmp_path, "--workers", "2", SIBYL_METRICS__PORT="0")
    workers: set[int] = set()
    try:
        answering(port, 2)
        workers = worker_pids(proc.pid)
        assert len(workers) == 2, workers
        proc.kill()  # SIGKILL: no chance to stop anything itself
        proc.wait(10)
        wait(lambda: not any(alive(pid) for pid in workers), 30, f"workers {workers} to exit with their parent")
    finally:
        kill_all(workers)
        proc.kill()
    with pytest.raises(OSError):  # nobody listens on the port any more
        import socket

        socket.create_connection(("127.0.0.1", port), timeout=2).close()


RESTART = re.compile(r"worker (\d+) \(pid (\d+)\) exited with .* restart (\d+) in a row")


def restarts(log: Path) -> list[tuple[int, int]]:
    """(pid, restarts in a row) per exit the supervisor logged, in order."""
    return [(int(m.group(2)), int(m.group(3))) for m in RESTART.finditer(log.read_text(errors="replace"))]


def test_restart_backoff_starts_afresh_after_a_healthy_run(tmp_path: Path) -> None:
    publish_models(tmp_path / "store")
    log = tmp_path / "supervisor.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, str(RUN_SUPERVISOR), "3.0"],
            env=env_for(tmp_path),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    seen: set[int] = set()
    try:
        assert proc.stdout is not None and "serving on" in proc.stdout.readline()
        seen = worker_pids(proc.pid)
        victim = min(seen)
        for _ in range(3):  # a crash loop: each replacement dies at once
            os.kill(victim, signal.SIGKILL)
            wait(lambda: len(worker_pids(proc.pid) - seen) == 1, 60, "a replacement worker")
            (victim,) = worker_pids(proc.pid) - seen
            seen.add(victim)
        wait(lambda: len(restarts(log)) == 3, 10, "three restarts logged")
        first_kill_restarts = [n for _, n in restarts(log)]
        time.sleep(4.0)  # the replacement now runs for longer than healthy_after_s (3 s)
        os.kill(victim, signal.SIGKILL)
        wait(lambda: len(restarts(log)) == 4, 10, "the fourth restart logged")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        kill_all(seen)
    logged = [n for _, n in restarts(log)]
    # The first kill came after a healthy start, then two crashes in a row; after a healthy run: afresh.
    assert first_kill_restarts == [1, 2, 3], log.read_text()[-2000:]
    assert logged[3] == 1, f"restart counter did not reset after a healthy run: {logged}"
    assert code == 0


def start_with(tmp_path: Path, metrics_dir: Path) -> subprocess.Popen[str]:
    publish_models(tmp_path / "store")
    command = [sys.executable, "-m", "sibyl", "serve", "--port", "0"]
    env = env_for(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_user_metrics_dir_with_other_files_is_refused_not_wiped(tmp_path: Path) -> None:
    given = tmp_path / "mine"
    given.mkdir()
    (given / "notes.txt").write_text("not sibyl's")
    proc = start_with(tmp_path, given)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it served (and may have wiped the directory): stop it
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"sibyl: error: metrics multiprocess dir {given} holds files that are not prometheus")
    assert (given / "notes.txt").read_text() == "not sibyl's"


def test_a_user_metrics_dir_keeps_existing_and_only_loses_our_files(tmp_path: Path) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_999999999.db").write_bytes(b"stale")  # a dead process's file: would be counted
    proc = start_with(tmp_path, given)
    try:
        assert proc.stdout is not None and "serving on" in proc.stdout.readline()
        assert not (given / "counter_999999999.db").exists()
        assert list(given.glob("*.db")), "the workers write their metrics there"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert given.is_dir() and not list(given.iterdir()), "our files go at exit, the directory stays"


def spool_records(folder: Path, ids: list[str]) -> None:
    spool = Spool(folder, max_bytes=1 << 24)
    spool.open()
    payloads = [
        spool_payload(i.encode(), PredictionLog(prediction_id=i, predictor="p").SerializeToString()) for i in ids
    ]
    assert spool.append(payloads) == len(ids)
    spool.close()


def test_spools_of_workers_beyond_the_count_are_replayed(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    """Yesterday 4 workers and a Kafka outage left spools in worker-0..3; today 2 workers replay all four."""
    topic = f"adopt-{tmp_path.name[-30:].lower().replace('_', '-')}"
    create_topic(kafka_broker.bootstrap, topic)
    spooled = {i: [f"w{i}-{n}" for n in range(50)] for i in range(4)}
    for i, ids in spooled.items():
        spool_records(worker_dir(tmp_path / "spool", i), ids)
    env = {
        "SIBYL_PREDLOG__SINK": "kafka",
        "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "SIBYL_PREDLOG__TOPIC": topic,
        "SIBYL_METRICS__PORT": "0",
    }
    proc, _, _ = serve_subprocess(tmp_path, "--workers", "2", **env)
    want = {i for ids in spooled.values() for i in ids}
    try:
        wait(lambda: want <= ids_in_topic(kafka_broker.bootstrap, topic), 60, "every spooled record in Kafka")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    for i in (2, 3):
        assert not list(worker_dir(tmp_path / "spool", i).glob("*.spool")), f"worker-{i} still holds segments"
