"""The docs stand alone and stay complete: no reference to files outside the repository,
every setting in the README, every HTTP path in docs/api.md, every command in the README."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from tollway.app import create_app
from tollway.cli import app as cli_app
from tollway.settings import Settings

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
API_DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
PARAM = re.compile(r"\{[^}]*\}")


def test_no_citation_of_files_outside_the_repository() -> None:
    files = [ROOT / "README.md", ROOT / "bench" / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
    offenders = [
        str(path.relative_to(ROOT))
        for path in files
        if path != Path(__file__)
        and re.search(r"CONTRACT\s*§|shared/spec|seed-management-api", path.read_text("utf-8"))
    ]
    assert offenders == []


def test_every_setting_is_in_the_readme_table() -> None:
    table = [line for line in README.splitlines() if line.startswith("| `TOLLWAY_")]
    documented = set(re.findall(r"`(TOLLWAY_[A-Z_]+)`", "\n".join(table)))
    expected = {f"TOLLWAY_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set()


def test_every_http_path_is_in_the_api_doc() -> None:
    normalised_doc = PARAM.sub("{}", API_DOC)
    paths = set(create_app(Settings()).openapi()["paths"])
    assert len(paths) >= 10  # the check is not vacuous
    missing = sorted(
        path
        for path in paths
        if not re.search(rf"[`\s]{re.escape(PARAM.sub('{}', path))}[`?\s]", normalised_doc)
    )
    assert missing == []


def _commands(group: typer.Typer, prefix: str) -> list[str]:
    names = [
        f"{prefix}{c.name or getattr(c.callback, '__name__', '')}"
        for c in group.registered_commands
    ]
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        names += _commands(sub.typer_instance, f"{prefix}{sub.name} ")
    return names


def test_every_cli_command_is_in_the_readme() -> None:
    commands = _commands(cli_app, "")
    assert len(commands) >= 15
    missing = [c for c in commands if f"tollway {c}" not in README and f"`{c}" not in README]
    assert missing == []
