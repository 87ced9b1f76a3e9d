"""Write docs/configuration.md, the reference of every setting, from `sibyl.config.Settings` (one command).

python scripts/gen_config_docs.py            # writes docs/configuration.md
python scripts/gen_config_docs.py --out F    # writes F instead (the staleness test uses this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sibyl.cli.flags import display, settings_fields  # noqa: E402

HEADER = """# Configuration reference

<!-- Generated from sibyl.config.Settings by `python scripts/gen_config_docs.py`; tests/cli/test_config.py fails
     when this file is stale. Edit the Field descriptions, not this file. -->

Every setting can be given three ways; later ones win:

1. a file: `sibyl --config sibyl.toml serve` (TOML or JSON, one table per section, e.g. `[server]` `max_rows = 5000`);
2. an environment variable: `SIBYL_<SECTION>__<SETTING>`, e.g. `SIBYL_SERVER__MAX_ROWS=5000`
   (lists as JSON: `SIBYL_SECURITY__TOKENS='["t1","t2"]'`);
3. a flag of `sibyl serve` (and `sibyl config show`): `--<section>-<setting>`, e.g. `--server-max-rows 5000`,
   `--no-log-json` for a false boolean; `--host`, `--port`, `--workers`, `--metrics-port` and `--store` are
   short forms of `--server-host`, `--server-port`, `--server-workers`, `--metrics-port`, `--model-store-url`.

`sibyl config show` prints the settings that result (TOML, or `--format json`), with bearer tokens and passwords
inside URLs masked; its TOML output is itself a valid `--config` file. A wrong value stops `serve` with one line
naming the setting. `<package>` below is the installed `sibyl` package folder (the bundled examples).
"""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    sections: dict[str, list[str]] = {}
    for s in settings_fields():
        section = s.path[0] if len(s.path) > 1 else "logging"
        default = "unset" if s.default is None else f"`{display(s.default)}`"
        flag = f"`{s.flag}`" if s.kind != "bool" else f"`{s.flag}` / `--no-{s.flag[2:]}`"
        row = f"| `{s.dotted}` | `{s.env}` | {flag} | {cell(s.type_text)} | {cell(default)} | {cell(s.description)} |"
        sections.setdefault(section, []).append(row)
    out = [HEADER]
    for section, rows in sections.items():
        out += [
            f"## {section}",
            "",
            "| setting | environment | flag | type | default | meaning |",
            "|---|---|---|---|---|---|",
        ]
        out += rows
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "configuration.md", help="file to write")
    args = parser.parse_args()
    args.out.write_text(render())


if __name__ == "__main__":
    main()
