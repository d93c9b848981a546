"""The scenarios: added latency, throughput by concurrency, streaming, memory, profile.
Each returns plain dicts that report.py renders; none asserts on speed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from load import concurrent, run_python_load, run_wrk, sequential, summary_ms
from procs import RssSampler
from services import Target

SATURATION_GAIN = 1.10  # a level that does not beat the best so far by 10% is "no gain"


async def added_latency(target: Target, *, count: int) -> dict[str, Any]:
    """Sequential requests on one connection: total latency, and streaming TTFT."""
    plain = await sequential(target, count=count, stream=False)
    streamed = await sequential(target, count=count, stream=True)
    return {
        "errors": sum(not o.ok for o in plain + streamed),
        "non_streaming": summary_ms([o.total_ms for o in plain if o.ok]),
        "streaming_ttft": summary_ms([o.ttft_ms for o in streamed if o.ok]),
        "streaming_total": summary_ms([o.total_ms for o in streamed if o.ok]),
    }


def overhead(latency: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("non_streaming", "streaming_ttft"):
        out[kind] = {
            key: latency[kind][key] - direct[kind][key]
            for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
        }
    return out


async def throughput(
    target: Target,
    workdir: Path,
    *,
    levels: list[int],
    seconds: float,
    use_wrk: bool,
    stop_when_saturated: bool,
) -> list[dict[str, Any]]:
    """Requests/s and p99 at rising concurrency; optionally stop two levels past the peak."""
    results: list[dict[str, Any]] = []
    best = 0.0
    no_gain = 0
    for level in levels:
        if use_wrk:
            tag = f"{target.name}-c{level}"
            row = await asyncio.to_thread(
                run_wrk, target, workdir, connections=level, seconds=seconds, tag=tag
            )
        else:
            row = await run_python_load(target, connections=level, seconds=seconds)
        results.append(row)
        print(
            f"  {target.name:<14} c={level:<4} {row['rps']:9.1f} req/s  "
            f"p99 {row['p99_ms']:8.2f} ms  errors {row['errors']}",
            flush=True,
        )
        no_gain = no_gain + 1 if row["rps"] < best * SATURATION_GAIN else 0
        best = max(best, row["rps"])
        if stop_when_saturated and no_gain >= 2:
            break
    return results


async def streaming(target: Target, *, connections: int, seconds: float) -> dict[str, Any]:
    """Hundreds of concurrent streams: chunks/s relayed, TTFT under load."""
    run = await concurrent(target, connections=connections, seconds=seconds, stream=True)
    return {"connections": connections, **run.stats()}


async def _open_streams(session: aiohttp.ClientSession, mock: Target) -> int:
    try:
        async with session.get(f"{mock.base}/_mock/stats") as resp:
            return int((await resp.json())["open_streams"])
    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
        return -1


async def many_streams(
    target: Target,
    mock: Target,
    workdir: Path,
    *,
    pid: int,
    connections: int,
    seconds: float,
    use_wrk: bool,
) -> dict[str, Any]:
    """RSS of the gateway while `connections` paced streams are open at once; the mock's
    own counter proves how many upstream streams the gateway held open."""
    sampler = RssSampler(pid, interval_s=0.5)
    sampler.start()
    open_counts: list[int] = []
    deadline = time.monotonic() + seconds + 5

    async def watch() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while time.monotonic() < deadline:
                open_counts.append(await _open_streams(session, mock))
                await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    if use_wrk:
        load = await asyncio.to_thread(
            run_wrk,
            target,
            workdir,
            connections=connections,
            seconds=seconds,
            stream=True,
            tag="streams",
        )
    else:
        load = await run_python_load(target, connections=connections, seconds=seconds, stream=True)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    samples = await sampler.stop()
    rss = [mib for _, mib in samples]
    return {
        "connections": connections,
        "load": load,
        "max_open_upstream_streams": max(open_counts, default=-1),
        "rss_start_mib": rss[0],
        "rss_peak_mib": max(rss),
        "rss_end_mib": rss[-1],
        "rss_samples": [(round(t, 2), round(m, 1)) for t, m in samples],
    }


async def leak_run(
    target: Target,
    workdir: Path,
    *,
    pid: int,
    total: int,
    max_seconds: float,
    connections: int,
    use_wrk: bool,
) -> dict[str, Any]:
    """`total` requests (or as many as `max_seconds` allow) while RSS is sampled: flat = no
    leak. The time bound keeps a slow gateway from stretching the run."""
    sampler = RssSampler(pid, interval_s=1.0)
    sampler.start()
    started = time.perf_counter()
    if use_wrk:
        # wrk runs for its whole -d even once a Lua count is reached: run 10 s slices until
        # the count or the time bound, whichever comes first.
        load = {"requests": 0, "errors": 0, "rps": 0.0}
        while load["requests"] < total and time.perf_counter() - started < max_seconds:
            part = await asyncio.to_thread(
                run_wrk, target, workdir, connections=connections, seconds=10, tag="leak"
            )
            load["requests"] += part["requests"]
            load["errors"] += part["errors"]
        load["rps"] = load["requests"] / (time.perf_counter() - started)
    else:
        run = await concurrent(
            target, connections=connections, seconds=max_seconds, stream=False, max_requests=total
        )
        stats = run.stats()
        load = {"requests": stats["requests"], "errors": stats["errors"], "rps": stats["rps"]}
    elapsed = time.perf_counter() - started
    samples = await sampler.stop()
    rss = [mib for _, mib in samples]
    tenth = max(1, len(rss) // 10)
    first, last = rss[:tenth], rss[-tenth:]
    return {
        "requests": load["requests"],
        "errors": load["errors"],
        "seconds": round(elapsed, 1),
        "rps": load["rps"],
        "rss_start_mib": rss[0],
        "rss_first_tenth_mib": sum(first) / len(first),
        "rss_last_tenth_mib": sum(last) / len(last),
        "rss_growth_mib": sum(last) / len(last) - sum(first) / len(first),
        "rss_samples": [(round(t, 2), round(m, 1)) for t, m in samples],
    }


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


async def profile(
    target: Target,
    workdir: Path,
    out_dir: Path,
    *,
    pid: int,
    seconds: float,
    suffix: str,
    connections: int = 64,
) -> dict[str, Any]:
    """py-spy on the gateway under wrk load (c=64): a flame graph and collapsed stacks."""
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy not installed"}
    result: dict[str, Any] = {}
    collapsed = out_dir / f"profile-{suffix}.collapsed.txt"
    for fmt, name in (("raw", collapsed.name), ("flamegraph", f"profile-{suffix}.svg")):
        out = out_dir / name
        argv = [spy, "record", "--pid", str(pid), "--duration", str(round(seconds))]
        # Blocking (the process paused for each sample): `--nonblocking` reads the stacks
        # while they change, and under this load it gave impossible ones (a function shown
        # inside one it never calls). `--threads`: the summary tells the event loop's
        # thread from the SQLite writer's.
        argv += ["--rate", "200", "--threads", "--format", fmt, "--output", str(out)]
        spy_proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await asyncio.sleep(0.5)
        load = await asyncio.to_thread(
            run_wrk, target, workdir, connections=connections, seconds=seconds, tag=f"p-{fmt}"
        )
        await asyncio.wait_for(spy_proc.wait(), timeout=seconds + 30)
        result[f"{fmt}_rps"] = load["rps"]
        result[f"{fmt}_file"] = name
    if collapsed.exists():
        result.update(summarise_profile(collapsed.read_text()))
    return result


# The request's stages on the event loop's thread: a sample counts in the innermost stage
# its stack is in (they do not nest), else in the first fallback that matches.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("authenticate, read and parse the body", "http/fastpath.py", "_begin"),
    ("authenticate, read and parse the body", "gateway/request.py", ""),
    ("authenticate, read and parse the body", "tollway/jsonbody.py", ""),
    ("plan: policy, candidates, ranking", "gateway/pipeline.py", "Gateway._plan"),
    ("admit and reserve", "gateway/pipeline.py", "Gateway._admit_and_reserve"),
    ("the upstream call (pyreqwest)", "providers/upstream.py", ""),
    ("the upstream call (pyreqwest)", "gateway/observed.py", "Attempt.of"),
    ("the upstream call (pyreqwest)", "gateway/observed.py", "Attempt.__exit__"),
    ("settle: charge, health, metrics", "gateway/settlement.py", ""),
    ("stream relay", "gateway/streaming.py", ""),
    ("send the answer", "http/fastpath.py", "_send_json"),
    ("the record, log line and request log row", "http/exchange.py", "finish"),
    ("the HTTP server (uvicorn, httptools)", "tollway/http/server.py", ""),  # its protocol
)
# Else: the innermost frame of one of these (the command line's frames are every stack's).
FALLBACKS: tuple[tuple[str, str], ...] = (
    ("the request log's flush, lease group commits (on the loop)", "observe/writer.py"),
    ("the request log's flush, lease group commits (on the loop)", "billing/lease"),
    ("the rest of Tollway's request path (edge, pipeline)", "tollway/http/"),
    ("the rest of Tollway's request path (edge, pipeline)", "tollway/gateway/"),
    ("FastAPI and Starlette's layers", "starlette/"),
    ("FastAPI and Starlette's layers", "fastapi/"),
    ("the HTTP server (uvicorn, httptools)", "uvicorn/"),
)
# Threads py-spy counts as running while they wait for work (by their leaf frame).
IDLE_LEAVES = ("_connection_worker_thread", "_worker")


def _frame_parts(frame: str) -> tuple[str, str]:
    func, _, rest = frame.partition(" (")
    return func.strip(), rest.rstrip(")")


def _stage_of(frames: list[tuple[str, str]]) -> str:
    for fn, loc in reversed(frames):
        for label, path, func in STAGES:
            if path in loc and (not func or fn == func):
                return label
    for _, loc in reversed(frames):
        for label, path in FALLBACKS:
            if path in loc:
                return label
    return "the event loop itself, and the rest"


def summarise_profile(text: str, top: int = 25) -> dict[str, Any]:
    """Where the event loop's thread spent its samples, stage by stage (`inclusive_pct`,
    summing to 100), each thread's share of the samples that did work (`threads_pct`), and
    the event loop thread's top self-time functions (py-spy `--threads` raw output)."""
    main = 0
    threads: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        if parts[0].startswith("process "):  # with --subprocesses
            parts = parts[1:]
        if len(parts) < 2 or not parts[0].startswith("thread ("):
            continue
        frames = [_frame_parts(f) for f in parts[1:]]
        if frames[-1][0] in IDLE_LEAVES:
            continue
        thread = parts[0].partition("): ")[2]
        threads[thread.rstrip("_0123456789") or "unnamed"] += count
        if thread != "MainThread":
            continue
        main += count
        stages[_stage_of(frames)] += count
        leaf_func, leaf_loc = frames[-1]
        self_time[f"{leaf_func} ({leaf_loc.split('site-packages/')[-1]})"] += count
    if not main:
        return {"samples": 0}
    busy = sum(threads.values())
    return {
        "samples": main,
        "inclusive_pct": {k: round(100 * v / main, 1) for k, v in stages.most_common()},
        "threads_pct": {k: round(100 * v / busy, 1) for k, v in threads.most_common()},
        "top_self_pct": [
            (name, round(100 * count / main, 1)) for name, count in self_time.most_common(top)
        ],
    }
