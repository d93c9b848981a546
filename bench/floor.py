"""The floor: the least a CPython proxy can do per request, written for the measurement.

Plain ASGI, orjson, one pooled upstream client, a dict lookup for the key; the request body is
parsed, its model rewritten and re-serialised, and so is the answer (each SSE chunk of a
stream) on the way back. Nothing else: no routing, no database, no metering, no logs. A gateway
row divided by this one says how much of the cost is the gateway's own work and how much is
what any Python proxy pays.

    python bench/floor.py --port P --upstream http://127.0.0.1:M/v1 --key sk-... \
        --model tollway-demo-chat=demo-chat [--workers 2] [--server S] [--client C]

`--server`: `uvicorn` (uvloop + httptools) or `granian` (Rust HTTP, ASGI interface, uvloop);
`--client`: `aiohttp`, `pyreqwest` (Rust reqwest) or `httpx`. `run.py --only floors` measures
every pair; the defaults are what won there (bench/README.md, "The floor's server and client").

With `--workers N` the server starts N worker processes on one listening socket (as
`tollway serve --workers N` does); each builds its own `Floor` from the environment
(`app_from_env`), so one process or several run the same code.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SERVERS = ("uvicorn", "granian")
CLIENTS = ("aiohttp", "pyreqwest", "httpx")
# What won `run.py --only floors` on 2026-12-03 (bench/README.md): pyreqwest ~38% less CPU per
# request than aiohttp, granian the shorter tails under load.
DEFAULT_SERVER, DEFAULT_CLIENT = "granian", "pyreqwest"
JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
UNAUTHORIZED = orjson.dumps({"error": {"message": "invalid api key", "type": "auth"}})
NOT_FOUND = orjson.dumps({"error": {"message": "not found", "type": "not_found"}})
ENV_UPSTREAM, ENV_KEY, ENV_MODELS = "FLOOR_UPSTREAM", "FLOOR_KEY", "FLOOR_MODELS"
ENV_CLIENT = "FLOOR_CLIENT"
BAD_MODEL = orjson.dumps({"error": {"message": "unknown model", "type": "invalid_request"}})
POST_HEADERS = {"content-type": "application/json"}


class Upstream(Protocol):
    """One pooled HTTP client: a whole answer, or a stream as (status, lines)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def post(self, url: str, data: bytes) -> tuple[int, bytes]: ...
    def stream(
        self, url: str, data: bytes
    ) -> AbstractAsyncContextManager[tuple[int, AsyncIterator[bytes]]]: ...


class AiohttpUpstream:
    def __init__(self) -> None:
        self.session: Any = None

    async def start(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=4096, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        await self.session.close()

    async def post(self, url: str, data: bytes) -> tuple[int, bytes]:
        async with self.session.post(url, data=data, headers=POST_HEADERS) as response:
            return response.status, await response.read()

    @asynccontextmanager
    async def stream(
        self, url: str, data: bytes
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        async with self.session.post(url, data=data, headers=POST_HEADERS) as response:
            yield response.status, response.content.__aiter__()


class HttpxUpstream:
    def __init__(self) -> None:
        self.client: Any = None

    async def start(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
        self.client = httpx.AsyncClient(limits=limits, timeout=60)

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, url: str, data: bytes) -> tuple[int, bytes]:
        response = await self.client.post(url, content=data, headers=POST_HEADERS)
        return response.status_code, response.content

    @asynccontextmanager
    async def stream(
        self, url: str, data: bytes
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        async with self.client.stream("POST", url, content=data, headers=POST_HEADERS) as response:
            yield response.status_code, _lines(response.aiter_bytes())


class PyreqwestUpstream:
    def __init__(self) -> None:
        self.client: Any = None

    async def start(self) -> None:
        from pyreqwest.client import ClientBuilder

        self.client = ClientBuilder().max_connections(4096).build()

    async def close(self) -> None:
        await self.client.close()

    async def post(self, url: str, data: bytes) -> tuple[int, bytes]:
        request = self.client.post(url).header("content-type", "application/json")
        response = await request.body_bytes(data).build().send()
        return response.status, bytes(await response.bytes())

    @asynccontextmanager
    async def stream(
        self, url: str, data: bytes
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        request = self.client.post(url).header("content-type", "application/json")
        async with request.body_bytes(data).build_streamed() as response:
            yield response.status, _lines(_chunks(response.body_reader))


async def _chunks(reader: Any) -> AsyncIterator[bytes]:
    while (chunk := await reader.read_chunk()) is not None:
        yield bytes(chunk)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Bytes chunks → lines (with their b"\\n"), as aiohttp's `response.content` gives them."""
    rest = b""
    async for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


UPSTREAMS: dict[str, Callable[[], Upstream]] = {
    "aiohttp": AiohttpUpstream,
    "httpx": HttpxUpstream,
    "pyreqwest": PyreqwestUpstream,
}


class Floor:
    """The whole proxy: one instance per process, its state on the instance."""

    def __init__(
        self,
        *,
        upstream: str,
        keys: dict[str, str],
        models: dict[str, str],
        client: str = DEFAULT_CLIENT,
    ) -> None:
        self.chat_url = upstream.rstrip("/") + "/chat/completions"
        self.keys = {f"Bearer {key}".encode(): user for key, user in keys.items()}
        self.models = models
        self.client: Upstream = UPSTREAMS[client]()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.client.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.close()
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
        if body.get("stream"):
            async with self.client.stream(self.chat_url, orjson.dumps(body)) as (status, lines):
                await self._relay(status, lines, model, send)
            return
        status, raw = await self.client.post(self.chat_url, orjson.dumps(body))
        payload = orjson.loads(raw)
        if isinstance(payload, dict):
            payload["model"] = model
        await _answer(send, status, orjson.dumps(payload))

    async def _relay(
        self, status: int, lines: AsyncIterator[bytes], model: str, send: Send
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": SSE})
        async for line in lines:
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
        upstream=os.environ[ENV_UPSTREAM],
        keys={os.environ[ENV_KEY]: "bench"},
        models=models,
        client=os.environ.get(ENV_CLIENT, DEFAULT_CLIENT),
    )


def serve(server: str, *, host: str, port: int, workers: int) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if server == "granian":
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.log import LogLevels

        Granian(
            "floor:app_from_env",
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
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
        "floor:app_from_env",
        factory=True,
        app_dir=here,
        workers=workers,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://h:p/v1")
    parser.add_argument("--key", required=True, help="the one API key it accepts")
    parser.add_argument("--model", action="append", default=[], help="client=upstream")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    parser.add_argument("--client", choices=CLIENTS, default=DEFAULT_CLIENT)
    args = parser.parse_args()
    # Workers are separate processes: they read their configuration from the environment.
    os.environ[ENV_UPSTREAM] = args.upstream
    os.environ[ENV_KEY] = args.key
    os.environ[ENV_MODELS] = ",".join(args.model)
    os.environ[ENV_CLIENT] = args.client
    serve(args.server, host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()
