"""A Kafka broker fault under steady open-loop load through a real `sibyl serve` subprocess.

`broker_fault` starts the server with the Kafka sink on a durable tansu broker (its storage on the S3 test
server), sends `rate` calls/s (2 s deadline each), hangs (SIGSTOP) or kills the broker for `fault_s`, repairs it,
then waits until every answered prediction is in the topic and stops the server (SIGTERM). The result holds
every call's outcome and what the topic holds afterwards; the pytest scenarios assert on it.

Also a script, for reproducing by hand (prints failed calls per second, optionally py-spy stacks mid-fault):

    python -m tests.faults.kafka_load hang --client kafka-python --spy /tmp/stacks.txt
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import json_format

from sibyl.features.settings import EXAMPLE_FEATURES
from sibyl.models.settings import EXAMPLE_STORE
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest, Role
from tests.faults.harness import OpenLoad, p99_ms
from tests.support.inproc import serve_subprocess
from tests.support.kafka_broker import DurableKafkaBroker, KafkaBroker, create_topic
from tests.support.kafkaread import ids_in_topic
from tests.support.s3_server import S3Server, make_bucket

TOPIC = "sibyl.predictions"
# every thread, idle ones too (SIBYL_SPY_GIL=1: only the thread holding the GIL), without pausing the server
SPY_FLAGS = ["--threads", "--nonblocking", *(["--gil"] if os.environ.get("SIBYL_SPY_GIL") else ["--idle"])]
EXAMPLE_REQUEST = EXAMPLE_STORE.parent / "request.json"
Fault = Literal["hang", "kill"]


def request(i: int) -> PredictRequest:
    """Two rows for predictor p (tests/support/inproc.publish_models), like sibyl/examples/request.json."""
    rows = [FeatureRow(features={"amount": float(i % 5)}), FeatureRow(features={"amount": 2.5, "rating": 4.0})]
    return PredictRequest(request_id=f"r{i}", predictor="p", rows=rows)


def example_request(i: int) -> PredictRequest:
    """sibyl/examples/request.json (predictor `example`, served from the bundled store with --example)."""
    message = json_format.Parse(EXAMPLE_REQUEST.read_text(), PredictRequest())
    message.request_id = f"example-{i}"
    return message


@dataclass
class FaultRun:
    name: str
    load: OpenLoad
    logged: set[str]  # primary prediction ids read from the topic (the delivery check's read and the last one)
    delivered_s: float | None  # repair -> every prediction answered so far is in the topic (None: not in time)
    exit_code: int | None
    stacks: list[str] = field(default_factory=list)
    vanished: set[str] = field(default_factory=set)  # found by the delivery check's read, not by the last read

    @property
    def missing(self) -> set[str]:
        return self.load.answered() - self.logged

    def table_row(self) -> str:
        during = self.load.between("fault", "repair")
        delivered = f"{self.delivered_s:.1f} s" if self.delivered_s is not None else "not in time"
        return (
            f"[{self.name}] calls {len(self.load.shots)} {dict(self.load.codes())}; failed during fault "
            f"{sum(s.code != 'OK' for s in during)} of {len(during)}; p99 during fault {p99_ms(during):.1f} ms, "
            f"before {p99_ms(self.load.between('start', 'fault')):.1f} ms; answered {len(self.load.answered())}, "
            f"missing from Kafka {len(self.missing)} (found by an earlier read only: {len(self.vanished)}); all delivered {delivered} after repair; "
            f"failed per second {self.load.failures_per_second()}"
        )


def py_spy(pid: int, record_s: float = 0.0) -> str:
    """One `py-spy dump --native` of the server (pip install py-spy), or with record_s a `py-spy record` of
    that long (every thread, idle ones too, as collapsed stacks with sample counts); the error text if it
    cannot run."""
    if record_s:
        out = Path(tempfile.mkstemp(suffix=".txt")[1])
        command = ["py-spy", "record", "--pid", str(pid), *SPY_FLAGS, "-r", "200"]
        command += ["-d", str(int(record_s)), "-f", "raw", "-o", str(out)]
    else:
        command = ["py-spy", "dump", "--pid", str(pid), "--native"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=record_s + 30)
        if record_s:
            return out.read_text()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"py-spy failed: {exc}"
    return done.stdout + done.stderr


async def broker_fault(
    tmp_path: Path,
    broker: KafkaBroker,
    fault: Fault,
    client: str = "kafka-python",
    *,
    fault_s: float = 15.0,
    rate: float = 100.0,
    before_s: float = 3.0,
    after_s: float = 5.0,
    spy_at_s: tuple[float, ...] = (),
    spy_record_s: float = 0.0,
    deliver_s: float = 60.0,
    example: bool = False,
) -> FaultRun:
    """example: serve the bundled example store and features and send sibyl/examples/request.json."""
    create_topic(broker.bootstrap, TOPIC)
    env = {
        "SIBYL_PREDLOG__SINK": "kafka",
        "SIBYL_PREDLOG__KAFKA_BOOTSTRAP": broker.bootstrap,
        "SIBYL_PREDLOG__TOPIC": TOPIC,
        "SIBYL_PREDLOG__SPOOL_DIR": str(tmp_path / "spool"),
        "SIBYL_METRICS__PORT": "0",
    }
    if client != "kafka-python":
        env["SIBYL_PREDLOG__KAFKA_CLIENT"] = client
    if example:
        env.update(
            SIBYL_MODEL_STORE__URL=f"file://{EXAMPLE_STORE}",
            SIBYL_FEATURES__BACKEND="memory",
            SIBYL_FEATURES__MEMORY_FILE=str(EXAMPLE_FEATURES),
        )
    proc, port, _ = serve_subprocess(tmp_path, log_to=tmp_path / "server.log", **env)
    stacks: list[str] = []
    delivered_s: float | None = None
    seen: set[str] = set()
    try:
        make = example_request if example else request
        async with OpenLoad(f"127.0.0.1:{port}", make, rate=rate, deadline_s=2.0) as load:
            load.mark("start")
            await asyncio.sleep(before_s)
            load.mark("fault")
            if fault == "hang":
                os.kill(broker.pid, signal.SIGSTOP)
            else:
                await asyncio.to_thread(broker.kill)
            broken = time.monotonic()
            for at in spy_at_s:
                await asyncio.sleep(max(0.0, broken + at - time.monotonic()))
                stacks.append(await asyncio.to_thread(py_spy, proc.pid, spy_record_s))
            await asyncio.sleep(max(0.0, broken + fault_s - time.monotonic()))
            if fault == "hang":
                os.kill(broker.pid, signal.SIGCONT)
            else:
                await asyncio.to_thread(broker.start)
            load.mark("repair")
            repaired = time.monotonic()
            await asyncio.sleep(after_s)
        answered = load.answered()
        deadline = time.monotonic() + deliver_s
        while time.monotonic() < deadline:
            seen = await asyncio.to_thread(ids_in_topic, broker.bootstrap, TOPIC, Role.ROLE_PRIMARY)
            if not answered - seen:
                delivered_s = time.monotonic() - repaired
                break
            await asyncio.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            exit_code: int | None = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = proc.wait(10)
    final = await asyncio.to_thread(ids_in_topic, broker.bootstrap, TOPIC, Role.ROLE_PRIMARY)
    logged = final | seen  # a record a read returned is in the topic; reads of tansu on S3 can disagree
    name = f"kafka broker {fault} {fault_s:.0f} s, {client}"
    return FaultRun(name, load, logged, delivered_s, exit_code, stacks, vanished=seen - final)


async def _main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="sibyl-kafka-fault-") as tmp, S3Server() as s3:
        bucket = f"tansu-{uuid.uuid4().hex[:8]}"
        make_bucket(s3.endpoint_url, bucket)
        broker = (KafkaBroker() if args.memory else DurableKafkaBroker(s3.endpoint_url, bucket)).start()
        try:
            run = await broker_fault(
                Path(tmp),
                broker,
                args.fault,
                args.client,
                fault_s=args.fault_s,
                rate=args.rate,
                spy_at_s=tuple(args.spy_at) if args.spy else (),
                spy_record_s=args.spy_record,
                example=args.example,
            )
            again = set()
            for _ in range(3 if run.missing else 0):
                read = ids_in_topic(broker.bootstrap, TOPIC, Role.ROLE_PRIMARY)
                print(f"re-read: {len(read)} primary ids, {len(run.missing & read)} of the missing")
                again |= read
        finally:
            broker.kill()
            broker.close()
        print(run.table_row())
        if run.missing:
            sent_at = sorted(s.t for s in run.load.shots if s.prediction_id in run.missing)
            print(
                f"missing ones sent between {sent_at[0]:.2f} and {sent_at[-1]:.2f} s; a second read finds "
                f"{len(run.missing & again)} of them"
            )
        print(f"p99 ms per second: {run.load.p99_per_second()}")
        print(f"fault at {run.load.marks['fault']:.1f} s, repair at {run.load.marks['repair']:.1f} s")
        if args.spy:
            args.spy.write_text("\n\n======== next dump ========\n\n".join(run.stacks))
            print(f"py-spy stacks in {args.spy}")
        server_log = (Path(tmp) / "server.log").read_text(errors="replace")
        if args.log:
            args.log.write_text(server_log)
        print("---- server log tail ----\n" + server_log[-3000:])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fault", choices=["hang", "kill"])
    parser.add_argument("--client", default="kafka-python", choices=["kafka-python", "confluent"])
    parser.add_argument("--fault-s", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--spy-record", type=float, default=0.0, help="py-spy record this long at each --spy-at")
    parser.add_argument("--memory", action="store_true", help="tansu with memory storage (not for kill)")
    parser.add_argument("--log", type=Path, default=None, help="copy the whole server log here")
    parser.add_argument("--example", action="store_true", help="the bundled example store and request.json")
    parser.add_argument("--spy", type=Path, default=None, help="write py-spy dumps taken during the fault here")
    parser.add_argument("--spy-at", type=float, nargs="+", default=[6.0, 8.0, 10.0], help="seconds into the fault")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
