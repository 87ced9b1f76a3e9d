"""`sibyl models publish`: from a spec, an ONNX file (or a trained model to convert) and an optional sample,
to a version that is known to load and score before any server sees it.

The spec (see sibyl/examples/spec.json) gives `inputs` (the features, in column order), `output` (the ONNX
output to read scores from; for converted models it defaults to the converter's), `input_name` and free-form
`metadata`. With `--sample FILE`, every sample row is scored (scores must be finite), the scores are checked
against the original model's for conversions, and baseline histograms for drift are computed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import ValidationError

from sibyl.errors import InvalidArgument, ModelLoadError
from sibyl.models import validate
from sibyl.models.manifest import Baselines, FeatureSpec, Manifest, OutputSpec, Source, Validation

if TYPE_CHECKING:
    from sibyl.models.convert import Format

T = TypeVar("T", FeatureSpec, OutputSpec)


def read_sample(path: str, inputs: Sequence[FeatureSpec]) -> np.ndarray:
    """CSV with a header naming model columns ("emb[0]" for vectors); absent columns take the defaults."""
    columns = [c for spec in inputs for c in spec.columns]
    defaults = [v for spec in inputs for v in spec.default_values]
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = []
            for line, record in enumerate(reader, start=2):
                try:
                    rows.append([float(record.get(c) or d) for c, d in zip(columns, defaults, strict=True)])
                except ValueError as exc:
                    raise InvalidArgument(f"{path} line {line}: {exc}") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read sample {path}: {exc.strerror}") from None
    if not rows:
        raise InvalidArgument(f"sample {path} has no rows")
    return np.asarray(rows, dtype=np.float32)


@dataclass
class Spec:
    inputs: list[FeatureSpec]
    output: OutputSpec | None
    input_name: str = "input"
    metadata: dict[str, Any] = field(default_factory=dict)


def read_spec(path: str) -> Spec:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidArgument(f"cannot read spec file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"spec file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
        raise InvalidArgument(f"{path}: needs 'inputs', a list of features (see sibyl/examples/spec.json)")
    unknown = set(data) - {"inputs", "output", "input_name", "metadata"}
    if unknown:
        raise InvalidArgument(
            f"{path}: unknown keys {sorted(unknown)}; a spec has inputs, output, input_name, metadata"
        )
    inputs = [_parse(FeatureSpec, item, f"{path}: inputs[{i}]") for i, item in enumerate(data["inputs"])]
    output = _parse(OutputSpec, data["output"], f"{path}: output") if data.get("output") is not None else None
    return Spec(inputs, output, str(data.get("input_name", "input")), dict(data.get("metadata") or {}))


def _parse(model: type[T], value: Any, where: str) -> T:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_ = ".".join(map(str, err["loc"]))
        raise InvalidArgument(f"{where}{'.' + field_ if field_ else ''}: {err['msg']}") from None


@dataclass
class Prepared:
    """Everything Catalog.publish stores: the checked model, its manifest parts and the files beside it."""

    model_bytes: bytes
    output: OutputSpec
    baselines: Baselines | None
    validation: Validation
    source: Source | None
    files: dict[str, bytes]
    sample_rows: int


def _draft(spec: Spec, output: OutputSpec, model_bytes: bytes) -> Manifest:
    try:
        return Manifest(
            name="candidate",
            version="0",
            input_name=spec.input_name,
            inputs=spec.inputs,
            output=output,
            sha256=hashlib.sha256(model_bytes).hexdigest(),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidArgument(f"spec: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def prepare(
    spec: Spec,
    *,
    onnx_path: str | None = None,
    source: tuple[Format, str] | None = None,
    sample_path: str | None = None,
    tolerance: float | None = None,
) -> Prepared:
    """Check (and for `source` = (format, path), convert) a model before it is published: InvalidArgument with
    one line saying what is wrong otherwise, and nothing is written."""
    from sibyl.models.baseline import compute_baselines

    if (onnx_path is None) == (source is None):
        raise InvalidArgument("give the model as one of --onnx, --sklearn, --xgboost, --lightgbm")
    width = sum(f.dim for f in spec.inputs)
    sample = read_sample(sample_path, spec.inputs) if sample_path else None
    converted = raw = None
    if source is not None:
        from sibyl.models import convert

        fmt, path = source
        if sample is None:
            raise InvalidArgument(f"--{fmt} needs --sample CSV: the rows the converted scores are checked on")
        converted, raw = convert.convert(fmt, path, spec.input_name)
        if converted.width != width:
            raise InvalidArgument(f"{path} takes {converted.width} columns, the spec's inputs give {width}")
        if spec.output is not None and spec.output.name != converted.output.name:
            raise InvalidArgument(f"spec output {spec.output.name!r}: the converted model's scores are in "
                                  f"{converted.output.name!r}; drop 'output' from the spec or name that one")  # fmt: skip
        output, model_bytes = spec.output or converted.output, converted.onnx
        converted.output = output
    else:
        assert onnx_path is not None
        try:
            model_bytes = Path(onnx_path).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read {onnx_path}: {exc.strerror}") from None
        if spec.output is None:
            raise InvalidArgument("spec: needs 'output' ({'name': ONNX output, 'column': N}) for an --onnx model")
        output = spec.output
    what = onnx_path or (source[1] if source else "model")
    try:  # the header first: a truncated file is named as such, not by onnxruntime's parse error
        record = validate.validation_record(model_bytes, 0 if sample is None else len(sample))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc}; not published") from None
    draft = _draft(spec, output, model_bytes)
    try:
        model = validate.load_checked(draft, model_bytes)
        scores = validate.score_sample(model, sample) if sample is not None else None
    except ModelLoadError as exc:
        raise InvalidArgument(f"{what}: {str(exc).removeprefix(draft.ref + ': ')}; not published") from None
    files = {validate.CHECK_FILE: validate.check_file(model, sample)}
    found = None
    if converted is not None and raw is not None and source is not None and sample is not None:
        from sibyl.models import convert

        assert scores is not None
        found = convert.compare(source[0], converted, raw, scores, sample, tolerance or convert.TOLERANCE)
        files[found.file] = raw
    baselines = (
        compute_baselines(spec.inputs, sample, scores[:, 0]) if sample is not None and scores is not None else None
    )
    return Prepared(model_bytes, output, baselines, record, found, files, 0 if sample is None else len(sample))
