"""What makes a model version servable, checked before it is published and again by `sibyl models validate`.

A version passes when onnxruntime loads it, its one input takes the manifest's columns as float32, its output
is among the model's outputs and gives at least one score per row, and every sample row scores to finite
numbers. Publish records the onnxruntime and opset versions it checked with, and a few rows with the scores
they gave (check.json): validate re-scores those rows, so a runtime upgrade that changes scores shows up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TypedDict

import numpy as np
import onnxruntime as ort

from sibyl.errors import InvalidArgument, ModelLoadError
from sibyl.models.manifest import Manifest, Validation
from sibyl.models.runtime import OnnxModel

CHECK_FILE = "check.json"
CHECK_ROWS = 32  # sample rows kept with their scores for validate
RECHECK_TOLERANCE = 1e-5  # |score now - score at publish| allowed, absolute plus relative


def one_line(text: str) -> str:
    return " ".join(text.split())


# ---- reading the ONNX header without the onnx package (the server does not depend on it)
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("number longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message: ints for varints, bytes for everything else."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
            continue
        if wire == 2:
            size, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"field {number} has wire type {wire}")
        if pos + size > len(data):
            raise ValueError(f"field {number} needs {size} bytes, {len(data) - pos} are left")
        yield number, data[pos : pos + size]
        pos += size


class OnnxHeader(TypedDict):
    ir_version: int
    producer: str
    opsets: dict[str, int]  # domain ("" = ai.onnx) -> version


def onnx_header(model_bytes: bytes) -> OnnxHeader:
    """ir_version, producer and opset imports of an ONNX ModelProto; InvalidArgument when it is not one
    (a truncated file fails here, before onnxruntime is asked)."""
    ir_version, producer, version = 0, "", ""
    opsets: dict[str, int] = {}
    try:
        for number, value in _fields(model_bytes):
            if number == 1 and isinstance(value, int):
                ir_version = value
            elif number == 2 and isinstance(value, bytes):
                producer = value.decode("utf-8", "replace")
            elif number == 3 and isinstance(value, bytes):
                version = value.decode("utf-8", "replace")
            elif number == 8 and isinstance(value, bytes):
                parts = dict(_fields(value))
                domain = parts.get(1, b"")
                opsets[domain.decode() if isinstance(domain, bytes) else ""] = int(parts.get(2, 0))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"not an ONNX model (truncated or another format): {exc}") from None
    if not ir_version or not opsets:
        raise InvalidArgument("not an ONNX model: no IR version or operator sets in the file")
    return {"ir_version": ir_version, "producer": f"{producer} {version}".strip(), "opsets": opsets}


# ---- the check
def load_checked(manifest: Manifest, model_bytes: bytes) -> OnnxModel:
    """OnnxModel (sha256, load, input name/type/width, output name, warm-up on the defaults) plus: the output
    gives at least one score per row (a `column` past the output's width gives none)."""
    try:
        model = OnnxModel(manifest, model_bytes)
    except ModelLoadError as exc:
        raise ModelLoadError(one_line(str(exc))) from None
    if model.dim < 1:
        out = manifest.output
        raise ModelLoadError(f"{manifest.ref}: output {out.name!r} has no column {out.column} (it gives no score)")
    return model


def score_sample(model: OnnxModel, sample: np.ndarray) -> np.ndarray:
    ref = model.ref
    if sample.ndim != 2 or sample.shape[1] != len(model.columns):
        raise InvalidArgument(f"{ref}: sample has {sample.shape[-1]} columns, the manifest lists {len(model.columns)}")
    try:
        scores = model.run(sample)
    except Exception as exc:  # onnxruntime's own error types
        raise ModelLoadError(f"{ref}: scoring the sample failed: {one_line(str(exc))}") from None
    if scores.shape[0] != sample.shape[0]:
        raise ModelLoadError(f"{ref}: {sample.shape[0]} sample rows gave {scores.shape[0]} scores")
    bad = np.flatnonzero(~np.all(np.isfinite(scores), axis=1))
    if bad.size:
        raise ModelLoadError(f"{ref}: sample row {int(bad[0]) + 1} scores {scores[bad[0]].tolist()} (not finite)")
    return scores


def validation_record(model_bytes: bytes, sample_rows: int) -> Validation:
    header = onnx_header(model_bytes)
    return Validation(
        onnxruntime=ort.__version__,
        opsets=header["opsets"],
        ir_version=header["ir_version"],
        producer=header["producer"],
        sample_rows=sample_rows,
        check_file=CHECK_FILE,
    )


def check_file(model: OnnxModel, sample: np.ndarray | None) -> bytes:
    """The first CHECK_ROWS sample rows (or the defaults row) with the scores they gave."""
    rows = model.default_row if sample is None else sample[:CHECK_ROWS]
    scores = model.run(rows)
    return json.dumps({"rows": rows.tolist(), "scores": scores.tolist()}).encode()


def recheck(model: OnnxModel, raw: bytes) -> int:
    """Score check.json's rows again; they must give the scores publish saw. Returns the rows checked."""
    try:
        data = json.loads(raw)
        rows = np.asarray(data["rows"], dtype=np.float32)
        expected = np.asarray(data["scores"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{model.ref}: {CHECK_FILE} is unreadable: {exc}") from None
    scores = score_sample(model, rows)
    if scores.shape != expected.shape:
        raise ModelLoadError(f"{model.ref}: scores have shape {scores.shape}, publish saw {expected.shape}")
    diff = np.abs(scores - expected)
    worst = int(np.argmax(diff.max(axis=1)))
    if np.any(diff > RECHECK_TOLERANCE * (1 + np.abs(expected))):
        raise ModelLoadError(
            f"{model.ref}: row {worst + 1} now scores {scores[worst].tolist()}, publish saw "
            f"{expected[worst].tolist()} (onnxruntime {ort.__version__})"
        )
    return int(rows.shape[0])
