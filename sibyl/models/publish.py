"""What `sibyl models publish --sample FILE` adds: baseline histograms for drift, from a sample of inputs."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence

import numpy as np

from sibyl.errors import InvalidArgument
from sibyl.models.manifest import Baselines, FeatureSpec, Manifest, OutputSpec


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


def load_baselines_sample(
    path: str | None, inputs: Sequence[FeatureSpec], output: OutputSpec, model_bytes: bytes, input_name: str
) -> Baselines | None:
    """Score the sample with the model being published and bin features and predictions."""
    if not path:
        return None
    from sibyl.models.baseline import compute_baselines
    from sibyl.models.runtime import OnnxModel

    matrix = read_sample(path, inputs)
    manifest = Manifest(
        name="sample",
        version="0",
        input_name=input_name,
        inputs=list(inputs),
        output=output,
        sha256=hashlib.sha256(model_bytes).hexdigest(),
    )
    scores = OnnxModel(manifest, model_bytes).run(matrix)[:, 0]
    return compute_baselines(list(inputs), matrix, scores)
