"""Every setting as a command-line flag, generated from `Settings`: `server.max_rows` is `--server-max-rows`,
`features.backend` is `--features-backend`, `log_json` is `--log-json/--no-log-json`.

One walk of the settings model (`settings_fields`) gives the flags of `sibyl serve` and `sibyl config show`,
the masked view `config show` prints, and the reference in docs/configuration.md (scripts/gen_config_docs.py).
"""

from __future__ import annotations

import argparse
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from sibyl.config import Settings

MASK = "***"
PACKAGE = str(Path(__file__).resolve().parent.parent)  # defaults under it print as <package>/...
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.IGNORECASE)


@dataclass(frozen=True)
class Setting:
    path: tuple[str, ...]  # ("server", "max_rows")
    info: FieldInfo
    kind: str  # bool | int | float | str | list | choice
    choices: tuple[str, ...] = ()
    optional: bool = False

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return "SIBYL_" + "__".join(self.path).upper()

    @property
    def flag(self) -> str:
        return "--" + "-".join(self.path).replace("_", "-")

    @property
    def dest(self) -> str:
        return "setting__" + "__".join(self.path)

    @property
    def secret(self) -> bool:
        """Bearer tokens and anything named like a password or secret; URLs have their password masked."""
        name = self.path[-1]
        return name == "tokens" or name.endswith(("password", "secret", "_token"))

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def description(self) -> str:
        return self.info.description or ""

    @property
    def type_text(self) -> str:
        """e.g. "int >= 1", "one of memory, redis", "list of str", "str or unset"."""
        text = {"choice": "one of " + ", ".join(self.choices), "list": "list of str"}.get(self.kind, self.kind)
        for bound in self.info.metadata:
            for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                if getattr(bound, attr, None) is not None:
                    text += f" {sign} {getattr(bound, attr)}"
        return text + (" or unset" if self.optional else "")


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def settings_fields(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> list[Setting]:
    found: list[Setting] = []
    for name, info in model.model_fields.items():
        annotation, optional = _unwrap(info.annotation)
        path = (*prefix, name)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(settings_fields(annotation, path))
        elif typing.get_origin(annotation) is Literal:
            found.append(Setting(path, info, "choice", tuple(map(str, typing.get_args(annotation))), optional))
        elif typing.get_origin(annotation) is list:
            found.append(Setting(path, info, "list", optional=optional))
        elif annotation in (bool, int, float, str):
            found.append(Setting(path, info, annotation.__name__, optional=optional))
        else:
            raise TypeError(f"setting {'.'.join(path)}: no flag for type {annotation!r}; teach sibyl/cli/flags.py")
    return found


# ---- flags
METAVAR = {"int": "N", "float": "X", "str": "TEXT", "list": "TEXT"}


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, grouped by section; a flag the parser already has (e.g. serve's --port alias of
    --server-port, --metrics-port) is left as it is."""
    taken = set(parser._option_string_actions)
    groups: dict[str, Any] = {}
    for s in settings_fields():
        if s.flag in taken or f"--no-{s.flag[2:]}" in taken:
            continue
        section = s.path[0] if len(s.path) > 1 else ""
        if section not in groups:
            title = f"{section} settings (SIBYL_{section.upper()}__*)" if section else "logging settings"
            groups[section] = parser.add_argument_group(title)
        text = s.description.replace("%", "%%")
        default = "unset" if s.default is None else display(s.default)
        helptext = f"{text} (default {default}; env {s.env})"
        group = groups[section]
        if s.kind == "bool":
            group.add_argument(s.flag, dest=s.dest, action=argparse.BooleanOptionalAction, help=helptext)
        elif s.kind == "choice":
            group.add_argument(s.flag, dest=s.dest, choices=s.choices, help=helptext)
        elif s.kind == "list":
            group.add_argument(s.flag, dest=s.dest, action="append", metavar="TEXT", help=helptext + "; repeatable")
        else:
            kind = {"int": int, "float": float, "str": str}[s.kind]
            group.add_argument(s.flag, dest=s.dest, type=kind, metavar=METAVAR[s.kind], help=helptext)


def flag_overrides(args: argparse.Namespace, aliases: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings given as flags, nested as load_settings' overrides ({"server": {"max_rows": 5}}); `aliases`
    (values of a command's own short flags, e.g. serve's --port) win over the generated flags."""
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if not dest.startswith("setting__") or value is None:
            continue
        *sections, name = dest.split("__")[1:]
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    for section, values in (aliases or {}).items():
        if isinstance(values, dict):
            out.setdefault(section, {}).update(values)
        else:
            out[section] = values
    return out


# ---- showing
def display(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace(PACKAGE, "<package>")


def masked(settings: Settings) -> dict[str, Any]:
    """Effective settings as plain data, secrets replaced by ***: tokens, and passwords inside URLs."""
    data = settings.model_dump(mode="json")
    for s in settings_fields():
        node = data
        for part in s.path[:-1]:
            node = node[part]
        value = node[s.path[-1]]
        if s.secret and value:
            node[s.path[-1]] = [MASK] * len(value) if isinstance(value, list) else MASK
        elif isinstance(value, str):
            node[s.path[-1]] = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", value)
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's


def to_toml(data: dict[str, Any]) -> str:
    """Top-level values first, then one [table] per section; unset (None) values as comments."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"# {key} is unset" if value is None else f"{key} = {_toml_value(value)}")
    for table, values in tables.items():
        lines += ["", f"[{table}]"]
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}  # e.g. features.feast
        for key, value in values.items():
            if key not in nested:
                lines.append(f"# {key} is unset" if value is None else f"{key} = {_toml_value(value)}")
        for key, sub in nested.items():
            lines += ["", f"[{table}.{key}]"]
            lines += [f"# {k} is unset" if v is None else f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
