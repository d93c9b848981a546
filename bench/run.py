"""Tollway's benchmark: `python3 bench/run.py` (full, ~10 min) or `--smoke` (CI, < 60 s).

Starts the mock upstream, the floor (a bare CPython proxy, bench/floor.py), the gateway (one
worker; SQLite, and PostgreSQL when reachable), both again with two workers (bench/second_core.py)
and LiteLLM's proxy, loads them, and writes JSON, Markdown and a plot. `--only second-core` runs
that one scenario (with its own one-worker baseline). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
ONLY = ("second-core", "floors", "peers", "stalls")  # scenarios `--only` runs by themselves
SMOKE_SECOND_CORE = True  # the two-worker SQLite gateway, 2 levels of 1 s, /metrics: +4 s


def ensure_venv_python() -> None:
    """Re-exec into the project's .venv (created by dev.py when missing)."""
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    if not VENV_PYTHON.exists():
        subprocess.run(
            [sys.executable, "-c", "import dev; dev.ensure_venv('dev')"], cwd=ROOT, check=True
        )
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


@dataclass(frozen=True)
class Plan:
    smoke: bool
    latency_count: int
    litellm_latency_count: int
    levels: list[int]
    level_seconds: float
    stream_connections: int
    stream_seconds: float
    many_streams: int
    many_seconds: float
    leak_requests: int
    leak_seconds: float
    profile_seconds: float
    second_core: bool
    deadline_s: float

    @classmethod
    def of(cls, smoke: bool) -> Plan:
        if smoke:
            return cls(True, 30, 0, [1, 8], 1, 16, 1, 50, 2, 500, 20, 0, SMOKE_SECOND_CORE, 100)
        levels = [1, 4, 16, 64, 128, 256]
        return cls(False, 2000, 300, levels, 5, 256, 10, 1000, 20, 100_000, 150, 8, True, 1500)


def install_tools(smoke: bool) -> list[str]:
    """wrk (apt), py-spy and matplotlib (pip, .venv) for a full run on a fresh machine."""
    notes: list[str] = []
    if smoke:
        return notes
    from load import have_wrk

    if not have_wrk():
        print("installing wrk (apt) ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True
        )
        if done.returncode != 0:
            notes.append("wrk could not be installed: throughput uses the Python client")
    wanted = []
    for module, package in (("matplotlib", "matplotlib"),):
        try:
            __import__(module)
        except ImportError:
            wanted.append(package)
    if not (Path(sys.executable).parent / "py-spy").exists():
        wanted.append("py-spy")
    if wanted:
        print(f"installing {' '.join(wanted)} into .venv ...", flush=True)
        # dev.py makes .venv without pip when uv installs (its uv is in .venv/bin).
        uv = Path(sys.executable).parent / "uv"
        if uv.exists():
            pip = [str(uv), "pip", "install", "-q", "--python", sys.executable]
        else:
            pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*pip, *wanted], check=False, capture_output=True, text=True)
        if done.returncode != 0:
            notes.append(f"could not install {' '.join(wanted)}: {done.stderr.strip()[-300:]}")
    return notes


async def bench_gateway(
    plan: Plan,
    stack: Any,
    workdir: Path,
    out_dir: Path,
    results: dict[str, Any],
    *,
    name: str,
    database_url: str,
    mock: Any,
    use_wrk: bool,
    leak: bool,
) -> str:
    import procs
    import scenarios
    import services

    print(f"[{name}] provisioning through the CLI ...", flush=True)
    api_key = await asyncio.to_thread(services.provision, database_url)
    proc, target = await services.start_gateway(
        stack, name, database_url=database_url, mock=mock, api_key=api_key
    )
    print(f"[{name}] added latency ({plan.latency_count} sequential requests) ...", flush=True)
    results["latency"][name] = await scenarios.added_latency(target, count=plan.latency_count)
    print(f"[{name}] throughput ...", flush=True)
    cpu = procs.CpuShare(proc.pid, mock.pid)
    cpu.start()
    results["throughput"][name] = await scenarios.throughput(
        target,
        workdir,
        levels=plan.levels,
        seconds=plan.level_seconds,
        use_wrk=use_wrk,
        stop_when_saturated=False,
    )
    results["cpu_throughput"][name] = cpu.stop()
    print(f"[{name}] {plan.stream_connections} concurrent streams ...", flush=True)
    results["streaming"][name] = await scenarios.streaming(
        target, connections=plan.stream_connections, seconds=plan.stream_seconds
    )
    if plan.profile_seconds and use_wrk:
        print(f"[{name}] py-spy profile under load ...", flush=True)
        results["profile"][name] = await scenarios.profile(
            target, workdir, out_dir, pid=proc.pid, seconds=plan.profile_seconds, suffix=name
        )
    if leak:
        print(f"[{name}] {plan.leak_requests} requests, RSS sampled ...", flush=True)
        results["memory"]["leak"] = await scenarios.leak_run(
            target,
            workdir,
            pid=proc.pid,
            total=plan.leak_requests,
            max_seconds=plan.leak_seconds,
            connections=64,
            use_wrk=use_wrk,
        )
    stack.stop(proc)
    return api_key


async def bench_floor(
    plan: Plan, stack: Any, workdir: Path, results: dict[str, Any], *, mock: Any, use_wrk: bool
) -> None:
    """The floor (bench/floor.py) through the same scenarios as a gateway: what any CPython
    proxy pays, against which each gateway row is read."""
    import procs
    import scenarios
    import services

    proc, target = await services.start_floor(stack, mock)
    print(f"[floor] added latency ({plan.latency_count} sequential requests) ...", flush=True)
    results["latency"]["floor"] = await scenarios.added_latency(target, count=plan.latency_count)
    print("[floor] throughput ...", flush=True)
    cpu = procs.CpuShare(proc.pid, mock.pid)
    cpu.start()
    results["throughput"]["floor"] = await scenarios.throughput(
        target,
        workdir,
        levels=plan.levels,
        seconds=plan.level_seconds,
        use_wrk=use_wrk,
        stop_when_saturated=False,
    )
    results["cpu_throughput"]["floor"] = cpu.stop()
    print(f"[floor] {plan.stream_connections} concurrent streams ...", flush=True)
    results["streaming"]["floor"] = await scenarios.streaming(
        target, connections=plan.stream_connections, seconds=plan.stream_seconds
    )
    stack.stop(proc)


async def bench_many_streams(
    plan: Plan,
    stack: Any,
    workdir: Path,
    results: dict[str, Any],
    *,
    db: str,
    api_key: str,
    use_wrk: bool,
) -> None:
    import scenarios
    import services

    print(f"[memory] {plan.many_streams} concurrent paced streams ...", flush=True)
    paced_proc, paced = await services.start_mock(stack, "mock-paced", tokens_per_second=5)
    proc, target = await services.start_gateway(
        stack, "gateway-paced", database_url=db, mock=paced, api_key=api_key
    )
    results["memory"]["streams"] = await scenarios.many_streams(
        target,
        paced,
        workdir,
        pid=proc.pid,
        connections=plan.many_streams,
        seconds=plan.many_seconds,
        use_wrk=use_wrk,
    )
    stack.stop(proc)
    stack.stop(paced_proc)


async def run(
    plan: Plan, out_dir: Path, workdir: Path, notes: list[str], only: str | None = None
) -> dict[str, Any]:
    import compare
    import load
    import procs
    import report
    import scenarios
    import second_core
    import services

    use_wrk = load.have_wrk() and not plan.smoke
    results: dict[str, Any] = {
        "meta": {**report.machine(), "mode": "smoke" if plan.smoke else "full"},
        "latency": {},
        "overhead": {},
        "throughput": {},
        "streaming": {},
        "memory": {},
        "profile": {},
        "cpu_throughput": {},  # where the CPU went during each one-worker throughput run
        "notes": notes,
    }
    results["meta"]["load_generator"] = "wrk (1 thread, CPU 1)" if use_wrk else "aiohttp"
    if only is not None:
        results["meta"]["only"] = only
    stack = procs.Stack(workdir)
    pg_url: str | None = None
    sqlite_url = f"sqlite:///{workdir / 'tollway.db'}"
    try:
        _, mock = await services.start_mock(stack, "mock")
        if only == "second-core":
            pg_url = None if plan.smoke else await services.create_pg_database()
            urls = {"gateway-sqlite": sqlite_url, "gateway-postgres": pg_url}
            backends = [
                second_core.Backend(name, url, await asyncio.to_thread(services.provision, url))
                for name, url in urls.items()
                if url is not None
            ]
            await second_core.run(
                stack, workdir, results, mock=mock, backends=backends,
                load=second_core.Levels(plan.levels, plan.level_seconds, use_wrk),
            )  # fmt: skip
            finish(results)
            return results
        if only in ("floors", "peers", "stalls"):
            pg_url = await compare.run_only(
                only, plan, stack, workdir, out_dir, results, mock, use_wrk
            )
            finish(results)
            return results
        print("[direct] added latency and throughput against the mock ...", flush=True)
        results["latency"]["direct"] = await scenarios.added_latency(mock, count=plan.latency_count)
        results["throughput"]["direct"] = await scenarios.throughput(
            mock,
            workdir,
            levels=plan.levels,
            seconds=plan.level_seconds,
            use_wrk=use_wrk,
            stop_when_saturated=False,
        )
        results["streaming"]["direct"] = await scenarios.streaming(
            mock, connections=plan.stream_connections, seconds=plan.stream_seconds
        )
        await bench_floor(plan, stack, workdir, results, mock=mock, use_wrk=use_wrk)
        api_key = await bench_gateway(
            plan, stack, workdir, out_dir, results,
            name="gateway-sqlite", database_url=sqlite_url, mock=mock, use_wrk=use_wrk,
            leak=True,
        )  # fmt: skip
        await bench_many_streams(
            plan, stack, workdir, results, db=sqlite_url, api_key=api_key, use_wrk=use_wrk
        )
        backends = [second_core.Backend("gateway-sqlite", sqlite_url, api_key)]
        pg_url = None if plan.smoke else await services.create_pg_database()
        if pg_url is not None:
            pg_key = await bench_gateway(
                plan, stack, workdir, out_dir, results,
                name="gateway-postgres", database_url=pg_url, mock=mock, use_wrk=use_wrk,
                leak=False,
            )  # fmt: skip
            backends.append(second_core.Backend("gateway-postgres", pg_url, pg_key))
        elif not plan.smoke:
            notes.append("PostgreSQL not reachable on 127.0.0.1:5432: skipped")
        if plan.second_core:
            await second_core.run(
                stack, workdir, results, mock=mock, backends=backends,
                load=second_core.Levels(plan.levels, plan.level_seconds, use_wrk),
                floor=not plan.smoke,
            )  # fmt: skip
        for peer in () if plan.smoke else ("litellm", "portkey"):
            await compare.peer(peer, plan, stack, workdir, results, mock=mock, use_wrk=use_wrk)
    finally:
        stack.close()
        if pg_url is not None:
            await services.drop_pg_database(pg_url)
    finish(results)
    return results


def finish(results: dict[str, Any]) -> None:
    """Derived figures: added latency against direct, the ratios to the floor."""
    import report
    import scenarios

    direct = results["latency"].get("direct")
    for name, latency in results["latency"].items():
        if name != "direct" and direct is not None:
            results["overhead"][name] = scenarios.overhead(latency, direct)
    results["vs_floor"] = report.vs_floor(results)


def gateway_failures(results: dict[str, Any]) -> list[str]:
    """Why the gateway (or the floor) did not serve (non-empty = exit 1); speed is never
    asserted."""
    failures = []
    for name, latency in results["latency"].items():
        if _served_by_us(name) and latency["errors"]:
            failures.append(f"{name}: {latency['errors']} failed sequential requests")
        if _served_by_us(name) and latency["non_streaming"]["n"] == 0:
            failures.append(f"{name}: no request succeeded")
    for name, rows in results["throughput"].items():
        if _served_by_us(name) and not any(r["rps"] > 0 for r in rows):
            failures.append(f"{name}: no request succeeded under load")
    for name, rows in results.get("second_core", {}).get("throughput", {}).items():
        if not any(r["rps"] > 0 for r in rows):
            failures.append(f"{name} with two workers: no request succeeded under load")
    leak = results["memory"].get("leak")
    if leak is not None and leak["errors"] and results["meta"]["mode"] == "smoke":
        failures.append(f"leak run: {leak['errors']} errors")
    return failures


def _served_by_us(name: str) -> bool:
    return name.startswith("gateway") or name == "floor"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds-long CI check")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument(
        "--only",
        choices=ONLY,
        help="run one scenario (its results default to bench/results/only-<name>/)",
    )
    args = parser.parse_args()
    ensure_venv_python()
    sys.path.insert(0, str(BENCH))
    import procs
    import report

    plan = Plan.of(args.smoke)
    notes = install_tools(plan.smoke)
    procs.raise_fd_limit()
    procs.pin_self(procs.LOAD_CPU)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tollway-bench-") as tmp:
        workdir = Path(tmp)
        default_out = BENCH / "results" / (f"only-{args.only}" if args.only else "")
        out_dir = args.out or (workdir / "results" if plan.smoke else default_out)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            results = asyncio.run(
                asyncio.wait_for(run(plan, out_dir, workdir, notes, args.only), plan.deadline_s)
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            print(f"benchmark failed: {exc!r}", file=sys.stderr)
            return 1
        results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
        paths = report.write(results, out_dir)
        print(report.markdown(results))
        print("results: " + ", ".join(str(p) for p in paths))
    failures = gateway_failures(results)
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
