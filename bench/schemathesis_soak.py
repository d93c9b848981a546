"""A hostile-input soak (not run in CI): schemathesis against a real `tollway serve`, every
operation of the OpenAPI document, valid and invalid input, every check, on SQLite and on
PostgreSQL, for far more cases than CI's bounded run (`tests/http/test_schemathesis.py`,
whose checks and domain rules this reuses). The goal: at least 50,000 requests per backend
and not one 5xx.

Usage: `.venv/bin/python bench/schemathesis_soak.py [--examples N] [--seed S ...]
[--backend sqlite|postgres]` (N cases per operation and generation mode, for each seed S, all
against one server per backend: Hypothesis saturates near 18,000 requests a seed at N=700, so
the default three seeds give > 50,000 requests per backend in one run; tens of minutes on a
shared machine). Prints, per seed and per backend, the requests sent, the 5xx among them, the
statuses, and every failed check. Results go in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/

import schemathesis
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from tests.http.test_schemathesis import DOMAIN_400, DOMAIN_RULES, Run
from tests.support.databases import database_url_for
from tests.support.processes import serve_process, tollway


def config(key: str, examples: int, seed: int) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": f"Bearer {key}"},
            "seed": seed,
            "generation": {"mode": "all", "max-examples": examples},
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


def soak(root: str, key: str, examples: int, seeds: list[int], minutes: float | None) -> Run:
    """Every seed in turn against the same server, into one Run."""
    run = Run()
    deadline = None if minutes is None else time.monotonic() + minutes * 60
    for seed in seeds:
        schema = schemathesis.openapi.from_url(
            f"{root}/openapi.json", config=config(key, examples, seed)
        )
        before = run.calls
        for event in engine.from_schema(schema).execute():
            run.record(event)
            if deadline is not None and time.monotonic() > deadline:
                print("time budget spent: stopped before the end", flush=True)
                return run
        print(f"  seed {seed}: {run.calls - before} requests", flush=True)
    return run


async def backend_run(backend: str, examples: int, seeds: list[int], minutes: float | None) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        async with database_url_for(backend, Path(tmp)) as url:
            init = tollway("init", "--json", database_url=url)
            if init.returncode != 0:
                print(f"{backend}: init failed: {init.stderr}")
                return False
            key = json.loads(init.stdout)["api_key"]
            started = time.monotonic()
            with serve_process(url) as (root, _process):
                run = await asyncio.to_thread(soak, root, key, examples, seeds, minutes)
            elapsed = time.monotonic() - started
    errors = sum(n for status, n in run.statuses.items() if status >= 500)
    print(
        f"schemathesis soak {backend}: {run.calls} requests in {elapsed / 60:.1f} min, "
        f"{errors} 5xx, statuses {dict(sorted(run.statuses.items()))}, "
        f"{len(run.failures)} failed checks",
        flush=True,
    )
    for failure in run.failures[:50]:
        print(f"  {failure}", flush=True)
    return errors == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=700)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--seed", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--minutes", type=float, help="stop after this long (partial run)")
    args = parser.parse_args()
    results = [
        asyncio.run(backend_run(backend, args.examples, args.seed, args.minutes))
        for backend in args.backend or ["sqlite", "postgres"]
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
