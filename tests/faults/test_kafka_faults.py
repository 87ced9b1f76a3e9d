"""The Kafka broker hung (SIGSTOP) and killed then restarted, under steady open-loop load through a real `sibyl serve`
with the Kafka sink: no call fails, and every answered prediction is in the topic afterwards. The fault lasts 8 s in
CI (more than twice predlog.kafka_ack_timeout_s, so the sink marks the broker down, spools and reconnects: the same
path as a longer fault) and 15 s with --runslow (the length of the runs in docs/reliability.md).

The broker is tansu with its storage on the (moto) S3 test server, so what it acknowledged outlives a SIGKILL
(with memory storage a restart would lose the topic and blame it on sibyl). Load, faults and figures:
tests/faults/kafka_load.py (also a script for reproducing by hand). The p99 during the fault and the time
until the backlog is delivered are printed for the fault table, never asserted (a shared, noisy machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.kafka_load import Fault, broker_fault
from tests.support.kafka_broker import DurableKafkaBroker

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
FAULT_S, LONG_FAULT_S, RATE = 8.0, 15.0, 100.0
CLIENTS = ["kafka-python", pytest.param("confluent", marks=pytest.mark.slow)]  # the default client runs in CI


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("fault", ["hang", "kill"])
async def test_kafka_broker_fault_fails_no_call_and_loses_no_record(
    durable_broker: DurableKafkaBroker, tmp_path: Path, fault: Fault, client: str, pytestconfig: pytest.Config
) -> None:
    fault_s = LONG_FAULT_S if pytestconfig.getoption("--runslow") else FAULT_S
    run = await broker_fault(tmp_path, durable_broker, fault, client, fault_s=fault_s, rate=RATE)
    print("\n" + run.table_row())
    during = run.load.between("fault", "repair")
    assert len(during) >= 0.9 * fault_s * RATE  # the load really ran through the fault (a count, not a time)
    assert run.load.failed() == [], f"calls failed: {run.load.codes()}, per second {run.load.failures_per_second()}"
    assert run.delivered_s is not None, "the backlog did not reach Kafka within 60 s of the repair"
    assert run.missing == set(), f"{len(run.missing)} answered predictions missing from Kafka"
    assert run.exit_code == 0  # SIGTERM: a clean shutdown
