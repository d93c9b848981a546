from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from typer.testing import CliRunner, Result

from tollway.cli import app

Cli = Callable[..., Result]


@pytest.fixture
def cli(database_url: str) -> Cli:
    """Run `tollway --database-url <the test database> ARGS...` in-process (typer's runner)."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--database-url", database_url, *args])

    assert invoke("init").exit_code == 0
    return invoke


def ok_json(result: Result) -> object:
    assert result.exit_code == 0, result.stderr
    return orjson.loads(result.stdout)


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]
