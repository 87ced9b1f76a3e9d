"""`sibyl` command line: serve, models, predict, features, predlog, bench, score.

Every user error ends as one readable line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format
from pydantic import ValidationError

from sibyl.config import Settings, load_settings
from sibyl.errors import InvalidArgument, SibylError

if TYPE_CHECKING:
    from sibyl.models.catalog import Catalog

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    store = getattr(args, "store", None)
    if store:
        overrides.setdefault("model_store", {})["url"] = store
    return load_settings(getattr(args, "config", None), **overrides)


# ---- serve
def cmd_serve(args: argparse.Namespace, _: Settings) -> int:
    server: dict[str, Any] = {}
    for flag in ("host", "port", "workers"):
        if getattr(args, flag) is not None:
            server[flag] = getattr(args, flag)
    overrides: dict[str, Any] = {"server": server} if server else {}
    if args.metrics_port is not None:
        overrides["metrics"] = {"port": args.metrics_port}
    settings = _settings(args, **overrides)
    from sibyl.observability.logs import setup_logging

    setup_logging(settings.log_level, settings.log_json)
    if settings.server.workers != 1:
        from sibyl.process.workers import run_workers

        return run_workers(settings)
    import uvloop

    from sibyl.process.serve import serve

    uvloop.run(serve(settings))
    return 0


# ---- models
def _catalog(settings: Settings) -> Catalog:
    from sibyl.models.catalog import Catalog
    from sibyl.models.store import open_store

    ms = settings.model_store
    return Catalog(open_store(ms.url, ms.s3_endpoint_url, ms.s3_region))


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
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


def cmd_models_publish(args: argparse.Namespace, settings: Settings) -> int:
    from sibyl.models.manifest import FeatureSpec, OutputSpec
    from sibyl.models.publish import load_baselines_sample

    spec = _read_json(args.spec, "spec")
    try:
        inputs = [FeatureSpec.model_validate(i) for i in spec["inputs"]]
        output = OutputSpec.model_validate(spec["output"])
    except (KeyError, TypeError, ValidationError) as exc:
        raise InvalidArgument(f"{args.spec}: needs 'inputs' (features) and 'output' ({exc})") from None
    model_bytes = _read_bytes(args.onnx)
    baselines = load_baselines_sample(args.sample, inputs, output, model_bytes, spec.get("input_name", "input"))
    manifest = _catalog(settings).publish(
        args.model,
        args.version,
        model_bytes,
        inputs,
        output,
        input_name=spec.get("input_name", "input"),
        metadata=spec.get("metadata", {}),
        baselines=baselines,
    )
    print(f"published {manifest.ref} sha256 {manifest.sha256[:12]} ({len(model_bytes)} bytes)")
    return 0


def cmd_models_promote(args: argparse.Namespace, settings: Settings) -> int:
    config = _catalog(settings).promote(args.predictor, args.model)
    print(f"predictor {config.name}: primary is now {config.primary}")
    return 0


def cmd_models_rollback(args: argparse.Namespace, settings: Settings) -> int:
    config = _catalog(settings).rollback(args.predictor)
    print(f"predictor {config.name}: rolled back, primary is now {config.primary}")
    return 0


def cmd_models_shadow(args: argparse.Namespace, settings: Settings) -> int:
    sample = 0.0 if args.remove else args.sample
    config = _catalog(settings).set_shadow(args.predictor, args.model, sample)
    print(f"predictor {config.name}: shadows {[f'{s.model} ({s.sample:g})' for s in config.shadows] or 'none'}")
    return 0


def cmd_models_experiment(args: argparse.Namespace, settings: Settings) -> int:
    traffic = 0.0 if args.end else args.traffic
    config = _catalog(settings).set_experiment(args.predictor, args.arm, args.model, traffic)
    arms = [f"{a.name}={a.model} ({a.traffic:g})" for a in config.experiments]
    print(f"predictor {config.name}: experiments {arms or 'none'}")
    return 0


def cmd_models_history(args: argparse.Namespace, settings: Settings) -> int:
    records = _catalog(settings).history(args.predictor)
    if not records:
        print(f"predictor {args.predictor}: no history")
    for r in records:
        detail = f" {json.dumps(r.detail)}" if r.detail else ""
        print(f"{r.at}  {r.actor}  {r.action:<14} {r.from_primary or '-'} -> {r.to_primary or '-'}{detail}")
    return 0


# ---- predict
def cmd_predict(args: argparse.Namespace, _: Settings) -> int:
    from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
    from sibyl.v1.predict_pb2_grpc import PredictionServiceStub

    if args.file:
        try:
            request = json_format.Parse(Path(args.file).read_text(), PredictRequest())
        except OSError as exc:
            raise InvalidArgument(f"cannot read {args.file}: {exc.strerror}") from None
        except json_format.ParseError as exc:
            raise InvalidArgument(f"{args.file} is not a PredictRequest: {exc}") from None
    else:
        request = PredictRequest(predictor=args.predictor or "example")
        row = FeatureRow()
        for text in args.feature or []:
            name, value = _pair(text, "--feature")
            try:
                row.features[name] = float(value)
            except ValueError:
                raise InvalidArgument(f"--feature {text}: {value!r} is not a number") from None
        for text in args.entity or []:
            name, value = _pair(text, "--entity")
            request.context[name] = value
        request.rows.append(row)
    if args.predictor:
        request.predictor = args.predictor
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    with _channel(args) as channel:
        response = PredictionServiceStub(channel).Predict(request, timeout=args.timeout, metadata=metadata)
    print(json_format.MessageToJson(response, indent=2 if args.pretty else None))
    return 0


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext unless --tls-ca is given; --tls-cert/--tls-key add a client certificate (mutual TLS)."""
    if not args.tls_ca:
        if args.tls_cert or args.tls_key:
            raise InvalidArgument("--tls-cert/--tls-key need --tls-ca (the CA that signed the server certificate)")
        return grpc.insecure_channel(args.target)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidArgument("give --tls-cert and --tls-key together (client certificate for mutual TLS)")

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None

    credentials = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
    return grpc.secure_channel(args.target, credentials)


def _pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise InvalidArgument(f"{flag} {text!r}: write NAME=VALUE")
    return name, value


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} file {path} is not JSON: {exc}") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None


# ---- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sibyl", description="Low-latency gRPC prediction server.")
    parser.add_argument("--config", help="settings file (.toml or .json); env SIBYL_* and flags override it")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC prediction server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, help="gRPC port (0: pick a free one and print it)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (0: one per core)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: pick a free one)")
    serve.add_argument("--store", help="model store URL (file:///path or s3://bucket/prefix)")
    serve.set_defaults(handler=cmd_serve)

    models = sub.add_parser("models", help="publish models and set what serves").add_subparsers(
        dest="models_command", required=True
    )

    def models_cmd(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = models.add_parser(name, help=help_)
        p.add_argument("--store", help="model store URL (default: settings)")
        p.set_defaults(handler=handler)
        return p

    p = models_cmd("list", cmd_models_list, "list models, versions and predictors")
    p.add_argument("--json", action="store_true")
    p = models_cmd("publish", cmd_models_publish, "upload a model version with its manifest")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--onnx", required=True, help="model.onnx file")
    p.add_argument("--spec", required=True, help="JSON with inputs (features), output, input_name, metadata")
    p.add_argument("--sample", help="CSV of feature columns: baseline histograms for drift")
    p = models_cmd("promote", cmd_models_promote, "make MODEL@VERSION the predictor's primary")
    p.add_argument("predictor")
    p.add_argument("model", help="model@version")
    p = models_cmd("rollback", cmd_models_rollback, "go back one primary in the audit history (again: one more)")
    p.add_argument("predictor")
    p = models_cmd("shadow", cmd_models_shadow, "add/update/remove a shadow model")
    p.add_argument("predictor")
    p.add_argument("model", help="model@version")
    p.add_argument("--sample", type=float, default=1.0, help="share of requests it scores (default 1)")
    p.add_argument("--remove", action="store_true")
    p = models_cmd("experiment", cmd_models_experiment, "add/update/end an experiment arm")
    p.add_argument("predictor")
    p.add_argument("arm")
    p.add_argument("model", nargs="?", help="model@version")
    p.add_argument("--traffic", type=float, default=0.1, help="share of units in this arm")
    p.add_argument("--end", action="store_true")
    p = models_cmd("history", cmd_models_history, "who changed what served, when")
    p.add_argument("predictor")

    predict = sub.add_parser("predict", help="send one Predict call and print the response")
    predict.add_argument("--target", default="127.0.0.1:50051")
    predict.add_argument("--file", help="PredictRequest as JSON (see sibyl/examples/request.json)")
    predict.add_argument("--predictor")
    predict.add_argument("--feature", action="append", help="NAME=VALUE (repeatable)")
    predict.add_argument("--entity", action="append", help="ENTITY=ID context, e.g. consumer_id=7")
    predict.add_argument("--timeout", type=float, default=5.0)
    predict.add_argument("--pretty", action="store_true")
    predict.add_argument("--tls-ca", help="PEM CA bundle: connect with TLS and trust this CA")
    predict.add_argument("--tls-cert", help="PEM client certificate, for a server that wants mutual TLS")
    predict.add_argument("--tls-key", help="PEM private key of --tls-cert")
    predict.add_argument("--token", help="bearer token sent as 'authorization: Bearer TOKEN'")
    predict.set_defaults(handler=cmd_predict)

    for module in ("sibyl.cli.features", "sibyl.cli.predlog", "sibyl.cli.score", "benchmarks.cli"):
        _add_optional(sub, module)
    return parser


def _add_optional(sub: argparse._SubParsersAction, module: str) -> None:
    """Command groups that live with their concern; absent ones (e.g. benchmarks outside a checkout) are skipped."""
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) and importlib.util.find_spec(module):
        importlib.import_module(module).add_commands(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args, _settings(args))
    except SibylError as exc:
        print(f"sibyl: error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"sibyl: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"sibyl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
