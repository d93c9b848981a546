"""The floor: the least a CPython proxy can do per request, written for the measurement.

Plain ASGI under uvicorn (uvloop, httptools), orjson, one pooled aiohttp session, a dict lookup
for the key; the request body is parsed, its model rewritten and re-serialised, and so is the
answer (each SSE chunk of a stream) on the way back. Nothing else: no routing, no database, no
metering, no logs. A gateway row divided by this one says how much of the cost is the gateway's
own work and how much is what any Python proxy pays.

    python bench/floor.py --port P --upstream http://127.0.0.1:M/v1 --key sk-... \
        --model tollway-demo-chat=demo-chat [--workers 2]

With `--workers N` uvicorn starts N worker processes on one listening socket (as
`tollway serve --workers N` does); each builds its own `Floor` from the environment
(`app_from_env`), so one process or several run the same code.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
UNAUTHORIZED = orjson.dumps({"error": {"message": "invalid api key", "type": "auth"}})
NOT_FOUND = orjson.dumps({"error": {"message": "not found", "type": "not_found"}})
ENV_UPSTREAM, ENV_KEY, ENV_MODELS = "FLOOR_UPSTREAM", "FLOOR_KEY", "FLOOR_MODELS"
BAD_MODEL = orjson.dumps({"error": {"message": "unknown model", "type": "invalid_request"}})


class Floor:
    """The whole proxy: one instance per process, its state on the instance."""

    def __init__(self, *, upstream: str, keys: dict[str, str], models: dict[str, str]) -> None:
        self.chat_url = upstream.rstrip("/") + "/chat/completions"
        self.keys = {f"Bearer {key}".encode(): user for key, user in keys.items()}
        self.models = models
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=4096, ttl_dns_cache=None)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/health":
            await _answer(send, 200, b'{"status":"ok"}')
            return
        if path != "/v1/chat/completions" or scope["method"] != "POST":
            await _answer(send, 404, NOT_FOUND)
            return
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if authorization not in self.keys:
            await _answer(send, 401, UNAUTHORIZED)
            return
        body = orjson.loads(await _read_body(receive))
        model = body.get("model")
        upstream_model = self.models.get(model) if isinstance(model, str) else None
        if upstream_model is None:
            await _answer(send, 404, BAD_MODEL)
            return
        body["model"] = upstream_model
        assert self.session is not None
        async with self.session.post(
            self.chat_url, data=orjson.dumps(body), headers={"content-type": "application/json"}
        ) as response:
            if body.get("stream"):
                await self._relay(response, model, send)
                return
            payload = orjson.loads(await response.read())
            if isinstance(payload, dict):
                payload["model"] = model
            await _answer(send, response.status, orjson.dumps(payload))

    async def _relay(self, response: aiohttp.ClientResponse, model: str, send: Send) -> None:
        await send({"type": "http.response.start", "status": response.status, "headers": SSE})
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                out = b"data: [DONE]\n\n"
            else:
                chunk = orjson.loads(data)
                chunk["model"] = model
                out = b"data: " + orjson.dumps(chunk) + b"\n\n"
            await send({"type": "http.response.body", "body": out, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})


def app_from_env() -> Floor:
    """The app of one worker, from what `main` put in the environment."""
    models = dict(pair.split("=", 1) for pair in os.environ[ENV_MODELS].split(",") if pair)
    return Floor(
        upstream=os.environ[ENV_UPSTREAM], keys={os.environ[ENV_KEY]: "bench"}, models=models
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://h:p/v1")
    parser.add_argument("--key", required=True, help="the one API key it accepts")
    parser.add_argument("--model", action="append", default=[], help="client=upstream")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    # Workers are separate processes: they read their configuration from the environment.
    os.environ[ENV_UPSTREAM] = args.upstream
    os.environ[ENV_KEY] = args.key
    os.environ[ENV_MODELS] = ",".join(args.model)
    uvicorn.run(
        "floor:app_from_env",
        factory=True,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        workers=args.workers,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
