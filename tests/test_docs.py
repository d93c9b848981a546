"""The docs stand alone and stay complete: no reference to files outside the repository,
every setting in the README, every HTTP path in docs/api.md, every command in the README."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
from pathlib import Path
from types import FrameType

import httpx
import pytest
import typer

from tests.support.mock_server import running_mock
from tests.support.world import World
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


ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "src" / "tollway"


def _tree_paths(doc: str) -> list[str]:
    """The files and folders of the layers tree (the first code block), as paths under
    src/tollway: two spaces of indent per level, names end in `.py` or `/`."""
    tree = doc.split("```", 2)[1]
    folders: dict[int, str] = {}
    paths = []
    for line in tree.splitlines()[1:]:
        indent = len(line) - len(line.lstrip(" "))
        level = indent // 2
        names = re.match(r"((?:[\w.]+(?:\.py|/)\s)+)", line.strip() + " ")
        if indent % 2 or level < 1 or names is None:
            continue  # a description's continuation line
        parent = "".join(folders[lvl] for lvl in range(1, level) if lvl in folders)
        for name in names.group(1).split():
            if name.endswith("/"):
                folders = {k: v for k, v in folders.items() if k < level}
                folders[level] = name
            paths.append(parent + name)
    return paths


def _named_paths(doc: str) -> list[str]:
    """Every `code` span that names a file or folder of the repository."""
    spans = re.findall(r"`([^`\s]+)`", doc)
    return [
        span
        for span in spans
        if re.fullmatch(r"[\w.-]+(/[\w.-]+)*/?", span)
        and ("/" in span or re.search(r"\.(py|md|toml|yaml|js|css|html)$", span))
        and not span.startswith(("v1/", "x-"))
    ]


def test_every_file_the_architecture_names_exists() -> None:
    tree = _tree_paths(ARCHITECTURE)
    assert len(tree) > 60  # the check is not vacuous
    missing = [p for p in tree if not (PACKAGE / p).exists()]
    named = _named_paths(ARCHITECTURE)
    assert len(named) > 40
    missing += [
        p for p in named if not any((base / p).exists() for base in (ROOT, PACKAGE, ROOT / "docs"))
    ]
    assert missing == []


def _listed_warm_request_files() -> set[str]:
    start = ARCHITECTURE.index("<!-- warm-request-files:start -->")
    end = ARCHITECTURE.index("<!-- warm-request-files:end -->")
    return set(re.findall(r"`([\w/]+\.py)`", ARCHITECTURE[start:end]))


async def test_the_files_a_warm_request_runs_are_all_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One warm, non-streamed chat request, profiled in process (every thread, so the
    SQLite writer thread too): each module of Tollway it runs is in architecture.md's list."""
    listed = _listed_warm_request_files()
    assert not [p for p in listed if not (PACKAGE / p).exists()]
    database_url = f"sqlite:///{tmp_path / 'warm.db'}"
    world = World(database_url)
    await world.migrate()
    member = await world.member("u", "p", credits_eur="5")
    await world.close()
    source = str(PACKAGE.resolve()) + os.sep
    touched: set[str] = set()
    tracing = [False]

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if tracing[0] and event == "call" and frame.f_code.co_filename.startswith(source):
            touched.add(frame.f_code.co_filename[len(source) :].replace(os.sep, "/"))

    with running_mock() as mock_url:
        monkeypatch.setenv("TOLLWAY_MOCK_URL", mock_url)
        threading.setprofile(profile)
        sys.setprofile(profile)
        try:
            app = create_app(Settings(database_url=database_url))
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gateway"
                ) as client,
            ):
                body = {
                    "model": "tollway-demo-chat",
                    "messages": [{"role": "user", "content": "hi"}],
                }
                headers = {"Authorization": f"Bearer {member.inference_key}"}
                for _ in range(3):  # warm: key cached, lease drawn, speeds measured
                    assert (
                        await client.post("/v1/chat/completions", json=body, headers=headers)
                    ).status_code == 200
                await asyncio.sleep(0.3)
                tracing[0] = True
                reply = await client.post("/v1/chat/completions", json=body, headers=headers)
                assert reply.status_code == 200
                await asyncio.sleep(0.3)  # its group commit and the request log's batch
                tracing[0] = False
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    assert "gateway/pipeline.py" in touched  # the profile saw the request
    missing = sorted(touched - listed)
    assert missing == [], f"docs/architecture.md does not list: {missing}"
