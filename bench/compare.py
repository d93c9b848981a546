"""The comparison scenarios of bench/run.py: `--only floors` (the floor's HTTP server and
upstream client, and the gateway under each server), `--only peers` (Tollway beside LiteLLM
and Portkey's gateway) and `--only stalls` (the gateway's event-loop lag and what stalls it,
c=4-256, SQLite and PostgreSQL); Portkey also runs in the full run. Tables: `markdown`.

Every measured server gets "CPU µs per request": its process's CPU seconds over the whole
throughput run ÷ the requests it completed. Unlike req/s it hardly depends on what else the
shared machine runs, so it is the figure to compare across runs.
"""

from __future__ import annotations

import asyncio
import math
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
            cpu_before = procs.tree_cpu_seconds(proc.pid)
            row = await asyncio.to_thread(
                run_wrk, target, workdir, connections=level, seconds=plan.level_seconds,
                tag=f"{name}-lag-c{level}",
            )  # fmt: skip
            cpu = procs.tree_cpu_seconds(proc.pid) - cpu_before
            rows[f"c{level}"] = {
                "rps": round(row["rps"], 1),
                "p50_ms": row["p50_ms"],
                "p99_ms": row["p99_ms"],
                "cpu_us_per_request": round(cpu / max(1, row["requests"]) * 1e6, 1),
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
                    k: prof.get(k) for k in ("samples", "inclusive_pct", "top_self_pct")
                }
        out[name] = rows
        stack.stop(proc)


async def _lag(target: Target, *, reset: bool) -> dict[str, Any]:
    url = f"{target.base}/_bench/lag" + ("?reset=1" if reset else "")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        data: dict[str, Any] = await response.json(content_type=None)
        return data


def _f(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _peak(rows: list[dict[str, Any]]) -> float:
    return max((r["rps"] for r in rows), default=0.0)


def step_three_goals(results: dict[str, Any]) -> list[str]:
    """The done-when of performance step three, for each gateway against the floor and the
    peers of the same run (none asserted)."""
    tp, over = results["throughput"], results["overhead"]
    floor_rows = {r["connections"]: r for r in tp.get("floor", [])}
    if not floor_rows:
        return []
    out = ["", "## Step three's goals (ratios to the floor of this run)", ""]
    out += ["| gateway | goal | measured | met |", "|---|---|---|---|"]
    floor_over = over.get("floor", {}).get("non_streaming", {})
    floor_ttft = results["streaming"].get("floor", {}).get("ttft", {}).get("p99_ms")
    for name in [n for n in tp if n.startswith("gateway") and n in over]:
        rows, ns = tp[name], over[name]["non_streaming"]
        ratio = _peak(rows) / max(1e-9, _peak(list(floor_rows.values())))
        out.append(f"| {name} | peak ≥ 0.6x the floor | {ratio:.2f}x | {_yes(ratio >= 0.6)} |")
        beyond = ns["p50_ms"] - floor_over.get("p50_ms", math.nan)
        out.append(
            f"| {name} | added p50 ≤ floor's + 0.3 ms | +{_f(beyond)} ms | {_yes(beyond <= 0.3)} |"
        )
        out.append(
            f"| {name} | added p99 ≤ 2 ms | {_f(ns['p99_ms'])} ms | {_yes(ns['p99_ms'] <= 2)} |"
        )
        p99s = [
            r["p99_ms"] / floor_rows[r["connections"]]["p99_ms"]
            for r in rows
            if r["connections"] in floor_rows and floor_rows[r["connections"]]["p99_ms"]
        ]
        worst = max(p99s, default=math.nan)
        out.append(
            f"| {name} | p99 ≤ 2x the floor's at every concurrency | worst {_f(worst)}x "
            f"({', '.join(_f(p, 1) for p in p99s)}) | {_yes(worst <= 2)} |"
        )
        ttft = results["streaming"].get(name, {}).get("ttft", {}).get("p99_ms")
        if ttft and floor_ttft:
            out.append(
                f"| {name} | 256 streams TTFT p99 ≤ 2x the floor's | {ttft / floor_ttft:.2f}x "
                f"| {_yes(ttft <= 2 * floor_ttft)} |"
            )
        for peer in ("portkey", "litellm"):
            if not tp.get(peer) or peer not in over:
                continue
            cpu = results.get("cpu_per_request_us", {})
            peer_ns = over[peer]["non_streaming"]
            ahead = (
                _peak(rows) > _peak(tp[peer])
                and ns["p50_ms"] < peer_ns["p50_ms"]
                and ns["p99_ms"] < peer_ns["p99_ms"]
            )
            out.append(
                f"| {name} | ahead of {peer} (req/s, added p50, p99) | {_peak(rows):.0f} vs "
                f"{_peak(tp[peer]):.0f} req/s, {_f(ns['p50_ms'])} vs {_f(peer_ns['p50_ms'])}, "
                f"{_f(ns['p99_ms'])} vs {_f(peer_ns['p99_ms'])} ms"
                + (
                    f"; CPU {cpu[name]:.0f} vs {cpu[peer]:.0f} µs/req"
                    if name in cpu and peer in cpu
                    else ""
                )
                + f" | {_yes(ahead)} |"
            )
    return out


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def markdown(results: dict[str, Any]) -> list[str]:
    """CPU per request of every server measured, peers, shut-down checks, loop lag."""
    out: list[str] = step_three_goals(results)
    cpu = results.get("cpu_per_request_us", {})
    if cpu:
        out += ["", "## CPU per request (server process CPU s / requests, whole throughput run)"]
        out += ["", "| server | CPU µs / request | peak req/s | load average at its start |"]
        out += ["|---|---|---|---|"]
        for name, us in cpu.items():
            peak = _peak(results["throughput"].get(name, []))
            load = results.get("load_average", {}).get(name, "-")
            out.append(f"| {name} | {us:.0f} | {peak:.0f} | {load} |")
    peers = [n for n in ("litellm", "portkey") if results["throughput"].get(n)]
    gateways = [n for n in results["throughput"] if n.startswith("gateway")]
    if peers and gateways:
        out += ["", "## Tollway against its peers (same run, same mock, same core)", ""]
        out += ["| gateway | peer | peak req/s (ratio) | added p50 ms | added p99 ms |"]
        out += ["|---|---|---|---|---|"]
        over = results["overhead"]
        for gateway in gateways:
            for name in peers:
                ratio = _peak(results["throughput"][gateway]) / max(
                    1e-9, _peak(results["throughput"][name])
                )
                p50 = [
                    over.get(n, {}).get("non_streaming", {}).get("p50_ms") for n in (gateway, name)
                ]
                p99 = [
                    over.get(n, {}).get("non_streaming", {}).get("p99_ms") for n in (gateway, name)
                ]
                out.append(
                    f"| {gateway} | {name} | {_peak(results['throughput'][gateway]):.0f} vs "
                    f"{_peak(results['throughput'][name]):.0f} ({ratio:.1f}x) "
                    f"| {_f(p50[0])} vs {_f(p50[1])} | {_f(p99[0])} vs {_f(p99[1])} |"
                )
    for server, check in results.get("shutdown", {}).items():
        out.append(
            f"- SIGTERM with 8 streams in flight, gateway under {server}: streams "
            f"{check['streams']}, exited after {check['exit_s']} s with code {check['exit_code']}"
            f"; a new request 0.2 s after the signal: {check['new_request_during_drain']}."
        )
    for name, rows in results.get("stalls", {}).items():
        out += ["", f"## Event-loop lag: {name} (bench/gateway_probe.py, 1 ms ticks)", ""]
        out += ["| load | req/s | p99 ms | CPU µs/req | lag p50 | p99 | p99.9 | max "
                "| ticks late > 5 ms / > 20 ms | gc gen2 n, total ms | load avg |"]  # fmt: skip
        out += ["|---|---|---|---|---|---|---|---|---|---|---|"]
        for level, row in rows.items():
            if "lag" not in row:
                continue
            lag = row["lag"]
            gen2 = lag["gc"].get("2", {})
            out.append(
                f"| {level} | {row.get('rps', '-')} | {_f(row['p99_ms'])} "
                f"| {row.get('cpu_us_per_request', '-')} | {lag['lag_ms']['p50']} "
                f"| {lag['lag_ms']['p99']} | {lag['lag_ms']['p999']} | {lag['lag_ms']['max']} "
                f"| {lag['lag_over_ms']['5']} / {lag['lag_over_ms']['20']} "
                f"| {gen2.get('n', 0)}, {gen2.get('total_ms', 0)} | {row['load_average']} |"
            )
        worst = rows.get("c256", {}).get("lag", {})
        if worst.get("stalls_loop_stack"):
            out += ["", "Where the loop thread was when it stalled > 5 ms (c=256, samples):", ""]
            out += [f"- {n}x `{where}`" for where, n in worst["stalls_loop_stack"][:8]]
            out += ["", "Other threads running Python then:", ""]
            out += [f"- {n}x `{where}`" for where, n in worst["stalls_other_threads"][:5]]
    return out
