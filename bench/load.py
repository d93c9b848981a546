"""Load generators: wrk with a Lua script for throughput (pinned to the load core), and an
async aiohttp client (keep-alive) for sequential latency, TTFT and the no-wrk fallback."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from procs import LOAD_CPU, pinned
from services import Target

TIMEOUT = aiohttp.ClientTimeout(total=60)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "mean_ms": sum(values) / len(values) if values else float("nan"),
    }


@dataclass
class Outcome:
    """What one request did: total latency, time to first chunk, chunks, success."""

    ok: bool
    total_ms: float
    ttft_ms: float = 0.0
    chunks: int = 0


async def one_request(
    session: aiohttp.ClientSession, target: Target, body: bytes, *, stream: bool
) -> Outcome:
    started = time.perf_counter()
    try:
        async with session.post(target.chat_url, data=body, headers=target.headers()) as resp:
            if not stream:
                await resp.read()
                elapsed = (time.perf_counter() - started) * 1000
                return Outcome(resp.status == 200, elapsed, elapsed, 1)
            ttft = 0.0
            chunks = 0
            done = False
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                if chunks == 0:
                    ttft = (time.perf_counter() - started) * 1000
                if line.strip() == b"data: [DONE]":
                    done = True
                chunks += 1
            ok = resp.status == 200 and done
            return Outcome(ok, (time.perf_counter() - started) * 1000, ttft, chunks)
    except (aiohttp.ClientError, TimeoutError):
        return Outcome(False, (time.perf_counter() - started) * 1000)


async def sequential(
    target: Target, *, count: int, stream: bool, warmup: int = 20
) -> list[Outcome]:
    """`count` requests one after another on one keep-alive connection."""
    body = target.body(stream=stream)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        for _ in range(warmup):
            await one_request(session, target, body, stream=stream)
        return [await one_request(session, target, body, stream=stream) for _ in range(count)]


@dataclass
class Concurrent:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def stats(self) -> dict[str, Any]:
        ok = [o for o in self.outcomes if o.ok]
        return {
            "requests": len(self.outcomes),
            "errors": len(self.outcomes) - len(ok),
            "seconds": round(self.seconds, 3),
            "rps": len(ok) / self.seconds if self.seconds else 0.0,
            "chunks_per_s": sum(o.chunks for o in ok) / self.seconds if self.seconds else 0.0,
            "latency": summary_ms([o.total_ms for o in ok]),
            "ttft": summary_ms([o.ttft_ms for o in ok]),
        }


async def concurrent(
    target: Target, *, connections: int, seconds: float, stream: bool, max_requests: int = 0
) -> Concurrent:
    """`connections` workers, each looping requests until the deadline (or the count)."""
    body = target.body(stream=stream)
    result = Concurrent()
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            if max_requests and len(result.outcomes) >= max_requests:
                return
            result.outcomes.append(await one_request(session, target, body, stream=stream))

    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        result.seconds = time.perf_counter() - started
    return result


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local f = io.open("{out}", "w")
  local e = summary.errors
  f:write(string.format(
    '{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
  f:close()
end
"""


def wrk_script(target: Target, workdir: Path, *, stream: bool, tag: str) -> Path:
    out = workdir / f"wrk-{tag}.json"
    auth = f'wrk.headers["Authorization"] = "Bearer {target.api_key}"' if target.api_key else ""
    for name, value in target.extra_headers:
        auth += f'\nwrk.headers["{name}"] = "{value}"'
    script = _LUA.format(
        body=target.body(stream=stream).decode(),
        auth=auth,
        out=out,
    )
    path = workdir / f"wrk-{tag}.lua"
    path.write_text(script)
    return path


def run_wrk(
    target: Target,
    workdir: Path,
    *,
    connections: int,
    seconds: float,
    stream: bool = False,
    tag: str = "run",
) -> dict[str, Any]:
    """One wrk run (one thread, pinned to the load core); requests/s counts 2xx only."""
    script = wrk_script(target, workdir, stream=stream, tag=tag)
    out = workdir / f"wrk-{tag}.json"
    out.unlink(missing_ok=True)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    argv += ["-s", str(script), target.chat_url]
    subprocess.run(pinned(LOAD_CPU, argv), capture_output=True, timeout=seconds + 60, check=False)
    raw = json.loads(out.read_text())
    duration = raw["duration_us"] / 1e6
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    ok = max(0, raw["requests"] - raw["status"])
    return {
        "connections": connections,
        "requests": raw["requests"],
        "errors": errors,
        "seconds": round(duration, 3),
        "rps": ok / duration if duration else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "tool": "wrk",
    }


async def run_python_load(
    target: Target, *, connections: int, seconds: float, stream: bool = False
) -> dict[str, Any]:
    """The same shape as `run_wrk`, from the aiohttp client (used when wrk is missing)."""
    run = await concurrent(target, connections=connections, seconds=seconds, stream=stream)
    stats = run.stats()
    return {
        "connections": connections,
        "requests": stats["requests"],
        "errors": stats["errors"],
        "seconds": stats["seconds"],
        "rps": stats["rps"],
        "p50_ms": stats["latency"]["p50_ms"],
        "p90_ms": stats["latency"]["p90_ms"],
        "p99_ms": stats["latency"]["p99_ms"],
        "max_ms": percentile([o.total_ms for o in run.outcomes if o.ok], 100),
        "tool": "python",
    }
