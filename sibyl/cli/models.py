"""`sibyl models ...`: publish (checked, or converted from scikit-learn/XGBoost/LightGBM), validate, describe,
and what serves: promote, rollback, shadow, experiment, history, list; shadow-report (cli.shadow_report) reads a
running server's verdicts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from sibyl.errors import InvalidArgument

if TYPE_CHECKING:
    from sibyl.config import Settings
    from sibyl.models.catalog import Catalog
    from sibyl.models.convert import Format

Handler = Callable[[argparse.Namespace, "Settings"], int]
IMPORTS: tuple[Format, ...] = ("sklearn", "xgboost", "lightgbm")


def _catalog(settings: Settings) -> Catalog:
    from sibyl.models.catalog import Catalog
    from sibyl.models.store import open_store

    ms = settings.model_store
    return Catalog(open_store(ms.url, ms.s3_endpoint_url, ms.s3_region))


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    catalog = _catalog(settings)
    models = catalog.models()
    predictors = {n: catalog.read_predictor(n) for n in catalog.predictor_names()}
    if args.json:
        print(json.dumps({"models": models, "predictors": {n: p.model_dump() for n, p in predictors.items()}}))
        return 0
    print(f"store: {catalog.store.url}")
    for name, versions in models.items():
        print(f"model {name}: versions {', '.join(versions)}")
    for name, p in predictors.items():
        extra = "".join(f", shadow {s.model} ({s.sample:g})" for s in p.shadows)
        extra += "".join(f", arm {a.name}={a.model} ({a.traffic:g})" for a in p.experiments)
        print(f"predictor {name}: primary {p.primary}{extra}")
    return 0


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from sibyl.models.publish import prepare, read_spec

    given = [(f, getattr(args, f)) for f in IMPORTS if getattr(args, f)]
    if len(given) + bool(args.onnx) != 1:
        raise InvalidArgument("give the model as exactly one of --onnx, --sklearn, --xgboost, --lightgbm")
    if args.tolerance is not None and (not given or not args.tolerance > 0):
        raise InvalidArgument("--tolerance applies to --sklearn/--xgboost/--lightgbm and must be > 0")
    spec = read_spec(args.spec)
    ready = prepare(
        spec, onnx_path=args.onnx, source=given[0] if given else None, sample_path=args.sample, tolerance=args.tolerance
    )
    manifest = _catalog(settings).publish(
        args.model,
        args.version,
        ready.model_bytes,
        spec.inputs,
        ready.output,
        input_name=spec.input_name,
        metadata=spec.metadata,
        baselines=ready.baselines,
        validation=ready.validation,
        source=ready.source,
        files=ready.files,
    )
    checked = f"{ready.sample_rows} sample rows scored" if ready.sample_rows else "defaults row scored"
    if ready.source is not None:
        src = ready.source
        checked += f", {src.format} scores matched within {src.tolerance:g} (max diff {src.max_abs_diff:.2g})"
    print(
        f"published {manifest.ref} sha256 {manifest.sha256[:12]} ({len(ready.model_bytes)} bytes; {checked}; "
        f"onnxruntime {ready.validation.onnxruntime})"
    )
    return 0


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Re-check a stored version as publish did: sha256, load, schema, warm-up, the check rows' scores."""
    import hashlib

    import onnxruntime as ort

    from sibyl.errors import ModelLoadError
    from sibyl.models import validate
    from sibyl.models.predictor import ModelRef
    from sibyl.models.publish import read_sample

    catalog = _catalog(settings)
    ref = catalog.resolve(ModelRef.parse(args.model))
    manifest = catalog.read_manifest(ref)
    model = validate.load_checked(manifest, catalog.read_model(ref))
    done = ["sha256", "load", "schema", "warm-up"]
    if manifest.validation is not None and manifest.validation.check_file:
        rows = validate.recheck(model, catalog.read_file(ref, manifest.validation.check_file))
        done.append(f"{rows} check rows score as at publish")
    if manifest.source is not None:
        raw = catalog.read_file(ref, manifest.source.file)
        if hashlib.sha256(raw).hexdigest() != manifest.source.sha256:
            raise ModelLoadError(f"{ref}: {manifest.source.file} does not match the manifest's sha256")
        done.append(f"{manifest.source.file} sha256")
    if args.sample:
        sample = read_sample(args.sample, manifest.inputs)
        validate.score_sample(model, sample)
        done.append(f"{len(sample)} sample rows scored")
    print(f"{ref}: ok ({', '.join(done)}; onnxruntime {ort.__version__})")
    return 0


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    from sibyl.models.predictor import ModelRef

    catalog = _catalog(settings)
    manifest = catalog.read_manifest(catalog.resolve(ModelRef.parse(args.model)))
    exclude = None if args.baselines else {"baselines"}
    print(manifest.model_dump_json(indent=2, exclude=exclude))
    return 0


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    from sibyl.models.predictor import Gate

    catalog = _catalog(settings)
    current = catalog.read_predictor(args.predictor) if catalog.predictor_tag(args.predictor) else None
    gate = (current.gate if current is not None else None) or Gate()
    detail: dict[str, object] = {}
    if args.force:
        detail["gate"] = "forced"
    elif args.gate or gate.required:
        from pathlib import Path

        from sibyl.monitor import compare

        result = compare.compare(Path(settings.monitor.state_dir), args.predictor, gate.since_s)
        detail["gate"] = compare.gate(result, args.model, gate.metric, gate.min_rows, gate.max_loss)
    config = catalog.promote(args.predictor, args.model, detail)
    suffix = " (gate forced)" if args.force else " (gate passed)" if "gate" in detail else ""
    print(f"predictor {config.name}: primary is now {config.primary}{suffix}")
    return 0


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from sibyl.monitor import compare

    state_dir = Path(args.state_dir or settings.monitor.state_dir)
    result = compare.compare(state_dir, args.predictor, parse_span(args.since), args.slice, settings.monitor.min_rows)
    print(json.dumps(result, indent=2) if args.format == "json" else compare.table(result).rstrip("\n"))
    return 0


def parse_span(text: str) -> float:
    """'30m', '24h', '7d' or seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise InvalidArgument(f"--since {text!r}: give a span like 30m, 24h or 7d") from None
    if not value > 0:
        raise InvalidArgument(f"--since {text!r} must be more than 0")
    return value


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    config = _catalog(settings).rollback(args.predictor)
    print(f"predictor {config.name}: rolled back, primary is now {config.primary}")
    return 0


def cmd_shadow(args: argparse.Namespace, settings: Settings) -> int:
    sample = 0.0 if args.remove else args.sample
    config = _catalog(settings).set_shadow(args.predictor, args.model, sample)
    print(f"predictor {config.name}: shadows {[f'{s.model} ({s.sample:g})' for s in config.shadows] or 'none'}")
    return 0


def cmd_experiment(args: argparse.Namespace, settings: Settings) -> int:
    traffic = 0.0 if args.end else args.traffic
    config = _catalog(settings).set_experiment(args.predictor, args.arm, args.model, traffic)
    arms = [f"{a.name}={a.model} ({a.traffic:g})" for a in config.experiments]
    print(f"predictor {config.name}: experiments {arms or 'none'}")
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    records = _catalog(settings).history(args.predictor)
    if not records:
        print(f"predictor {args.predictor}: no history")
    for r in records:
        detail = f" {json.dumps(r.detail)}" if r.detail else ""
        print(f"{r.at}  {r.actor}  {r.action:<14} {r.from_primary or '-'} -> {r.to_primary or '-'}{detail}")
    return 0


def cmd_shadow_report(args: argparse.Namespace, settings: Settings) -> int:
    from sibyl.cli import shadow_report

    result = shadow_report.report(shadow_report.fetch(args.target), args.predictor)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(shadow_report.table(result), end="")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="publish, validate and describe models; set what serves").add_subparsers(
        dest="models_command", required=True
    )

    def command(name: str, handler: Handler, help_: str, description: str | None = None) -> argparse.ArgumentParser:
        p = models.add_parser(name, help=help_, description=description or help_)
        p.add_argument("--store", help="model store URL, file:///path or s3://bucket/prefix (default: settings)")
        p.set_defaults(handler=handler)
        return p

    p = command("list", cmd_list, "list models, versions and predictors")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")

    p = command(
        "publish",
        cmd_publish,
        "check a model version (and convert a trained one), then upload it with its manifest",
        "The model must load in onnxruntime, take the spec's columns as float32 and score every --sample row to "
        "finite numbers; otherwise nothing is uploaded. --sklearn/--xgboost/--lightgbm convert to ONNX (needs "
        "pip install 'sibyl[import]'), and the converted scores must equal the original's on the sample.",
    )
    p.add_argument("model", help="model name, e.g. gbdt")
    p.add_argument("version", help="new version, e.g. 3 (versions are immutable)")
    p.add_argument("--spec", required=True, help="JSON with inputs, output, input_name, metadata "
                                                 "(template: sibyl/examples/spec.json)")  # fmt: skip
    p.add_argument("--onnx", help="model.onnx file")
    p.add_argument("--sklearn", metavar="FILE.joblib", help="fitted scikit-learn estimator or pipeline (joblib; "
                                                            "loading unpickles it: only files you trust)")  # fmt: skip
    p.add_argument("--xgboost", metavar="FILE.json", help="XGBoost model saved with Booster.save_model('x.json')")
    p.add_argument("--lightgbm", metavar="FILE.txt", help="LightGBM model saved with Booster.save_model('x.txt')")
    p.add_argument("--sample", metavar="CSV", help="rows of model columns: scored as a check, baseline histograms "
                                                   "for drift; required to convert a trained model")  # fmt: skip
    p.add_argument("--tolerance", type=float, help="largest |onnx - original| per score, plus the same relative "
                                                   "(default 1e-4), for --sklearn/--xgboost/--lightgbm")  # fmt: skip

    p = command("validate", cmd_validate, "re-check a stored version: sha256, load, schema, check rows' scores")
    p.add_argument("model", help="model@version (model alone: the newest version)")
    p.add_argument("--sample", metavar="CSV", help="also score these rows (model columns, as for publish)")

    p = command("describe", cmd_describe, "print a version's manifest as JSON")
    p.add_argument("model", help="model@version (model alone: the newest version)")
    p.add_argument("--baselines", action="store_true", help="include the drift baseline histograms")

    p = command("promote", cmd_promote, "make MODEL@VERSION the predictor's primary")
    p.add_argument("predictor", help="predictor name (created if new)")
    p.add_argument("model", help="model@version")
    p.add_argument("--gate", action="store_true", help="refuse unless the candidate's labelled evidence passes the "
                                                       "predictor's gate (docs/monitoring.md#gate)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="promote without the gate, audited as forced")
    p = command(
        "compare",
        cmd_compare,
        "the primary against each shadow and arm on labelled rows, per slice, with 95% intervals and a verdict",
        "Reads the state `sibyl monitor` keeps (monitor.state_dir): AUC, log loss, Brier and ECE of both models on "
        "the rows both scored, the differences with 95% confidence intervals (DeLong for AUC), and a verdict per "
        "pair and slice: better, worse or not enough evidence (docs/monitoring.md#compare).",
    )
    p.add_argument("predictor", help="predictor name")
    p.add_argument("--since", default="24h", help="the labelled rows of this last span (30m, 24h, 7d; default 24h)")
    p.add_argument("--slice", help="one slice's values (its name, e.g. distance) beside all")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
    p.add_argument("--state-dir", help="the monitor's state dir (default: monitor.state_dir)")
    p = command("rollback", cmd_rollback, "go back one primary in the audit history (again: one more)")
    p.add_argument("predictor", help="predictor name")
    p = command("shadow", cmd_shadow, "add/update/remove a shadow model")
    p.add_argument("predictor", help="predictor name")
    p.add_argument("model", help="model@version")
    p.add_argument("--sample", type=float, default=1.0, help="share of requests it scores (default 1)")
    p.add_argument("--remove", action="store_true", help="remove this model's shadow")
    p = command("experiment", cmd_experiment, "add/update/end an experiment arm")
    p.add_argument("predictor", help="predictor name")
    p.add_argument("arm", help="arm name, e.g. treatment")
    p.add_argument("model", nargs="?", help="model@version (not needed with --end)")
    p.add_argument("--traffic", type=float, default=0.1, help="share of units in this arm (default 0.1)")
    p.add_argument("--end", action="store_true", help="end this arm")
    p = command("history", cmd_history, "who changed what served, when")
    p.add_argument("predictor", help="predictor name")
    p = command(
        "shadow-report",
        cmd_shadow_report,
        "each shadow and arm against the primary, per slice, from a running server's /metrics",
        "Reads a running server's metrics: per candidate and slice, rows compared, decision agreement, |score delta| "
        "mean and quantiles, rank agreement; then the answering model's positive rate per slice "
        "(docs/observability.md#reading-a-verdict).",
    )
    p.add_argument("predictor", help="predictor name")
    p.add_argument("--target", default="127.0.0.1:9100", help="the server's metrics endpoint, host:port or URL "
                                                              "(default 127.0.0.1:9100)")  # fmt: skip
    p.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
