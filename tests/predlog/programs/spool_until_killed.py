"""A process that dies with records in its spool: a Kafka sink whose broker does not answer spools N records,
prints "spooled N" and waits to be killed without close(). The test then replays the spool it left.

    python spool_until_killed.py DEAD_BOOTSTRAP SPOOL_DIR N
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sibyl.observability.metrics import Metrics
from sibyl.predlog.kafka import KafkaSink
from sibyl.predlog.spool import Spool
from sibyl.v1.predlog_pb2 import PredictionLog


def main(bootstrap: str, spool_dir: Path, n: int) -> None:
    metrics = Metrics()
    sink = KafkaSink(
        bootstrap, "t", Spool(spool_dir, 1 << 26), metrics, request_timeout_ms=1000, connect_timeout_ms=300
    )
    sink.start()
    for i in range(n):
        sink.submit(PredictionLog(prediction_id=f"c-{i}", predictor="p"))
    spooled = metrics.predlog_records.labels("spooled")
    for _ in range(400):
        if spooled._value.get() >= n:
            break
        time.sleep(0.05)
    print("spooled", int(spooled._value.get()), flush=True)
    time.sleep(60)  # killed here, without close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))
