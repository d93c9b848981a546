"""Tollway's gateway with bench-only instruments, or under another HTTP server.

    python bench/gateway_probe.py --port P [--server uvicorn|granian] [--probe]

Serves `tollway.app:create_app_from_env` (the app `tollway serve` runs, configured from the
same TOLLWAY_* environment; the schema must exist: the harness provisions through the CLI
first) under uvicorn with `tollway serve`'s settings (uvloop accepting in batches,
httptools) or under granian (ASGI, uvloop, HTTP/1). With `--probe` the app is wrapped in `LagProbe`:

- a task on the event loop sleeps 1 ms at a time and records how late it wakes (loop lag);
- a watchdog thread looks at that task's heartbeat every 2 ms and, when the loop has not
  come round for `STALL_MS`, records the loop thread's Python stack (where it was stuck),
  and which other threads were running Python then;
- `gc.callbacks` time every collection, by generation (the loop thread's CPU time);
- `GET /_bench/lag` answers all of it as JSON (`?reset=1` clears it).

None of this is in the product: it exists to find what stalls the loop under load
(bench/README.md, "What stalls the loop").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TICK_S = 0.001
STALL_MS = 5.0
WATCH_S = 0.002
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 1000)
ENV_PROBE = "BENCH_LAG_PROBE"
ENV_GC_THRESHOLD = "BENCH_GC_THRESHOLD"


def _where(frame: Any, depth: int = 6) -> str:
    """The innermost `depth` frames of a stack, as `file:function` from the inside out."""
    parts = []
    for entry in reversed(traceback.extract_stack(frame)[-depth:]):
        path = entry.filename
        short = path.split("site-packages/")[-1].split("src/")[-1]
        parts.append(f"{short}:{entry.name}")
    return " < ".join(parts)


class LagProbe:
    """Wraps an ASGI app; measures its event loop (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lags_ms: list[float] = []
        self.stalls: Counter[str] = Counter()
        self.others: Counter[str] = Counter()
        self.gc_ms: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_started = 0.0
        self._beat = time.perf_counter()
        self._loop_thread = 0
        self._since = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # CPU time of this thread, not wall time: on a shared machine a collection's wall
        # time includes the moments the OS ran someone else.
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.gc_ms[info["generation"]].append((time.thread_time() - self._gc_started) * 1e3)

    async def _tick(self) -> None:
        self._loop_thread = threading.get_ident()
        while True:
            started = time.perf_counter()
            self._beat = started
            await asyncio.sleep(TICK_S)
            self.lags_ms.append((time.perf_counter() - started - TICK_S) * 1e3)

    def _watch(self) -> None:
        seen = 0.0
        while True:
            time.sleep(WATCH_S)
            beat = self._beat
            if beat == seen or (time.perf_counter() - beat) * 1e3 < STALL_MS:
                continue
            seen = beat  # one sample per stall
            frames = sys._current_frames()
            loop_frame = frames.get(self._loop_thread)
            if loop_frame is not None:
                self.stalls[_where(loop_frame)] += 1
            for ident, frame in frames.items():
                if ident not in (self._loop_thread, threading.get_ident()):
                    self.others[_where(frame, 3)] += 1

    def reset(self) -> None:
        self.lags_ms.clear()
        self.stalls.clear()
        self.others.clear()
        for values in self.gc_ms.values():
            values.clear()
        self._since = time.monotonic()

    def report(self) -> dict[str, Any]:
        lags = sorted(self.lags_ms)

        def pct(q: float) -> float:
            return round(lags[min(len(lags) - 1, int(q * len(lags)))], 3) if lags else 0.0

        return {
            "seconds": round(time.monotonic() - self._since, 2),
            "ticks": len(lags),
            "lag_ms": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "max": pct(1)},
            "lag_over_ms": {str(b): sum(v > b for v in lags) for b in BUCKETS_MS},
            "lag_total_ms_over_5": round(sum(v for v in lags if v > STALL_MS), 1),
            "gc_threshold": gc.get_threshold(),
            "gc": {
                str(gen): {"n": len(v), "total_ms": round(sum(v), 2), "max_ms": round(max(v), 2)}
                for gen, v in self.gc_ms.items()
                if v
            },
            "stalls_loop_stack": self.stalls.most_common(15),
            "stalls_other_threads": self.others.most_common(10),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick())
            threading.Thread(target=self._watch, name="lag-watchdog", daemon=True).start()
            await self.app(scope, receive, partial(_after_startup, send))
            return
        if scope["type"] == "http" and scope["path"] == "/_bench/lag":
            body = orjson.dumps(self.report())  # what was measured since the last reset
            if b"reset=1" in scope.get("query_string", b""):
                self.reset()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


async def _after_startup(send: Send, message: Message) -> None:
    """Once the app has started (its lifespan set the collector up): an experiment's
    collector thresholds, "g0,g1,g2" in BENCH_GC_THRESHOLD (bench/ab_stalls.py)."""
    threshold = os.environ.get(ENV_GC_THRESHOLD)
    if message["type"] == "lifespan.startup.complete" and threshold:
        gc.set_threshold(*(int(t) for t in threshold.split(",")))
    await send(message)


def create_app_from_env() -> ASGIApp:
    from tollway.app import create_app_from_env as tollway_app

    app: ASGIApp = tollway_app()
    return LagProbe(app) if os.environ.get(ENV_PROBE) == "1" else app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument("--probe", action="store_true", help="loop-lag probe, GET /_bench/lag")
    args = parser.parse_args()
    os.environ[ENV_PROBE] = "1" if args.probe else "0"
    here = os.path.dirname(os.path.abspath(__file__))
    if args.server == "granian":
        from pathlib import Path

        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.log import LogLevels

        Granian(
            "gateway_probe:create_app_from_env",
            address=args.host,
            port=args.port,
            interface=Interfaces.ASGI,
            loop=Loops.uvloop,
            http=HTTPModes.http1,
            websockets=False,
            backlog=2048,
            log_level=LogLevels.warning,
            factory=True,
            working_dir=Path(here),
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        "gateway_probe:create_app_from_env",
        factory=True,
        app_dir=here,
        host=args.host,
        port=args.port,
        loop="tollway.http.accept:new_event_loop",  # `tollway serve`'s (http/accept.py)
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
