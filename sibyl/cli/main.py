"""`sibyl` command line: serve, predict, and the command groups of cli/: models, config, features, predlog, score.

Every user error ends as one readable line on stderr and a non-zero exit code, never a traceback. The benchmark
suite is not a `sibyl` command: it lives outside the wheel, behind `python -m benchmarks`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from sibyl.cli import config as config_commands
from sibyl.cli import features as features_commands
from sibyl.cli import models as models_commands
from sibyl.cli import monitor as monitor_commands
from sibyl.cli import predlog as predlog_commands
from sibyl.cli import score as score_commands
from sibyl.cli.flags import add_settings_flags, flag_overrides
from sibyl.cli.remote import add_connection_flags, open_client
from sibyl.config import Settings, load_settings
from sibyl.errors import InvalidArgument, SibylError


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
    if args.http_port is not None:
        overrides["http"] = {"port": args.http_port}
    settings = _settings(args, **flag_overrides(args, overrides))
    from sibyl.observability.logs import setup_logging

    setup_logging(settings.log_level, settings.log_json)
    if settings.server.workers != 1:
        from sibyl.process.workers import run_workers

        return run_workers(settings)
    import uvloop

    from sibyl.process.serve import serve

    uvloop.run(serve(settings))
    return 0


# ---- predict
def cmd_predict(args: argparse.Namespace, _: Settings) -> int:
    from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest

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
    with open_client(args, args.timeout) as client:
        response = client.predict_request(request)
    print(json_format.MessageToJson(response, indent=2 if args.pretty else None))
    return 0


def _pair(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise InvalidArgument(f"{flag} {text!r}: write NAME=VALUE")
    return name, value


# ---- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sibyl", description="Low-latency gRPC prediction server.")
    parser.add_argument("--config", help="settings file (.toml or .json); env SIBYL_* and flags override it")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC prediction server")
    serve.add_argument("--host", help="address the gRPC server binds to (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (0: pick a free one and print it)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (0: one per core)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: pick a free one)")
    serve.add_argument(
        "--http-port", type=int, help="KServe V2 REST port (default 8080; 0: pick a free one and print it)"
    )
    serve.add_argument("--store", help="model store URL (file:///path or s3://bucket/prefix)")
    serve.set_defaults(handler=cmd_serve)
    serve.usage = "sibyl serve [-h] [--host HOST] [--port N] [--store URL] [...] [--SECTION-SETTING VALUE ...]"
    add_settings_flags(serve)  # every other setting: --server-max-rows, --features-backend, ... (cli/flags.py)

    predict = sub.add_parser("predict", help="send one Predict call and print the response")
    predict.add_argument(
        "--target", default="127.0.0.1:50051", help="HOST:PORT of the server (default 127.0.0.1:50051)"
    )
    predict.add_argument("--file", help="PredictRequest as JSON (see sibyl/examples/request.json)")
    predict.add_argument("--predictor", help="predictor to ask (default: the file's, else example)")
    predict.add_argument("--feature", action="append", help="NAME=VALUE (repeatable)")
    predict.add_argument("--entity", action="append", help="ENTITY=ID context, e.g. consumer_id=7")
    predict.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds (default 5)")
    predict.add_argument("--pretty", action="store_true", help="indent the JSON response")
    add_connection_flags(predict)
    predict.set_defaults(handler=cmd_predict)

    # Command groups that live with their concern, each adding its subcommands.
    models_commands.add_commands(sub)
    monitor_commands.add_commands(sub)
    config_commands.add_commands(sub)
    features_commands.add_commands(sub)
    predlog_commands.add_commands(sub)
    score_commands.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args, _settings(args))
        return code
    except SibylError as exc:
        print(f"sibyl: error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"sibyl: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"sibyl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
