"""Small real ONNX models for tests: score = sigmoid(x . w + b), output "probabilities" [N, 2]."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import NodeProto, TensorProto, helper, numpy_helper

from sibyl.models.catalog import Catalog
from sibyl.models.manifest import FeatureSpec, Manifest, OutputSpec


def probability_model(
    name: str, nodes: list[NodeProto], initializer: list[TensorProto], width: int, input_name: str = "input"
) -> bytes:
    """A checked model from input [N, width] through `nodes` to a logit "z" [N, 1], then "probabilities" [N, 2]:
    [1 - sigmoid(z), sigmoid(z)]."""
    one = numpy_helper.from_array(np.asarray([1.0], np.float32), "one")
    tail = [
        helper.make_node("Sigmoid", ["z"], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        [*nodes, *tail],
        name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[*initializer, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def logistic_onnx(weights: list[float], bias: float = 0.0, input_name: str = "input") -> bytes:
    w = numpy_helper.from_array(np.asarray(weights, np.float32).reshape(-1, 1), "w")
    b = numpy_helper.from_array(np.asarray([bias], np.float32), "b")
    nodes = [
        helper.make_node("MatMul", [input_name, "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
    ]
    return probability_model("logistic", nodes, [w, b], len(weights), input_name)


def expected_scores(weights: list[float], bias: float, matrix: np.ndarray) -> np.ndarray:
    z = matrix.astype(np.float64) @ np.asarray(weights, np.float64) + bias
    return 1.0 / (1.0 + np.exp(-z))


FEATURES = [
    FeatureSpec(name="amount"),
    FeatureSpec(name="age", entity="consumer_id", default=30.0),
    FeatureSpec(name="rating", entity="store_id", default=4.0),
    FeatureSpec(name="emb", entity="consumer_id", dtype="float_vector", dim=2, default=(0.1, 0.2)),
]


def publish_logistic(
    catalog: Catalog,
    name: str,
    version: str,
    weights: list[float] | None = None,
    bias: float = 0.0,
    inputs: list[FeatureSpec] | None = None,
) -> Manifest:
    inputs = inputs or FEATURES
    width = sum(f.dim for f in inputs)
    weights = weights or [0.1 * (i + 1) for i in range(width)]
    return catalog.publish(
        name, version, logistic_onnx(weights, bias), inputs, OutputSpec(name="probabilities", column=1)
    )


def publish_raw(catalog: Catalog, name: str, version: str, model_bytes: bytes, sha_of: bytes | None = None) -> None:
    """Write a version by hand, bypassing publish's checks: garbage bytes, or (`sha_of`) a manifest claiming the
    checksum of other bytes, as a tampered file would."""
    manifest = Manifest(
        name=name, version=version, input_name="input", inputs=FEATURES,
        output=OutputSpec(name="probabilities", column=1), sha256=hashlib.sha256(sha_of or model_bytes).hexdigest(),
    )  # fmt: skip
    catalog.store.write(f"models/{name}/{version}/model.onnx", model_bytes)
    catalog.store.write(f"models/{name}/{version}/manifest.json", manifest.model_dump_json().encode())
