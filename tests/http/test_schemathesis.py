"""The OpenAPI document against the real server: schemathesis generates valid and invalid
requests for every operation and runs every check it has (server errors, status codes and
bodies against the document, content types, headers, Allow on 405, auth really enforced,
invalid input refused), on SQLite and on PostgreSQL, against `tollway serve` with the
management key `tollway init` printed. The case count is bounded (CASES per operation and
generation mode) so this stays within a minute or two of CI time."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine.events import (
    EngineEvent,
    FatalError,
    FuzzScenarioFinished,
    NonFatalError,
    ScenarioFinished,
)

from tests.support.databases import database_url_for
from tests.support.processes import serve_process, tollway
from tollway.errors import excerpt

CASES = 15

# Input that has the documented shape but breaks a rule of the domain is a documented 400:
# a duplicate key name or the key limit, a registry validation failure, a budget whose scope
# needs a user or key that is not there, a date that does not exist, a model with no
# candidate left by the policy. Everywhere else a well-formed request must not be refused.
DOMAIN_400 = ["2xx", "400", "401", "403", "404", "409", "429"]
DOMAIN_RULES = [
    ("/v1/manage/api-keys", "POST"),
    ("/v1/manage/api-keys", "DELETE"),
    ("/v1/manage/budgets", "POST"),
    ("/v1/project-configs", "PUT"),
    ("/v1/manage/usage", "GET"),
    ("/v1/chat/completions", "POST"),
    ("/v1/embeddings", "POST"),
    ("/v1/responses", "POST"),  # input items and tools have rules the schema does not carry
]


@dataclass
class Run:
    """What one run of the engine did: requests by status, and each failed check."""

    calls: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def record(self, event: EngineEvent) -> None:
        if isinstance(event, NonFatalError):
            self.failures.append(f"{event.label}: error {excerpt(repr(event.value), 300)}")
        if isinstance(event, FatalError):
            self.failures.append(f"engine error {excerpt(repr(event.exception), 300)}")
        if not isinstance(event, ScenarioFinished | FuzzScenarioFinished):
            return
        recorder = event.recorder
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                self.calls += 1
                self.statuses[interaction.response.status_code] += 1
        for nodes in recorder.checks.values():
            for node in nodes:
                if node.failure_info is not None:
                    failure = node.failure_info.failure
                    line = f"{recorder.label}: {node.name}: {failure.title} - {failure.message}"
                    self.failures.append(excerpt(line, 400))


def _config(key: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": f"Bearer {key}"},
            "seed": 20261126,
            "generation": {"mode": "all", "max-examples": CASES},
            "checks": {"enabled": True},
            "operations": [
                {
                    "include-path": path,
                    "include-method": method,
                    "checks": {"positive_data_acceptance": {"expected-statuses": DOMAIN_400}},
                }
                for path, method in DOMAIN_RULES
            ],
        }
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_server_keeps_its_openapi_document(backend: str, tmp_path: Path) -> None:
    async with database_url_for(backend, tmp_path) as url:
        init = tollway("init", "--json", database_url=url)
        assert init.returncode == 0, init.stderr
        key = json.loads(init.stdout)["api_key"]
        with serve_process(url) as (root, _process):
            run = await asyncio.to_thread(_schemathesis, root, key)
    errors = sum(n for status, n in run.statuses.items() if status >= 500)
    print(  # the figure the closing note quotes (shown with pytest -s)
        f"\nschemathesis {backend}: {run.calls} requests, {errors} 5xx, "
        f"statuses {dict(sorted(run.statuses.items()))}"
    )
    assert run.calls > 500
    assert errors == 0
    assert run.failures == [], "\n".join(run.failures)


def _schemathesis(root: str, key: str) -> Run:
    schema = schemathesis.openapi.from_url(f"{root}/openapi.json", config=_config(key))
    run = Run()
    for event in engine.from_schema(schema).execute():
        run.record(event)
    return run
