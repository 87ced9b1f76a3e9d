"""`sibyl models publish` refuses what cannot serve; `models validate` re-checks and `models describe` prints a
stored version. Real ONNX files (tests/support/onnxgen), a folder store, the CLI as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from sibyl.cli.main import main
from sibyl.models.catalog import Catalog
from sibyl.models.predictor import ModelRef
from sibyl.models.store import FileStore
from sibyl.models.validate import CHECK_FILE, onnx_header
from tests.cli.error_line import one_error
from tests.cli.input_files import write_sample, write_spec
from tests.support.onnxgen import FEATURES, expected_scores, logistic_onnx, probability_model

EXAMPLES = Path(__file__).resolve().parents[2] / "sibyl" / "examples"
WEIGHTS = [0.5, -0.2, 0.1, 0.3, -0.4]  # FEATURES: amount, age, rating, emb[0], emb[1]


def publish(store: Path, onnx_file: Path, spec: Path, *extra: str, version: str = "1") -> int:
    return main(["models", "publish", "m", version, "--store", str(store), "--onnx", str(onnx_file),
                 "--spec", str(spec), *extra])  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rows = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    model = tmp_path / "model.onnx"
    model.write_bytes(logistic_onnx(WEIGHTS, 0.2))
    return {
        "store": tmp_path / "store",
        "onnx": model,
        "spec": write_spec(tmp_path / "spec.json"),
        "sample": write_sample(tmp_path / "sample.csv", rows),
    }


def test_publish_records_what_it_checked_and_validate_repeats_it(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(files["store"], files["onnx"], files["spec"], "--sample", str(files["sample"])) == 0
    assert "40 sample rows scored" in capsys.readouterr().out
    catalog = Catalog(FileStore(files["store"]))
    manifest = catalog.read_manifest(ModelRef("m", "1"))
    assert manifest.validation is not None
    assert manifest.validation.onnxruntime == ort.__version__
    assert manifest.validation.opsets == {"": 13} and manifest.validation.ir_version == 8
    assert manifest.validation.sample_rows == 40 and manifest.baselines is not None
    check = json.loads(catalog.read_file(ModelRef("m", "1"), CHECK_FILE))
    rows = np.asarray(check["rows"])
    assert rows.shape == (32, 5)  # the first 32 sample rows, with the scores the model gave them
    assert np.allclose(np.asarray(check["scores"])[:, 0], expected_scores(WEIGHTS, 0.2, rows), atol=1e-6)

    assert main(["models", "validate", "m@1", "--store", str(files["store"]), "--sample", str(files["sample"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("m@1: ok (sha256, load, schema, warm-up, 32 check rows score as at publish")
    assert "40 sample rows scored" in out

    assert main(["models", "describe", "m", "--store", str(files["store"])]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["version"] == "1" and described["validation"]["onnxruntime"] == ort.__version__
    assert "baselines" not in described and described["metadata"] == {"owner": "tests"}


def test_validate_finds_a_changed_model_and_changed_check_rows(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(files["store"], files["onnx"], files["spec"]) == 0
    version_dir = files["store"] / "models" / "m" / "1"
    check = json.loads((version_dir / CHECK_FILE).read_text())
    check["scores"][0][0] += 0.01  # as if this runtime scored differently from the one that published
    (version_dir / CHECK_FILE).write_text(json.dumps(check))
    capsys.readouterr()
    assert main(["models", "validate", "m@1", "--store", str(files["store"])]) == 2
    assert "row 1 now scores" in one_error(capsys)

    (version_dir / "model.onnx").write_bytes(logistic_onnx([0.0] * 5))
    assert main(["models", "validate", "m@1", "--store", str(files["store"])]) == 2
    assert "sha256" in one_error(capsys)
    assert main(["models", "validate", "m@9", "--store", str(files["store"])]) == 2
    assert "m@9 not found" in one_error(capsys)


def test_publish_refuses_a_truncated_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    whole = files["onnx"].read_bytes()
    for cut in (len(whole) // 3, len(whole) - 7):
        files["onnx"].write_bytes(whole[:cut])
        assert publish(files["store"], files["onnx"], files["spec"]) == 2
        line = one_error(capsys)
        assert "not an ONNX model (truncated" in line and line.endswith("not published")
    files["onnx"].write_bytes(b"PK\x03\x04 a zip, not a model")
    assert publish(files["store"], files["onnx"], files["spec"]) == 2
    assert "not an ONNX model" in one_error(capsys)
    assert Catalog(FileStore(files["store"])).models() == {}
    assert main(["models", "promote", "p", "m@1", "--store", str(files["store"])]) == 2  # nothing to promote
    assert "m@1 not found" in one_error(capsys)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("narrow", "model takes 3 columns, manifest lists 5"),
        ("output", "output 'scores' not among model outputs"),
        ("column", "output 'probabilities' has no column 2"),
        ("input_name", "!= manifest input_name 'features'"),
    ],
)
def test_publish_refuses_a_model_that_does_not_match_the_spec(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    spec = files["spec"]
    if case == "narrow":
        files["onnx"].write_bytes(logistic_onnx([0.1, 0.2, 0.3]))
    elif case == "output":
        write_spec(spec, output={"name": "scores"})
    elif case == "column":
        write_spec(spec, output={"name": "probabilities", "column": 2})
    else:
        data = json.loads(spec.read_text())
        spec.write_text(json.dumps({**data, "input_name": "features"}))
    assert publish(files["store"], files["onnx"], spec) == 2
    line = one_error(capsys)
    assert expected in line and line.endswith("; not published"), line
    assert not (files["store"] / "models").exists()


def test_publish_refuses_a_sample_row_that_scores_nan(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """z = sqrt(x . w): fine on the defaults (warm-up passes), NaN on a sample row with x . w < 0."""
    w = numpy_helper.from_array(np.asarray([1, 0, 0, 0, 0], np.float32).reshape(-1, 1), "w")
    nodes = [helper.make_node("MatMul", ["input", "w"], ["xw"]), helper.make_node("Sqrt", ["xw"], ["z"])]
    files["onnx"].write_bytes(probability_model("sqrt", nodes, [w], 5))
    rows = np.ones((5, 5), np.float32)
    rows[3, 0] = -4.0
    write_sample(files["sample"], rows)
    capsys.readouterr()
    assert publish(files["store"], files["onnx"], files["spec"], "--sample", str(files["sample"])) == 2
    assert "sample row 4 scores [nan] (not finite)" in one_error(capsys)


def test_spec_and_model_mistakes_are_one_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad_spec = files["spec"].with_name("bad.json")
    cases = {
        "no inputs": ({"output": {"name": "probabilities"}}, "needs 'inputs'"),
        "unknown key": ({"inputs": [{"name": "a"}], "outputs": {}}, "unknown keys ['outputs']"),
        "bad feature": ({"inputs": [{"name": "a", "dtype": "text"}]}, "bad.json: inputs[0].dtype: Input should be"),
        "no output": ({"inputs": [f.model_dump() for f in FEATURES]}, "needs 'output'"),
    }
    for spec, expected in cases.values():
        bad_spec.write_text(json.dumps(spec))
        assert publish(files["store"], files["onnx"], bad_spec) == 2
        assert expected in one_error(capsys)
    assert main(["models", "publish", "m", "1", "--store", str(files["store"]), "--spec", str(files["spec"])]) == 2
    assert "exactly one of --onnx, --sklearn" in one_error(capsys)
    assert publish(files["store"], files["onnx"].with_name("absent.onnx"), files["spec"]) == 2
    assert "cannot read" in one_error(capsys)


def test_the_spec_template_publishes_the_bundled_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README's `--spec spec.json`: sibyl/examples/spec.json with the bundled gbdt model and sample."""
    model = EXAMPLES / "store" / "models" / "gbdt" / "1" / "model.onnx"
    args = ["--sample", str(EXAMPLES / "sample.csv")]
    assert publish(tmp_path, model, EXAMPLES / "spec.json", *args, version="2") == 0
    assert "sample rows scored" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load_from_string(model.read_bytes()))
    header = onnx_header(model.read_bytes())
    assert header["opsets"] == {o.domain: o.version for o in onnx.load_from_string(model.read_bytes()).opset_import}
