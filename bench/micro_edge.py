"""Micro-benchmark of the HTTP edge, in process, without I/O: CPU µs per request from the
ASGI call to the last byte sent, for a handler that answers at once.

    .venv/bin/python bench/micro_edge.py [-n 20000] [--src OTHER_CHECKOUT/src]

Both variants run the whole app of `create_app` (FastAPI's outer layers, the edge middleware:
request id, body limit, log line) with a 60-byte JSON body:

- `fastapi route`: a POST route declared like the inference routes were served before
  (a `Request` parameter, `Depends(BEARER)`, reading the body, returning a `Response`);
- `edge fast path`: the same answer from a plain-ASGI handler the edge dispatches to, as it
  does for `/v1/chat/completions`, `/v1/embeddings` and `/v1/messages`.

The difference is what FastAPI's routing, dependency injection and request objects cost per
inference request. Best of 5 rounds. `--src` runs it on another checkout's `src` (one from
before the edge: the route variant only, behind the middlewares it had).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

_SRC = Path(__file__).resolve().parents[1] / "src"
if "--src" in sys.argv:
    _SRC = Path(sys.argv[sys.argv.index("--src") + 1]).resolve()
sys.path.insert(0, str(_SRC))

from asgi_calls import cpu_us_per_call  # noqa: E402
from fastapi import Depends, Request  # noqa: E402
from starlette.responses import Response  # noqa: E402

from tollway.app import create_app  # noqa: E402
from tollway.http.openapi import BEARER  # noqa: E402
from tollway.ids import RequestIds  # noqa: E402
from tollway.providers.registry import load_registry  # noqa: E402
from tollway.settings import Settings  # noqa: E402

try:
    from tollway.http.edge import Edge
    from tollway.http.fastpath import FAST_ROUTES, FastRoute
except ImportError:  # a checkout from before the edge
    Edge = None  # type: ignore[assignment,misc]

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'
ANSWER = b'{"ok":true}'


async def answer_asgi(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    headers = [
        (b"content-length", str(len(ANSWER)).encode()),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def build() -> Any:
    app = create_app(
        Settings(database_url="sqlite+aiosqlite:///:memory:"), registry=load_registry(None)
    )

    @app.post("/bench/route", dependencies=[Depends(BEARER)])
    async def route(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    for middleware in app.user_middleware:
        if Edge is not None and middleware.cls is Edge:
            middleware.kwargs["fast"] = {
                **FAST_ROUTES,
                "/bench/fast": FastRoute("/bench/fast", answer_asgi),
            }
    # What the edge reads of AppState (no tally: nothing reaches the request log writer).
    app.state.tollway = SimpleNamespace(request_ids=RequestIds("bench"), clock=time.time)
    return app


async def run(app: Any, path: str, n: int) -> float:
    return await cpu_us_per_call(app, path, BODY, "Bearer tw-bench", n)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--src", type=Path, help="another checkout's src directory")
    args = parser.parse_args()
    app = build()
    results: dict[str, list[float]] = {"fastapi route": []}
    if Edge is not None:
        results["edge fast path"] = []
    for _ in range(5):
        results["fastapi route"].append(await run(app, "/bench/route", args.n))
        if Edge is not None:
            results["edge fast path"].append(await run(app, "/bench/fast", args.n))
    print(f"src: {_SRC}")
    for name, values in results.items():
        print(f"{name:<16} {min(values):7.1f} µs per request (best of 5, n={args.n})")


if __name__ == "__main__":
    asyncio.run(main())
