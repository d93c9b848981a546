"""A quick look at one build: `python bench/quick.py [--backends sqlite postgres]
[--levels 1 16 64 256] [--seconds 5] [--sequential 2000]`, ~1 min per backend.

The gateway (`tollway serve`, one worker, pinned as in run.py) against the mock on SQLite and
a fresh PostgreSQL database: sequential added latency, then wrk per level with the CPU per
request, then **which path the money took**: the ledger's rows by kind (`charge` rows come
from credit leases' group commits, `reserve` rows from requests reserved in the database on
the request path) and the number of lease draws. For iterating on the hot path; the figures
that count go through `run.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare
import procs
import scenarios
import services

_KINDS = "SELECT kind, count(*) FROM ledger GROUP BY kind ORDER BY kind"


async def _ledger_kinds(url: str) -> dict[str, int]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return {str(k): int(n) for k, n in conn.execute(_KINDS)}
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return {str(k): int(n) for k, n in await conn.fetch(_KINDS)}
    finally:
        await conn.close()


async def _reservations(base: str) -> dict[str, float]:
    """`tollway_reservations_total` by path, from GET /metrics (absent before 2026-12-03)."""
    headers = {"authorization": "Bearer quick"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/metrics", headers=headers) as response:
            text = await response.text()
    found = re.findall(r'^tollway_reservations_total\{path="(\w+)"\} (\S+)$', text, re.M)
    return {path: float(value) for path, value in found}


async def main(args: argparse.Namespace) -> None:
    procs.raise_fd_limit()
    procs.pin_self(procs.LOAD_CPU)
    out: dict[str, Any] = {"load_average": compare.load_average()}
    with tempfile.TemporaryDirectory(prefix="tollway-quick-") as tmp:
        workdir = Path(tmp)
        stack = procs.Stack(workdir)
        pg = await services.create_pg_database() if "postgres" in args.backends else None
        try:
            _, mock = await services.start_mock(stack, "mock")
            urls = {}
            if "sqlite" in args.backends:
                urls["sqlite"] = f"sqlite:///{workdir / 'quick.db'}"
            if pg:
                urls["postgres"] = pg
            for backend, url in urls.items():
                key = await asyncio.to_thread(services.provision, url)
                before = await _ledger_kinds(url)
                proc, target = await services.start_gateway(
                    stack, f"gw-{backend}", database_url=url, mock=mock, api_key=key,
                    extra_env=dict(e.split("=", 1) for e in args.env), metrics_token="quick",
                    server=args.server,
                )  # fmt: skip
                rows: dict[str, Any] = {}
                if args.sequential:
                    seq = await scenarios.added_latency(target, count=args.sequential)
                    rows["sequential"] = {
                        k: seq["non_streaming"][k] for k in ("p50_ms", "p90_ms", "p99_ms")
                    }
                for number, level in enumerate(args.levels):
                    if number and args.gap:
                        await asyncio.sleep(args.gap)
                    row, cpu_us = await compare.wrk_with_cpu(
                        proc, target, workdir, level=level, seconds=args.seconds,
                        tag=f"{backend}-c{level}",
                    )  # fmt: skip
                    rows[f"c{level}"] = {
                        "rps": round(row["rps"]),
                        "p50_ms": row["p50_ms"],
                        "p99_ms": row["p99_ms"],
                        "errors": row["errors"],
                        "cpu_us_per_request": round(cpu_us),
                    }
                    print(backend, level, rows[f"c{level}"], flush=True)
                rows["reservations_by_path"] = await _reservations(target.base)
                stack.stop(proc)
                if args.keep and url.startswith("sqlite:///"):
                    shutil.copy(url.removeprefix("sqlite:///"), args.keep)
                after = await _ledger_kinds(url)
                rows["ledger_rows"] = {k: n - before.get(k, 0) for k, n in after.items()}
                out[backend] = rows
        finally:
            stack.close()
            if pg:
                await services.drop_pg_database(pg)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument(
        "--server", choices=["uvicorn", "granian"], help="the same app under bench/gateway_probe.py"
    )
    parser.add_argument("--gap", type=float, default=0.0, help="idle seconds between levels")
    parser.add_argument("--keep", help="copy the SQLite database here at the end")
    parser.add_argument("--env", nargs="*", default=[], help="K=V for the gateway (A/B)")
    asyncio.run(main(parser.parse_args()))
