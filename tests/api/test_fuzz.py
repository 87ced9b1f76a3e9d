"""Hypothesis-generated requests (and raw bytes) against a real server: only caller-error codes, never UNKNOWN/INTERNAL.

The server runs in a thread with its own event loop so hypothesis can drive it with a plain blocking client.
Budget: ~150 examples per test by default, many more with --runslow.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sibyl.api.server import SibylServer
from sibyl.v1.predict_pb2 import (
    DenseRows,
    EntityColumn,
    FeatureRow,
    FloatVector,
    PredictRequest,
    PredictStreamResponse,
)
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import CONSUMERS, STORES, publish_models, running_server, write_features

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
MAX_MESSAGE = 256 * 1024
RSS_GROWTH_LIMIT = 32 * 1024 * 1024  # generous: allocator arenas and caches settle, a leak per call does not
CORPUS = 300
PREDICT = "/sibyl.v1.PredictionService/Predict"
STREAM = "/sibyl.v1.PredictionService/PredictStream"
GOOD = PredictRequest(predictor="p", context={"consumer_id": "c1"}, rows=[FeatureRow(features={"amount": 1.0})])


class ServerThread:
    """A SibylServer on its own loop in a daemon thread; `with` starts it and stops it (bounded waits)."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root, self.overrides = root, overrides
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.server: SibylServer | None = None

    def __enter__(self) -> ServerThread:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self.ready.wait(30):
            raise TimeoutError("server thread did not start in 30 s")
        if self.error is not None:
            raise self.error
        return self

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_server(self.root, **self.overrides) as server:
                self.server = server
                self.ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    @property
    def target(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("fuzz")
    publish_models(root / "store")
    features = write_features(root / "features.jsonl", CONSUMERS + STORES)
    with ServerThread(
        root,
        server={"max_rows": 64, "max_models": 4, "max_message_bytes": MAX_MESSAGE, "max_name_length": 64},
        features={"backend": "memory", "memory_file": str(features)},
        predlog={"sink": "file"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


def budget(config: pytest.Config) -> settings:
    return settings(
        max_examples=3000 if config.getoption("--runslow") else 150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=True,
    )


# ---- strategies: mostly near-valid values (so requests get deep into the path), some anything
FEATURES = ["amount", "age", "rating", "emb", "emb[0]", "emb[1]"]
names = st.one_of(st.sampled_from(FEATURES), st.text(max_size=80))
entities = st.one_of(st.sampled_from(["consumer_id", "store_id"]), st.text(max_size=80))
ids = st.one_of(st.sampled_from(["c1", "s1", "nobody", ""]), st.text(max_size=80))
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
model_refs = st.one_of(
    st.sampled_from(["m", "s", "m@1", "s@1", "m@9", "x@1", "@", "m@", "", "m@1@2"]), st.text(max_size=80)
)

rows = st.builds(
    FeatureRow,
    features=st.dictionaries(names, floats, max_size=6),
    vectors=st.dictionaries(names, st.builds(FloatVector, values=st.lists(floats, max_size=4)), max_size=2),
    entities=st.dictionaries(entities, ids, max_size=2),
)


@st.composite
def dense(draw: st.DrawFn) -> tuple[DenseRows, int]:
    feature_names = draw(st.lists(names, max_size=6))
    num_rows = draw(st.one_of(st.integers(0, 80), st.sampled_from([2**31, 2**32 - 1, 10**6])))
    if num_rows <= 80 and draw(st.booleans()):  # right length, values anything
        values = np.asarray(
            draw(st.lists(floats, min_size=num_rows * len(feature_names), max_size=num_rows * len(feature_names))),
            "<f4",
        ).tobytes()
    else:  # wrong or random length
        values = draw(st.binary(max_size=256))
    return DenseRows(feature_names=feature_names, values=values, num_rows=num_rows), num_rows


@st.composite
def plausible(draw: st.DrawFn) -> PredictRequest:
    """Close to what a real client sends: mostly answered OK, so the whole path (features, models, log) runs."""
    value = st.one_of(st.floats(-1e6, 1e6, width=32), st.just(float("nan")))
    request = PredictRequest(
        predictor="p",
        context=draw(st.dictionaries(st.sampled_from(["consumer_id", "store_id"]), ids, max_size=2)),
        extra_models=draw(st.lists(st.sampled_from(["s@1", "m", "m@1"]), max_size=2, unique=True)),
        model_override=draw(st.sampled_from(["", "", "s", "m@1"])),
    )
    if draw(st.booleans()):
        row = st.builds(
            FeatureRow,
            features=st.dictionaries(st.sampled_from(["amount", "age", "rating"]), value, max_size=3),
            vectors=st.dictionaries(
                st.just("emb"), st.builds(FloatVector, values=st.lists(value, min_size=2, max_size=2))
            ),
            entities=st.dictionaries(st.sampled_from(["consumer_id", "store_id"]), ids, max_size=2),
        )
        request.rows.extend(draw(st.lists(row, min_size=1, max_size=40)))
    else:
        columns = draw(st.lists(st.sampled_from(["amount", "age", "rating", "emb[0]", "emb[1]"]), unique=True))
        n = draw(st.integers(1, 64))
        matrix = draw(st.lists(value, min_size=n * len(columns), max_size=n * len(columns)))
        request.dense.CopyFrom(DenseRows(feature_names=columns, values=np.asarray(matrix, "<f4").tobytes(), num_rows=n))
        if draw(st.booleans()):
            request.row_entities.append(EntityColumn(entity="store_id", ids=[draw(ids) for _ in range(n)]))
    return request


@st.composite
def wild(draw: st.DrawFn) -> PredictRequest:
    request = PredictRequest(
        request_id=draw(st.text(max_size=40)),
        predictor=draw(st.one_of(st.sampled_from(["p", "", "nope"]), st.text(max_size=80))),
        context=draw(st.dictionaries(entities, ids, max_size=3)),
        extra_models=draw(st.lists(model_refs, max_size=6)),
        model_override=draw(model_refs) if draw(st.booleans()) else "",
    )
    form = draw(st.sampled_from(["rows", "dense", "both", "none"]))
    if form in ("rows", "both"):
        request.rows.extend(draw(st.lists(rows, max_size=12)))
    if form in ("dense", "both"):
        message, num_rows = draw(dense())
        request.dense.CopyFrom(message)
        for entity in draw(st.lists(entities, max_size=2)):
            count = num_rows if num_rows <= 80 and draw(st.booleans()) else draw(st.integers(0, 5))
            request.row_entities.append(EntityColumn(entity=entity, ids=[draw(ids) for _ in range(count)]))
    return request


requests = st.one_of(plausible(), wild())


def code_of(call: Any, *args: Any) -> grpc.StatusCode:
    try:
        call(*args, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return,attr-defined]
    return grpc.StatusCode.OK


def stream_codes(channel: grpc.Channel, messages: list[bytes]) -> list[grpc.StatusCode]:
    """Each message of a stream answers alone (its own Status); the stream itself must end OK."""
    call = channel.stream_stream(STREAM)
    codes = []
    try:
        for raw in call(iter(messages), timeout=10):
            response = PredictStreamResponse.FromString(raw)
            ok = response.HasField("response")
            codes.append(grpc.StatusCode.OK if ok else grpc.StatusCode[response.error.code_name])
    except grpc.RpcError as exc:
        codes.append(exc.code())  # type: ignore[attr-defined]
    return codes


def assert_alive(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    PredictionServiceStub(channel).Predict(GOOD, timeout=5)


def test_generated_requests_get_only_caller_error_codes(channel: grpc.Channel, request: pytest.FixtureRequest) -> None:
    stub = PredictionServiceStub(channel)
    seen: dict[str, int] = {}
    corpus: list[PredictRequest] = []

    @budget(request.config)
    @given(requests)
    def check(message: PredictRequest) -> None:
        code = code_of(stub.Predict, message)
        seen[code.name] = seen.get(code.name, 0) + 1
        assert code in ALLOWED, f"{code.name} for {message}"
        if len(corpus) < CORPUS:
            corpus.append(message)

    check()
    print(f"\nfuzz requests: outcomes {seen}")
    assert seen.get("OK", 0) > 0 and seen.get("INVALID_ARGUMENT", 0) > 0  # the generator reaches both
    assert_alive(channel)


def test_replayed_corpus_keeps_rss_bounded(channel: grpc.Channel, request: pytest.FixtureRequest) -> None:
    """Hypothesis itself keeps ~50 KB per example in this process, so RSS is watched while replaying a corpus
    of generated requests (fresh request ids each pass), not during generation."""
    corpus: list[PredictRequest] = []

    @budget(request.config)
    @given(requests)
    def collect(message: PredictRequest) -> None:
        if len(corpus) < CORPUS:
            corpus.append(message)

    collect()
    stub = PredictionServiceStub(channel)
    passes = 20 if request.config.getoption("--runslow") else 3
    for message in corpus:  # one warm-up pass: arenas, caches and lazily loaded extras settle
        code_of(stub.Predict, message)
    before = rss_bytes()
    for n in range(passes):
        for i, message in enumerate(corpus):
            message.request_id = f"replay-{n}-{i}"
            assert code_of(stub.Predict, message) in ALLOWED
    growth = rss_bytes() - before
    print(f"\nreplay: {passes} x {len(corpus)} calls, RSS growth {growth / 2**20:.1f} MiB")
    assert growth < RSS_GROWTH_LIMIT
    assert_alive(channel)


def test_random_bytes_as_a_message(channel: grpc.Channel, request: pytest.FixtureRequest) -> None:
    raw = channel.unary_unary(PREDICT)  # no serializers: bytes go on the wire as they are
    seen: dict[str, int] = {}

    @budget(request.config)
    @given(st.one_of(st.binary(max_size=512), st.builds(lambda r: r.SerializeToString(), requests)))
    def check(data: bytes) -> None:
        code = code_of(raw, data)
        seen[code.name] = seen.get(code.name, 0) + 1
        assert code in ALLOWED, f"{code.name} for {data!r}"

    check()
    print(f"\nfuzz bytes: outcomes {seen}")
    assert_alive(channel)


def test_stream_of_random_messages_answers_each(channel: grpc.Channel, request: pytest.FixtureRequest) -> None:
    @budget(request.config)
    @given(st.lists(st.one_of(st.binary(max_size=128), st.just(GOOD.SerializeToString())), min_size=1, max_size=8))
    def check(messages: list[bytes]) -> None:
        codes = stream_codes(channel, messages)
        assert len(codes) == len(messages), codes  # every message answered, the stream not cut short
        assert set(codes) <= ALLOWED, codes

    check()
    assert_alive(channel)


def test_oversized_message_is_resource_exhausted(channel: grpc.Channel) -> None:
    big = PredictRequest(
        predictor="p", dense=DenseRows(feature_names=["amount"], values=b"\0" * (MAX_MESSAGE + 1), num_rows=1)
    )
    assert code_of(PredictionServiceStub(channel).Predict, big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_alive(channel)
