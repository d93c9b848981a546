"""The comparison scenarios of bench/run.py: `--only floors` (the floor's HTTP server and
upstream client, and the gateway under each server), `--only peers` (Tollway beside LiteLLM
and Portkey's gateway) and `--only stalls` (the gateway's event-loop lag and what stalls it,
c=4-256, SQLite and PostgreSQL); Portkey also runs in the full run. Tables: `markdown`.

Every measured server gets "CPU µs per request": its process's CPU seconds over the whole
throughput run ÷ the requests it completed. Unlike req/s it hardly depends on what else the
shared machine runs, so it is the figure to compare across runs. Their tables: compare_tables.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import floor as floor_module
import procs
import scenarios
import services
from load import run_wrk
from services import Target

STALL_LEVELS = (4, 16, 64, 256)
# httpx (also in floor.py) is left out of `--only floors`: on 2026-12-03 it cost 1,850 µs of
# CPU per request against aiohttp's 153 (bench/README.md), not worth 2 minutes a run.
FLOOR_CLIENTS = ("aiohttp", "pyreqwest")
GATEWAY_SERVERS = ("uvicorn", "granian")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def measure(
    name: str,
    proc: procs.Proc,
    target: Target,
    mock: Target,
    workdir: Path,
    results: dict[str, Any],
    *,
    latency_count: int,
    levels: list[int],
    seconds: float,
    use_wrk: bool,
    stream_seconds: float,
    stop_when_saturated: bool = False,
) -> None:
    """Latency, throughput (with its CPU per request) and streaming for one server."""
    results.setdefault("load_average", {})[name] = load_average()
    print(f"[{name}] added latency ({latency_count} sequential requests) ...", flush=True)
    results["latency"][name] = await scenarios.added_latency(target, count=latency_count)
    print(f"[{name}] throughput ...", flush=True)
    cpu = procs.CpuShare(proc.pid, mock.pid)
    cpu.start()
    tree_before = procs.tree_cpu_seconds(proc.pid)
    rows = await scenarios.throughput(
        target,
        workdir,
        levels=levels,
        seconds=seconds,
        use_wrk=use_wrk,
        stop_when_saturated=stop_when_saturated,
    )
    results["throughput"][name] = rows
    results["cpu_throughput"][name] = share = cpu.stop()
    tree_cpu = procs.tree_cpu_seconds(proc.pid) - tree_before
    requests = sum(r["requests"] for r in rows)
    if requests:
        cpu_s = max(tree_cpu, sum(share["worker_cores"]) * share["seconds"])
        results.setdefault("cpu_per_request_us", {})[name] = round(cpu_s / requests * 1e6, 1)
    if stream_seconds:
        print(f"[{name}] 256 concurrent streams ...", flush=True)
        results["streaming"][name] = await scenarios.streaming(
            target, connections=256, seconds=stream_seconds
        )


async def floors(
    plan: Any, stack: procs.Stack, workdir: Path, results: dict[str, Any], *, mock: Target,
    use_wrk: bool, sqlite_url: str,
) -> None:  # fmt: skip
    """Every server and client pair of bench/floor.py, then the gateway (SQLite) under uvicorn
    and under granian, each through the same scenarios; then how each gateway server shuts
    down with streams in flight."""
    quick = {
        "latency_count": max(30, plan.latency_count // 2),
        "levels": plan.levels,
        "seconds": plan.level_seconds,
        "use_wrk": use_wrk,
        "stream_seconds": plan.stream_seconds / 2,
    }
    for server in floor_module.SERVERS:
        for client in FLOOR_CLIENTS:
            name = f"floor-{server}-{client}"
            proc, target = await services.start_floor(
                stack, mock, name=name, server=server, client=client
            )
            await measure(name, proc, target, mock, workdir, results, **quick)
            stack.stop(proc)
    api_key = await asyncio.to_thread(services.provision, sqlite_url)
    for server in GATEWAY_SERVERS:
        name = f"gateway-sqlite-{server}"
        proc, target = await services.start_gateway(
            stack, name, database_url=sqlite_url, mock=mock, api_key=api_key, server=server
        )
        await measure(name, proc, target, mock, workdir, results, **quick)
        stack.stop(proc)
    paced_proc, paced = await services.start_mock(stack, "mock-paced", tokens_per_second=20)
    shutdowns = {}
    for server in GATEWAY_SERVERS:
        proc, target = await services.start_gateway(
            stack, f"gateway-shutdown-{server}", database_url=sqlite_url, mock=paced,
            api_key=api_key, server=server,
        )  # fmt: skip
        shutdowns[server] = await graceful_shutdown(proc, target)
        stack.stop(proc)
    stack.stop(paced_proc)
    results["shutdown"] = shutdowns


async def graceful_shutdown(proc: procs.Proc, target: Target) -> dict[str, Any]:
    """SIGTERM 0.5 s into 8 streams of 40 tokens at 20 tokens/s (~2 s each): how many
    finish with [DONE], how many are cut, how long the process takes to exit, its exit
    code, and whether a new request is still served during the drain."""
    body = target.body(stream=True, max_tokens=40)
    outcomes: list[str] = []

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(target.chat_url, data=body, headers=target.headers()) as r:
                text = await r.read()
                outcomes.append("done" if b"[DONE]" in text else f"cut ({r.status})")
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcomes.append(f"error {type(exc).__name__}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(8)]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        try:
            async with session.get(f"{target.base}/health") as health:
                during = f"health {health.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            during = f"health refused ({type(exc).__name__})"
        await asyncio.gather(*tasks)
        await asyncio.to_thread(proc.popen.wait, 15)
    return {
        "streams": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "exit_s": round(time.monotonic() - started, 2),
        "exit_code": proc.popen.poll(),
        "new_request_during_drain": during,
        "log_tail": proc.log_tail(5)[-600:],
    }


async def peer(
    name: str,
    plan: Any,
    stack: procs.Stack,
    workdir: Path,
    results: dict[str, Any],
    *,
    mock: Target,
    use_wrk: bool,
) -> None:
    """LiteLLM or Portkey's gateway through the same scenarios (300 sequential requests;
    throughput stops two levels past its peak, as LiteLLM's always has)."""
    print(f"[{name}] installing / checking ...", flush=True)
    install = services.install_litellm if name == "litellm" else services.install_portkey
    version, note = await asyncio.to_thread(install)
    results["meta"][name] = {"version": version, "note": note}
    if version is None:
        return
    try:
        if name == "litellm":
            proc, target = await services.start_litellm(stack, workdir, mock)
        else:
            proc, target = await services.start_portkey(stack, mock)
    except RuntimeError as exc:
        results["meta"][name]["note"] = f"did not start: {exc}"[:2000]
        return
    await measure(
        name, proc, target, mock, workdir, results,
        latency_count=plan.litellm_latency_count, levels=plan.levels,
        seconds=plan.level_seconds, use_wrk=use_wrk, stream_seconds=plan.stream_seconds,
        stop_when_saturated=True,
    )  # fmt: skip
    stack.stop(proc)


async def stalls(
    plan: Any,
    stack: procs.Stack,
    workdir: Path,
    out_dir: Path,
    results: dict[str, Any],
    *,
    mock: Target,
    backends: dict[str, str],
    use_wrk: bool,
) -> None:
    """The gateway with the loop-lag probe (bench/gateway_probe.py): sequential, then wrk at
    c=4-256; the probe's report after each; py-spy at c=4 and c=256."""
    out = results.setdefault("stalls", {})
    for name, url in backends.items():
        api_key = await asyncio.to_thread(services.provision, url)
        proc, target = await services.start_gateway(
            stack, name, database_url=url, mock=mock, api_key=api_key, probe=True
        )
        rows: dict[str, Any] = {}
        await _lag(target, reset=True)
        seq = await scenarios.added_latency(target, count=plan.latency_count // 2)
        rows["sequential"] = {
            "p50_ms": seq["non_streaming"]["p50_ms"],
            "p99_ms": seq["non_streaming"]["p99_ms"],
            "lag": await _lag(target, reset=True),
            "load_average": load_average(),
        }
        for level in STALL_LEVELS if use_wrk else ():
            row, cpu_us = await wrk_with_cpu(
                proc, target, workdir, level=level, seconds=plan.level_seconds,
                tag=f"{name}-lag-c{level}",
            )  # fmt: skip
            rows[f"c{level}"] = {
                "rps": round(row["rps"], 1),
                "p50_ms": row["p50_ms"],
                "p99_ms": row["p99_ms"],
                "cpu_us_per_request": round(cpu_us, 1),
                "lag": await _lag(target, reset=True),
                "load_average": load_average(),
            }
            print(f"  {name} c={level}: {rows[f'c{level}']['lag']['lag_ms']}", flush=True)
        if use_wrk and plan.profile_seconds:
            for level in (4, 256):
                prof = await scenarios.profile(
                    target, workdir, out_dir, pid=proc.pid, seconds=plan.profile_seconds,
                    suffix=f"{name}-c{level}", connections=level,
                )  # fmt: skip
                rows[f"profile_c{level}"] = {
                    k: prof.get(k)
                    for k in ("samples", "inclusive_pct", "threads_pct", "top_self_pct")
                }
        out[name] = rows
        stack.stop(proc)


async def wrk_with_cpu(
    proc: procs.Proc, target: Target, workdir: Path, *, level: int, seconds: float, tag: str
) -> tuple[dict[str, Any], float]:
    """One wrk run (load.run_wrk) and the CPU µs per request of the server's process tree."""
    before = procs.tree_cpu_seconds(proc.pid)
    row = await asyncio.to_thread(
        run_wrk, target, workdir, connections=level, seconds=seconds, tag=tag
    )
    cpu = procs.tree_cpu_seconds(proc.pid) - before
    return row, cpu / max(1, row["requests"]) * 1e6


async def _lag(target: Target, *, reset: bool) -> dict[str, Any]:
    url = f"{target.base}/_bench/lag" + ("?reset=1" if reset else "")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        data: dict[str, Any] = await response.json(content_type=None)
        return data


async def run_only(
    only: str,
    plan: Any,
    stack: procs.Stack,
    workdir: Path,
    out_dir: Path,
    results: dict[str, Any],
    mock: Target,
    use_wrk: bool,
) -> str | None:
    """`--only floors | peers | stalls` (bench/compare.py); the PostgreSQL URL to drop."""
    sqlite_url = f"sqlite:///{workdir / 'tollway.db'}"
    results["latency"]["direct"] = await scenarios.added_latency(mock, count=plan.latency_count)
    if only == "floors":
        await floors(
            plan, stack, workdir, results, mock=mock, use_wrk=use_wrk, sqlite_url=sqlite_url
        )
        return None
    if only == "stalls":
        pg_url = None if plan.smoke else await services.create_pg_database()
        backends = {"gateway-sqlite": sqlite_url}
        if pg_url is not None:
            backends["gateway-postgres"] = pg_url
        await stalls(
            plan, stack, workdir, out_dir, results, mock=mock, backends=backends, use_wrk=use_wrk
        )
        return pg_url
    measured: dict[str, Any] = {"latency_count": plan.latency_count, "levels": plan.levels}
    measured |= {"seconds": plan.level_seconds, "use_wrk": use_wrk}
    proc, target = await services.start_floor(stack, mock)
    await measure(
        "floor", proc, target, mock, workdir, results, **measured,
        stream_seconds=plan.stream_seconds,
    )  # fmt: skip
    stack.stop(proc)
    key = await asyncio.to_thread(services.provision, sqlite_url)
    proc, target = await services.start_gateway(
        stack, "gateway-sqlite", database_url=sqlite_url, mock=mock, api_key=key
    )
    await measure(
        "gateway-sqlite", proc, target, mock, workdir, results, **measured,
        stream_seconds=plan.stream_seconds,
    )  # fmt: skip
    stack.stop(proc)
    for name in ("litellm", "portkey"):
        await peer(name, plan, stack, workdir, results, mock=mock, use_wrk=use_wrk)
    return None
