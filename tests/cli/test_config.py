"""Every flag has help, every setting is a flag of `sibyl serve`, `sibyl config show` prints the effective settings
with secrets masked, and docs/configuration.md is what scripts/gen_config_docs.py makes of Settings today."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest

from sibyl.cli.flags import MASK, flag_overrides, settings_fields
from sibyl.cli.main import build_parser, main
from sibyl.config import load_settings
from sibyl.v1.predict_pb2 import FeatureRow, PredictRequest
from sibyl.v1.predict_pb2_grpc import PredictionServiceStub
from tests.support.inproc import serve_subprocess

ROOT = Path(__file__).resolve().parents[2]


def parsers(parser: argparse.ArgumentParser, name: str = "sibyl") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += parsers(sub, f"{name} {sub_name}")
    return found


def test_every_flag_and_argument_has_help() -> None:
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help
    ]
    assert not missing, f"flags without help: {missing}"


def test_every_setting_is_a_serve_flag() -> None:
    serve = dict(parsers(build_parser()))["sibyl serve"]
    flags = set(serve._option_string_actions)
    fields = settings_fields()
    assert len(fields) > 40 and not [s.flag for s in fields if s.flag not in flags]
    args = build_parser().parse_args(
        ["serve", "--server-max-rows", "7", "--features-backend", "redis", "--no-log-json", "--log-level", "DEBUG",
         "--security-tokens", "a", "--security-tokens", "b", "--predlog-spool-max-bytes", "4096",
         "--shadows-max-in-flight-fraction", "0.5", "--model-store-s3-endpoint-url", "http://127.0.0.1:9"]
    )  # fmt: skip
    settings = load_settings(None, **flag_overrides(args))
    assert settings.server.max_rows == 7 and settings.features.backend == "redis" and settings.log_json is False
    assert settings.log_level == "DEBUG" and settings.security.tokens == ["a", "b"]
    assert settings.predlog.spool_max_bytes == 4096 and settings.shadows.max_in_flight_fraction == 0.5
    assert settings.model_store.s3_endpoint_url == "http://127.0.0.1:9"


def test_the_short_serve_flags_still_work_and_win() -> None:
    args = build_parser().parse_args(
        ["serve", "--host", "127.0.0.2", "--port", "5", "--server-port", "6", "--workers", "2", "--metrics-port", "7"]
    )
    aliases = {"server": {"host": args.host, "port": args.port, "workers": args.workers}}
    settings = load_settings(None, **flag_overrides(args, aliases))
    assert (settings.server.host, settings.server.port, settings.server.workers) == ("127.0.0.2", 5, 2)
    # --metrics-port (and REST's --http-port) name a setting's generated flag: serve's own flag is kept, not doubled.
    assert args.metrics_port == 7 and "setting__metrics__port" not in vars(args)


def test_a_generated_flag_reaches_the_running_server(tmp_path: Path) -> None:
    proc, port, _ = serve_subprocess(tmp_path, "--server-max-rows", "2", "--predlog-sink", "none")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = PredictionServiceStub(channel)
            rows = [FeatureRow(features={"amount": float(i)}) for i in range(3)]
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(PredictRequest(predictor="p", rows=rows), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "3 rows in one call; at most 2" in caught.value.details()
            assert len(stub.Predict(PredictRequest(predictor="p", rows=rows[:2]), timeout=10).results[0].scores) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_config_show_masks_secrets_and_its_toml_is_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("SIBYL_")]:
        monkeypatch.delenv(key)
    config = tmp_path / "sibyl.toml"
    config.write_text('[server]\nmax_rows = 5\nmax_models = 3\n[security]\ntokens = ["file-secret"]\n')
    monkeypatch.setenv("SIBYL_SERVER__MAX_MODELS", "4")  # env over the file
    monkeypatch.setenv("SIBYL_FEATURES__URL", "redis://user:hunter2@127.0.0.1:6390/0")
    assert main(["--config", str(config), "config", "show", "--server-max-rows", "6"]) == 0  # flag over both
    out = capsys.readouterr().out
    assert "hunter2" not in out and "file-secret" not in out
    shown = tomllib.loads(out)
    assert shown["server"]["max_rows"] == 6 and shown["server"]["max_models"] == 4
    assert shown["security"]["tokens"] == [MASK] and shown["features"]["url"] == f"redis://user:{MASK}@127.0.0.1:6390/0"

    monkeypatch.delenv("SIBYL_SERVER__MAX_MODELS")
    monkeypatch.delenv("SIBYL_FEATURES__URL")
    again = tmp_path / "shown.toml"
    again.write_text(out)
    reloaded = load_settings(again)
    assert reloaded.server.max_rows == 6 and reloaded.server.max_models == 4
    assert reloaded.model_dump(exclude={"security", "features"}) == load_settings(
        config, server={"max_rows": 6, "max_models": 4}
    ).model_dump(exclude={"security", "features"})

    assert main(["config", "show", "--format", "json", "--security-tokens", "t0p", "--no-metrics-enabled"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["security"]["tokens"] == [MASK] and data["metrics"]["enabled"] is False


def test_config_show_bad_values_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--server-max-rows", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sibyl: error: setting server.max_rows (SIBYL_SERVER__MAX_ROWS): Input should be greater than or equal to 1"
    ]
    with pytest.raises(SystemExit) as caught:
        main(["config", "show", "--server-max-rows", "many"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "sibyl config show: error: argument --server-max-rows: invalid int value: 'many'"
    assert len(err) == 2  # a short usage line, then the error


def test_configuration_reference_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--out", str(out)], check=True)
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == out.read_text(), "docs/configuration.md is stale: run python scripts/gen_config_docs.py"
    for s in settings_fields():
        assert f"| `{s.dotted}` | `{s.env}` | `{s.flag}`" in committed
    assert "/work/" not in committed and "<package>/examples/store" in committed
