"""What `POST /v1/responses` adds to `POST /v1/chat/completions` on the same gateway and mock:
the translation of the request, of the answer, and of every stream chunk into events.

    .venv/bin/python bench/responses_latency.py [-n 400] [--warmup 50]

One mock (`tollway mock-provider`, no delay, 16-token replies) and one gateway (`tollway serve
--workers 1`, SQLite, the demo registry pointed at the mock, pinned as in `run.py`); the
same question asked both ways, sequentially on one keep-alive connection each, chat and
Responses requests interleaved so that load from elsewhere on the machine falls on both alike.
Non-stream: the whole answer's latency. Stream: the time to the first text (chat's first
content chunk; Responses' first `response.output_text.delta`, which follows the
`response.created` and `response.in_progress` events sent for the same upstream chunk) and
to the end. Prints p50 / p90 per variant and the differences of the p50s; then, in process
and without I/O (steadier on a loaded machine), the CPU time the translation itself takes:
request parsing against `parse_chat` of the same question, the answer, and a 16-token
stream. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import procs  # noqa: E402
import services  # noqa: E402
from load import TIMEOUT, percentile  # noqa: E402

from tollway.dialects.responses.request import parse_responses  # noqa: E402
from tollway.dialects.responses.response import to_response  # noqa: E402
from tollway.dialects.responses.stream import ResponsesEvents  # noqa: E402
from tollway.gateway.request import parse_chat  # noqa: E402
from tollway.providers.mock_choices import StreamFrames, build_answer  # noqa: E402

QUESTION = "Say hello to the benchmark."


def bodies(model: str) -> dict[tuple[str, bool], bytes]:
    chat = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16}
    responses = {"model": model, "input": QUESTION, "max_output_tokens": 16}
    out: dict[tuple[str, bool], bytes] = {}
    for stream in (False, True):
        extra = {"stream": True} if stream else {}
        out["chat", stream] = json.dumps({**chat, **extra}).encode()
        out["responses", stream] = json.dumps({**responses, **extra}).encode()
    return out


async def timed(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool
) -> tuple[float, float]:
    """(ms to the first text, ms to the end); the first is the whole latency when not
    streaming."""
    started = time.perf_counter()
    first = 0.0
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {await response.text()}")
        if not stream:
            await response.read()
            elapsed = (time.perf_counter() - started) * 1000
            return elapsed, elapsed
        async for line in response.content:
            if first == 0.0 and (b'"content":"' in line or b"output_text.delta" in line):
                first = (time.perf_counter() - started) * 1000
    return first, (time.perf_counter() - started) * 1000


async def measure(target: services.Target, count: int, warmup: int) -> dict[str, list[float]]:
    urls = {"chat": target.chat_url, "responses": f"{target.base}/v1/responses"}
    payloads = bodies(target.model)
    samples: dict[str, list[float]] = {}
    sessions = {
        kind: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=TIMEOUT)
        for kind in urls
    }
    try:
        for stream in (False, True):
            for i in range(warmup + count):
                for kind in ("chat", "responses"):
                    body = payloads[kind, stream]
                    first, total = await timed(
                        sessions[kind], urls[kind], body, target.headers(), stream
                    )
                    if i < warmup:
                        continue
                    if stream:
                        samples.setdefault(f"{kind} stream ttft", []).append(first)
                        samples.setdefault(f"{kind} stream total", []).append(total)
                    else:
                        samples.setdefault(f"{kind} non-stream", []).append(total)
    finally:
        for session in sessions.values():
            await session.close()
    return samples


def report(samples: dict[str, list[float]]) -> None:
    print(f"{'variant':28} {'n':>5} {'p50 ms':>8} {'p90 ms':>8}")
    for name, values in samples.items():
        p50, p90 = percentile(values, 50), percentile(values, 90)
        print(f"{name:28} {len(values):>5} {p50:>8.2f} {p90:>8.2f}")
    for metric in ("non-stream", "stream ttft", "stream total"):
        chat = percentile(samples[f"chat {metric}"], 50)
        responses = percentile(samples[f"responses {metric}"], 50)
        print(f"added by /v1/responses, {metric} p50: {responses - chat:+.2f} ms")


def best_us(fn: object, rounds: int = 5, loops: int = 2000) -> float:
    """Best of `rounds` mean µs per call of `fn()` (a plain callable)."""
    assert callable(fn)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - started) / loops * 1e6)
    return best


def translation_cpu() -> None:
    payloads = bodies("m")
    chat_body, responses_body = payloads["chat", False], payloads["responses", False]
    request = orjson.loads(chat_body)
    answer = build_answer(chat_body, request, 16)
    completion = answer.completion("m", with_usage=True)
    frames = StreamFrames("m", answer, include_usage=True, cut_after=None)
    chunks = [e["body"] for e in [*frames.token_events(), *frames.closing_events()]]
    chunks.append(b"data: [DONE]\n\n")
    parsed = parse_responses(payloads["responses", True])

    async def events() -> None:
        async def relay():  # type: ignore[no-untyped-def]
            for chunk in chunks:
                yield chunk

        async for _ in ResponsesEvents(parsed).translate(relay()):
            pass

    loop = asyncio.new_event_loop()
    try:
        stream_us = best_us(lambda: loop.run_until_complete(events()), loops=500)
    finally:
        loop.close()
    rows = {
        "parse_chat (the chat request)": best_us(lambda: parse_chat(chat_body)),
        "parse_responses (the same question)": best_us(lambda: parse_responses(responses_body)),
        "to_response (a 16-token answer)": best_us(lambda: to_response(completion, parsed)),
        "ResponsesEvents (a 16-token stream)": stream_us,
    }
    print("in process, CPU per request (best of 5):")
    for name, micros in rows.items():
        print(f"  {name:38} {micros:7.1f} µs")


async def run(count: int, warmup: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tollway-bench-responses-") as tmp:
        workdir = Path(tmp)
        stack = procs.Stack(workdir)
        try:
            _, mock = await services.start_mock(stack, "mock")
            database_url = f"sqlite:///{workdir / 'tollway.db'}"
            key = services.provision(database_url)
            _, gateway = await services.start_gateway(
                stack, "gateway", database_url=database_url, mock=mock, api_key=key
            )
            report(await measure(gateway, count, warmup))
        finally:
            stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="requests per variant")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    procs.pin_self(procs.LOAD_CPU)
    asyncio.run(run(args.n, args.warmup))
    translation_cpu()


if __name__ == "__main__":
    main()
