"""`sibyl score`: score a CSV or Parquet file through a running server (PredictStream) or in-process.

Columns: entity columns (default: names ending in "_id") carry ids for the feature store; every other
column is a numeric feature (empty cell = not given: filled from the store or the default). The output file
has the id columns (default: the entity columns) next to the scores, in input order.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sibyl.cli.progress import Progress
from sibyl.cli.remote import add_connection_flags
from sibyl.errors import InvalidArgument, MissingDependency, SibylError
from sibyl.models.predictor import ModelRef

if TYPE_CHECKING:
    from sibyl.client import Client
    from sibyl.config import Settings
    from sibyl.v1.predict_pb2 import PredictRequest, PredictResponse

PARQUET = (".parquet", ".pq")


class ScoreError(SibylError):
    """A batch the server refused: the message names its rows."""


@dataclass
class Batch:
    index: int
    first_row: int
    columns: dict[str, list[str]]  # input columns as text (CSV: all of them)
    numbers: dict[str, Any] = field(default_factory=dict)  # Parquet's numeric columns, as Arrow arrays

    @property
    def num_rows(self) -> int:
        if self.numbers:
            return len(next(iter(self.numbers.values())))
        return len(next(iter(self.columns.values()), []))

    def text(self, name: str) -> list[str]:
        """A column as text ("" = null), as ids and entities are sent and written."""
        if name in self.columns:
            return self.columns[name]
        return ["" if v is None else str(v) for v in self.numbers[name].to_pylist()]


@dataclass(frozen=True)
class Layout:
    features: list[str]
    entities: list[str]
    ids: list[str]


# ---- reading
def read_batches(path: Path, batch_rows: int) -> tuple[list[str], Iterator[Batch]]:
    if not path.exists():
        raise InvalidArgument(f"input file {path} does not exist")
    if path.suffix.lower() in PARQUET:
        return _parquet_batches(path, batch_rows)
    if path.suffix.lower() == ".csv":
        return _csv_batches(path, batch_rows)
    raise InvalidArgument(f"input {path}: use a .csv or .parquet file")


def _csv_batches(path: Path, batch_rows: int) -> tuple[list[str], Iterator[Batch]]:
    handle = path.open(newline="")
    reader = csv.reader(handle)
    header = next(reader, None)
    if not header:
        handle.close()
        raise InvalidArgument(f"{path} is empty: the first line must name the columns")

    def batches() -> Iterator[Batch]:
        with handle:
            index, first, chunk = 0, 0, []
            for line_no, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise InvalidArgument(f"{path} line {line_no}: {len(row)} fields, the header has {len(header)}")
                chunk.append(row)
                if len(chunk) == batch_rows:
                    yield Batch(index, first, dict(zip(header, map(list, zip(*chunk, strict=True)), strict=True)))
                    index, first, chunk = index + 1, first + len(chunk), []
            if chunk:
                yield Batch(index, first, dict(zip(header, map(list, zip(*chunk, strict=True)), strict=True)))

    return header, batches()


def _parquet_batches(path: Path, batch_rows: int) -> tuple[list[str], Iterator[Batch]]:
    pq = _pyarrow_parquet()
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a bad file
        raise InvalidArgument(f"{path} is not a Parquet file: {exc}") from None
    header = list(file.schema_arrow.names)
    import pyarrow as pa

    def batches() -> Iterator[Batch]:
        first = 0
        for index, record_batch in enumerate(file.iter_batches(batch_size=batch_rows)):
            columns, numbers = {}, {}
            for name in header:  # numbers stay numbers (no text round trip); text only where text is needed
                array = record_batch.column(name)
                if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
                    numbers[name] = array
                else:
                    columns[name] = ["" if v is None else str(v) for v in array.to_pylist()]
            yield Batch(index, first, columns, numbers)
            first += record_batch.num_rows

    return header, batches()


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency("pyarrow", "parquet", "reading and writing Parquet") from None
    return pq


def layout(header: list[str], entities: list[str] | None, ids: list[str] | None) -> Layout:
    for name in (entities or []) + (ids or []):
        if name not in header:
            raise InvalidArgument(f"column {name!r} is not in the input; it has {header}")
    entity_cols = entities if entities is not None else [c for c in header if c.endswith("_id")]
    id_cols = ids if ids is not None else list(entity_cols)
    features = [c for c in header if c not in entity_cols and c not in id_cols]
    return Layout(features, entity_cols, id_cols)


def to_request(batch: Batch, lay: Layout, predictor: str, context: dict[str, str], override: str) -> PredictRequest:
    from sibyl.v1.predict_pb2 import DenseRows, EntityColumn, PredictRequest

    n = batch.num_rows
    matrix = np.empty((n, len(lay.features)), dtype="<f4")
    for j, name in enumerate(lay.features):
        if name in batch.numbers:  # float64 with NaN for nulls, or ints: cast by the assignment
            matrix[:, j] = batch.numbers[name].to_numpy(zero_copy_only=False)
            continue
        cells = batch.columns[name]
        try:
            matrix[:, j] = np.array([c if c != "" else "nan" for c in cells], dtype=np.float32)
        except ValueError:
            bad = next(i for i, c in enumerate(cells) if not _is_number(c))
            raise InvalidArgument(
                f"row {batch.first_row + bad + 1}, column {name!r}: {cells[bad]!r} is not a number "
                "(name id columns with --entity-columns/--id-columns)"
            ) from None
    return PredictRequest(
        request_id=str(batch.index),
        predictor=predictor,
        context=context,
        dense=DenseRows(feature_names=lay.features, values=matrix.tobytes(), num_rows=n),
        row_entities=[EntityColumn(entity=e, ids=batch.text(e)) for e in lay.entities],
        model_override=override,
    )


def _is_number(text: str) -> bool:
    try:
        float(text or "nan")
    except ValueError:
        return False
    return True


# ---- writing
class Writer:
    """CSV or Parquet by the output's extension; rows in input order."""

    def __init__(self, path: Path, ids: list[str]) -> None:
        self.path, self.ids = path, ids
        self.parquet = path.suffix.lower() in PARQUET
        if not self.parquet and path.suffix.lower() != ".csv":
            raise InvalidArgument(f"output {path}: use a .csv or .parquet file")
        self._pq: Any = _pyarrow_parquet() if self.parquet else None
        self._file: Any = None
        self._csv: Any = None
        self.rows = 0

    def write(self, batch: Batch, response: PredictResponse) -> None:
        result = response.results[0]
        model = str(ModelRef(result.model, result.version))
        scores = np.asarray(result.scores, dtype=np.float32).reshape(batch.num_rows, max(result.dim, 1))
        names = ["score"] if scores.shape[1] == 1 else [f"score_{i}" for i in range(scores.shape[1])]
        if self.parquet:
            import pyarrow as pa

            data = {c: batch.text(c) for c in self.ids} | {n: pa.array(scores[:, i]) for i, n in enumerate(names)}
            data["model"] = [model] * batch.num_rows
            table = pa.table(data)
            if self._file is None:
                self._file = self._pq.ParquetWriter(self.path, table.schema)
            self._file.write_table(table)
        else:
            if self._file is None:
                self._file = self.path.open("w", newline="")
                self._csv = csv.writer(self._file)
                self._csv.writerow([*self.ids, *names, "model"])
            id_columns = [batch.text(c) for c in self.ids]
            for r in range(batch.num_rows):
                self._csv.writerow([*(col[r] for col in id_columns), *(repr(float(v)) for v in scores[r]), model])
        self.rows += batch.num_rows

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# ---- scoring loops
Scorer = Callable[[Iterable[tuple[Batch, "PredictRequest"]]], Iterator[tuple[Batch, "PredictResponse"]]]


def remote_scorer(client: Client, timeout_s: float | None) -> Scorer:
    """One PredictStream (sibyl.client, closed at the end): requests go out as the file is read; answers come
    back in any order and are put back in input order (the server keeps a bounded window of a stream in
    flight, so this buffer is bounded)."""
    import grpc

    def score(pairs: Iterable[tuple[Batch, PredictRequest]]) -> Iterator[tuple[Batch, PredictResponse]]:
        sent: dict[str, Batch] = {}
        failed: list[Exception] = []  # a bad input row, raised in grpc's sending thread, is re-raised here

        def requests() -> Iterator[PredictRequest]:
            try:
                for batch, request in pairs:
                    sent[request.request_id] = batch
                    yield request
            except Exception as exc:
                failed.append(exc)
                raise

        pending: dict[int, tuple[Batch, PredictResponse]] = {}
        next_index = 0
        with client:
            try:
                for item in client.stream(requests(), timeout_s):
                    batch = sent.pop(item.request_id)
                    if item.HasField("error"):
                        rows = f"rows {batch.first_row + 1}-{batch.first_row + batch.num_rows}"
                        raise ScoreError(f"{rows}: {item.error.code_name}: {item.error.message}")
                    pending[batch.index] = (batch, item.response)
                    while next_index in pending:
                        yield pending.pop(next_index)
                        next_index += 1
            except grpc.RpcError:
                if failed:
                    raise failed[0] from None
                raise
        if failed:
            raise failed[0]

    return score


def local_scorer(settings: Settings) -> tuple[Scorer, Callable[[], None]]:
    """sibyl.batch.BatchScorer on each request's rows: the server's decode, feature assembly, defaults and
    runtime, with no event loop, no thread, no store polling and no prediction log. The target (the predictor,
    or --model-override) is pinned at its first batch."""
    from sibyl.app import inference_threads
    from sibyl.batch import BatchScorer
    from sibyl.serving.decode import Limits, decode
    from sibyl.v1.predict_pb2 import ModelScores, PredictResponse, Role

    ms = settings.model_store
    # No request to bound here: the file is read in --batch-rows batches, each scored as one request.
    limits = Limits(max_rows=2**62, max_elements=2**62, max_name_length=settings.server.max_name_length)
    loaded: dict[str, BatchScorer] = {}

    def scorer_for(target: str) -> BatchScorer:
        if target not in loaded:
            loaded[target] = BatchScorer.load(
                ms.url, target, features=settings.features, intra_op_threads=inference_threads(settings),
                s3_endpoint_url=ms.s3_endpoint_url, s3_region=ms.s3_region,
            )  # fmt: skip
        return loaded[target]

    def answer(request: PredictRequest) -> PredictResponse:
        batch = decode(request, limits)
        scorer = scorer_for(request.model_override or request.predictor)
        unknown = [n for n in batch.names if n not in scorer.inputs]
        if unknown:  # the server refuses a name no model takes (almost always a typo): so does this
            raise InvalidArgument(
                f"unknown feature(s) {unknown[:5]} for {', '.join(scorer.refs)}; expected names like "
                f"{sorted(scorer.layout.columns)[:8]}"
            )
        _, scores = scorer.score_rows(batch)
        model = scorer.models[0]
        role = Role.ROLE_OVERRIDE if request.model_override else Role.ROLE_PRIMARY
        result = ModelScores(model=model.name, version=model.version, role=role, dim=scores[0].shape[1])
        result.scores.extend(scores[0].ravel().tolist())
        return PredictResponse(request_id=request.request_id, predictor=request.predictor, results=[result])

    def score(pairs: Iterable[tuple[Batch, PredictRequest]]) -> Iterator[tuple[Batch, PredictResponse]]:
        for batch, request in pairs:
            try:
                yield batch, answer(request)
            except SibylError as exc:
                rows = f"rows {batch.first_row + 1}-{batch.first_row + batch.num_rows}"
                raise ScoreError(f"{rows}: {exc}") from None

    def close() -> None:
        for scorer in loaded.values():
            scorer.close()

    return score, close


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    if args.batch_rows < 1:
        raise InvalidArgument("--batch-rows must be at least 1")
    if bool(args.in_process) == bool(args.target):
        raise InvalidArgument("give --target HOST:PORT (a running server) or --in-process, one of them")
    context = dict(_pair(t) for t in args.context or [])
    header, batches = read_batches(Path(args.input), args.batch_rows)
    lay = layout(header, _names(args.entity_columns), _names(args.id_columns))
    writer = Writer(Path(args.output), lay.ids)
    pairs = ((b, to_request(b, lay, args.predictor, context, args.model_override or "")) for b in batches)
    first = next(pairs, None)  # a bad file fails here, before any connection or model load
    if first is None:
        raise InvalidArgument(f"{args.input} has no rows to score")
    close: Callable[[], None] = lambda: None  # noqa: E731
    if args.in_process:
        scorer, close = local_scorer(settings)  # --store is applied to settings by the CLI
    else:
        from sibyl.cli.remote import open_client

        scorer = remote_scorer(open_client(args, None), args.timeout)
    progress = (
        None if args.quiet else Progress("scoring", line=lambda n, rate, _: f"scored {n:,} rows ({rate:,.0f} rows/s)")
    )
    start = time.monotonic()
    try:
        for batch, response in scorer(itertools.chain([first], pairs)):
            writer.write(batch, response)
            if progress is not None:
                progress.update_to(writer.rows)
    finally:
        writer.close()
        close()
        if progress is not None:
            progress.close()
    elapsed = time.monotonic() - start
    if not args.quiet:
        rate = writer.rows / elapsed if elapsed > 0 else 0.0
        print(f"scored {writer.rows:,} rows in {elapsed:.2f} s ({rate:,.0f} rows/s) -> {args.output}", file=sys.stderr)
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidArgument(f"--context {text!r}: write ENTITY=ID")
    return key, value


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("score", help="score a CSV/Parquet file (through a server, or in-process)")
    p.add_argument("input", help="CSV or Parquet file with a header of feature and id columns")
    p.add_argument("output", help="CSV or Parquet file for the ids and scores (input order)")
    p.add_argument("--predictor", required=True, help="predictor to score with, e.g. example")
    p.add_argument("--target", help="HOST:PORT of a running sibyl (scores over one PredictStream)")
    p.add_argument(
        "--in-process", action="store_true", help="load the models here instead (sibyl.batch: no server, no log)"
    )
    p.add_argument("--store", help="model store URL for --in-process (default: settings)")
    p.add_argument("--batch-rows", type=int, default=1000, help="rows per request (default 1000)")
    p.add_argument("--entity-columns", help="comma-separated entity id columns (default: names ending in _id)")
    p.add_argument("--id-columns", help="comma-separated columns copied to the output (default: entity columns)")
    p.add_argument("--context", action="append", help="ENTITY=ID shared by every row (repeatable)")
    p.add_argument("--model-override", help="score with MODEL or MODEL@VERSION instead of the primary")
    p.add_argument("--timeout", type=float, help="seconds for the whole stream (default: none)")
    add_connection_flags(p)  # --tls-ca, --tls-cert, --tls-key, --token for --target
    p.add_argument("--quiet", action="store_true", help="no progress on stderr (a bar on a terminal, else lines)")
    p.set_defaults(handler=cmd_score)
