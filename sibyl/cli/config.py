"""`sibyl config show`: the settings a `sibyl serve` with the same --config, SIBYL_* env and flags would run
with, secrets masked. The full reference of every setting is docs/configuration.md."""

from __future__ import annotations

import argparse
import json

from sibyl.cli.flags import add_settings_flags, flag_overrides, masked, to_toml
from sibyl.config import Settings, load_settings


def cmd_show(args: argparse.Namespace, _: Settings) -> int:
    settings = load_settings(args.config, **flag_overrides(args))
    data = masked(settings)
    print(
        json.dumps(data, indent=2) if args.format == "json" else to_toml(data),
        end="\n" if args.format == "json" else "",
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("config", help="show the effective settings (file, env, flags), secrets masked")
    commands = group.add_subparsers(dest="config_command", required=True)
    p = commands.add_parser(
        "show",
        help="print the effective settings as JSON or TOML",
        description="Settings from --config FILE, then SIBYL_* environment variables, then these flags "
        "(the same as `sibyl serve` takes). Bearer tokens and passwords in URLs print as ***. "
        "The TOML output is a valid --config file.",
        usage="sibyl config show [-h] [--format {toml,json}] [--SECTION-SETTING VALUE ...]",
    )
    p.add_argument("--format", choices=("toml", "json"), default="toml", help="output format (default toml)")
    add_settings_flags(p)
    p.set_defaults(handler=cmd_show)
