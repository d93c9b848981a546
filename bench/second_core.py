"""Second core: the floor and the gateway (SQLite, PostgreSQL) with `--workers 2`, NOT pinned to
one core (`taskset -c 0,1`: the two workers share the machine's two cores with the mock, wrk and
the harness, which stay on CPU 1), loaded at the same concurrencies as the one-worker run.

Reports per concurrency and at the peak: requests/s with one worker (the one-worker run of the
same harness run, gateway on CPU 0) and with two, their ratio (the scaling factor), and each
gateway's two-worker rate as a ratio of the two-worker floor's. After each two-worker gateway
is loaded, GET /metrics (summed over both workers) must count what the load generator saw
completed, give or take the requests still in flight when each wrk run stopped: recorded as a
check, never a failure of the run.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import scenarios
import services
from load import run_python_load, run_wrk
from procs import BOTH_CPUS, CpuShare, Proc, Stack
from prometheus_client.parser import text_string_to_metric_families
from services import Target

WORKERS = 2
SUFFIX = "-2w"
CONDITIONS = (
    f"`--workers {WORKERS}` under `taskset -c {BOTH_CPUS}`: the workers may run on either core, "
    "and CPU 1 also carries the mock upstream, wrk and the harness (pinned there as in every "
    "scenario), so the second worker shares its core with the load; one worker = the "
    "one-worker run (CPU 0 only)"
)


@dataclass(frozen=True)
class Levels:
    """How each target is loaded: the one-worker run's concurrencies and seconds per level."""

    levels: list[int]
    seconds: float
    use_wrk: bool


@dataclass(frozen=True)
class Backend:
    """One provisioned gateway database: its name in the results, URL and inference key."""

    name: str  # "gateway-sqlite", "gateway-postgres"
    database_url: str
    api_key: str


async def _load(
    target: Target, workdir: Path, *, connections: int, seconds: float, use_wrk: bool, tag: str
) -> dict[str, Any]:
    if use_wrk:
        return await asyncio.to_thread(
            run_wrk, target, workdir, connections=connections, seconds=seconds, tag=tag
        )
    return await run_python_load(target, connections=connections, seconds=seconds)


async def _throughput(
    target: Target, workdir: Path, load: Levels
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows by concurrency, every load run including the warm-up) for the metrics check.
    The warm-up (1 s at c=8, so every worker has its caches filled) only with wrk: the smoke
    run skips it."""
    warmup = []
    if load.use_wrk:
        tag = f"{target.name}-warmup"
        warmup.append(await _load(target, workdir, connections=8, seconds=1, use_wrk=True, tag=tag))
    rows = await scenarios.throughput(
        target, workdir, levels=load.levels, seconds=load.seconds, use_wrk=load.use_wrk,
        stop_when_saturated=False,
    )  # fmt: skip
    return rows, [*warmup, *rows]


async def scrape_requests(target: Target, token: str) -> dict[str, float] | None:
    """tollway_requests_total of the chat endpoint by status, from GET /metrics; None when
    the scrape fails."""
    headers = {"authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(f"{target.base}/metrics", headers=headers) as resp:
                if resp.status != 200:
                    return None
                text = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    by_status: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tollway_requests_total":
                if sample.labels.get("endpoint") == "chat.completions":
                    status = sample.labels.get("status", "")
                    by_status[status] = by_status.get(status, 0.0) + sample.value
    return by_status


def metrics_check(runs: list[dict[str, Any]], by_status: dict[str, float] | None) -> dict[str, Any]:
    """Counter vs completed: every completed request is counted, and the counter may exceed
    them by at most what was in flight when a load run stopped (its connections) plus the
    requests that ended in a client-side error."""
    completed = sum(int(r["requests"]) for r in runs)
    errors = sum(int(r["errors"]) for r in runs)
    in_flight = sum(int(r["connections"]) for r in runs)
    if by_status is None:
        return {"completed": completed, "counter": None, "ok": False, "why": "scrape failed"}
    counter = int(sum(by_status.values()))
    difference = counter - completed
    return {
        "completed": completed,
        "client_errors": errors,
        "in_flight_bound": in_flight + errors,
        "counter": counter,
        "by_status": by_status,
        "difference": difference,
        "ok": 0 <= difference <= in_flight + errors,
    }


async def _two_workers(
    stack: Stack,
    workdir: Path,
    out: dict[str, Any],
    started: tuple[Proc, Target],
    *,
    name: str,
    load: Levels,
    token: str | None,
    mock_pid: int | None,
) -> None:
    proc, target = started
    print(f"[second core] {target.name}: throughput with {WORKERS} workers ...", flush=True)
    cpu = CpuShare(proc.pid, mock_pid)
    cpu.start()
    rows, runs = await _throughput(target, workdir, load)
    out["throughput"][name] = rows
    out["cpu"][name] = cpu.stop()
    if token is not None:
        await asyncio.sleep(1.0)  # let the requests in flight at wrk's stop finish
        check = metrics_check(runs, await scrape_requests(target, token))
        out["metrics_check"][name] = check
        print(f"  /metrics check: {check}", flush=True)
    stack.stop(proc)


async def _one_worker(
    stack: Stack,
    workdir: Path,
    out: dict[str, Any],
    started: tuple[Proc, Target],
    *,
    name: str,
    load: Levels,
    mock_pid: int | None,
) -> None:
    proc, target = started
    print(f"[second core] {name}: one-worker baseline ...", flush=True)
    cpu = CpuShare(proc.pid, mock_pid)
    cpu.start()
    out["one_worker"][name], _ = await _throughput(target, workdir, load)
    out["cpu_one_worker"][name] = cpu.stop()
    stack.stop(proc)


async def run(
    stack: Stack,
    workdir: Path,
    results: dict[str, Any],
    *,
    mock: Target,
    backends: list[Backend],
    load: Levels,
    floor: bool = True,
) -> None:
    """Two-worker runs of the floor and each backend into results["second_core"]; a one-worker
    run of the same, pinned like the main run, only where results["throughput"] lacks it
    (`--only second-core`). `floor=False` (the smoke run) leaves the floor out."""
    out: dict[str, Any] = {
        "workers": WORKERS,
        "conditions": CONDITIONS,
        "throughput": {},
        "one_worker": {},
        "cpu": {},
        "cpu_one_worker": {},
        "metrics_check": {},
    }
    results["second_core"] = out
    if floor:
        if "floor" not in results["throughput"]:
            started = await services.start_floor(stack, mock)
            await _one_worker(
                stack, workdir, out, started, name="floor", load=load, mock_pid=mock.pid
            )
        started = await services.start_floor(
            stack, mock, name="floor" + SUFFIX, workers=WORKERS, cpu=BOTH_CPUS
        )
        await _two_workers(
            stack, workdir, out, started, name="floor", token=None, load=load, mock_pid=mock.pid
        )
    for backend in backends:
        db, key = backend.database_url, backend.api_key
        if backend.name not in results["throughput"]:
            started = await services.start_gateway(
                stack, backend.name, database_url=db, mock=mock, api_key=key
            )
            await _one_worker(
                stack, workdir, out, started, name=backend.name, load=load, mock_pid=mock.pid
            )
        token = f"bench-metrics-{uuid.uuid4().hex}"
        started = await services.start_gateway(
            stack, backend.name + SUFFIX, database_url=db, mock=mock, api_key=key,
            workers=WORKERS, cpu=BOTH_CPUS, metrics_token=token,
        )  # fmt: skip
        await _two_workers(
            stack,
            workdir,
            out,
            started,
            name=backend.name,
            token=token,
            load=load,
            mock_pid=mock.pid,
        )
    out["summary"] = summarise(results)


def _rps_by_level(rows: list[dict[str, Any]]) -> dict[int, float]:
    return {int(r["connections"]): float(r["rps"]) for r in rows}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per target: 1 vs 2 workers by concurrency and at the peak, and (gateways) the
    two-worker rate over the two-worker floor's."""
    out = results["second_core"]
    floor_2w = _rps_by_level(out["throughput"].get("floor", []))
    floor_peak_2w = max(floor_2w.values(), default=0.0)
    summary: dict[str, Any] = {}
    for name, rows in out["throughput"].items():
        one_rows = results["throughput"].get(name) or out["one_worker"].get(name, [])
        one, two = _rps_by_level(one_rows), _rps_by_level(rows)
        levels = {
            level: {
                "rps_1w": one.get(level, math.nan),
                "rps_2w": rps,
                "scaling": _ratio(rps, one.get(level, 0.0)),
                "vs_floor_2w": _ratio(rps, floor_2w.get(level, 0.0)),
            }
            for level, rps in two.items()
        }
        peak_1w, peak_2w = max(one.values(), default=0.0), max(two.values(), default=0.0)
        summary[name] = {
            "one_worker_source": "same run" if name in results["throughput"] else "scenario",
            "by_connections": levels,
            "peak_1w": peak_1w,
            "peak_2w": peak_2w,
            "scaling_peak": _ratio(peak_2w, peak_1w),
            "peak_vs_floor_2w": _ratio(peak_2w, floor_peak_2w),
        }
    return summary


def _f(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> list[str]:
    """The "Second core" section of latest.md (empty when the scenario did not run)."""
    out = results.get("second_core")
    if not out or "summary" not in out:
        return []
    summary = out["summary"]
    names = list(summary)
    head = " | ".join(
        f"{n} 1w | {n} 2w | 2w/1w" + (" | / floor 2w" if n != "floor" else "") for n in names
    )
    lines = [
        "", "## Second core (`--workers 2`)", "",
        f"Conditions: {out['conditions']}. Requests/s (2xx) with one worker (1w) and two (2w), "
        "2w/1w = the scaling factor; / floor 2w = the gateway's two-worker rate over "
        "the two-worker floor's.", "",
        f"| concurrency | {head} |",
        "|---|" + "".join("---|---|---|" + ("---|" if n != "floor" else "") for n in names),
    ]  # fmt: skip
    levels = sorted({c for n in names for c in summary[n]["by_connections"]})
    for level in levels:
        cells = []
        for name in names:
            row = summary[name]["by_connections"].get(level)
            nan = {"rps_1w": math.nan, "rps_2w": math.nan, "scaling": math.nan}
            row = row or {**nan, "vs_floor_2w": math.nan}
            cells += [_f(row["rps_1w"], 0), _f(row["rps_2w"], 0), _f(row["scaling"])]
            if name != "floor":
                cells.append(_f(row["vs_floor_2w"], 3))
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    cells = []
    for name in names:
        s = summary[name]
        cells += [_f(s["peak_1w"], 0), _f(s["peak_2w"], 0), _f(s["scaling_peak"])]
        if name != "floor":
            cells.append(_f(s["peak_vs_floor_2w"], 3))
    lines.append("| peak | " + " | ".join(cells) + " |")
    lines += ["", "Checks (recorded, never failing the run):", ""]
    one_worker = {**results.get("cpu_throughput", {}), **out["cpu_one_worker"]}
    shares = [(n, "one", one_worker[n]) for n in names if n in one_worker]
    shares += [(n, "two", c) for n, c in out["cpu"].items()]
    for name, workers, cpu in shares:
        split = " + ".join(f"{c:.2f}" for c in cpu["worker_cores"])
        lines.append(
            f"- {name}, where the CPU went during its {workers}-worker run ({cpu['seconds']} s, "
            f"in cores): machine busy {cpu['machine_busy_cores']:.2f}; server {split}; mock "
            f"{cpu['mock_cores']:.2f}; wrk + harness {cpu['load_cores']:.2f}; PostgreSQL server "
            f"{cpu.get('postgres_cores', 0.0):.2f}; the rest (other work on the machine, "
            f"kernel) {cpu['other_cores']:.2f}"
        )
    for name, check in out["metrics_check"].items():
        if check["counter"] is None:
            lines.append(f"- {name}: /metrics {check['why']}")
            continue
        verdict = "ok" if check["ok"] else "MISMATCH"
        lines.append(
            f"- {name}, `tollway_requests_total` (chat, all statuses, summed over workers) = "
            f"{check['counter']:,} vs {check['completed']:,} completed by the load generator "
            f"({check['difference']:+,}; allowed 0 … +{check['in_flight_bound']:,} in flight "
            f"at the stops or client errors): {verdict}"
        )
    return lines
