"""The pooled HTTP client to upstream providers: pyreqwest (Rust's reqwest and hyper; the
HTTP work runs off the event loop and the GIL), one client and pool per provider. Chosen by
measurement over aiohttp (bench/README.md, "The upstream client"). Every failure leaves it
as one of `upstream_errors.py`'s tree, translated at the seam; the full reason is logged
(logger ``tollway.upstream``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from tollway.frozen import frozen
from tollway.providers.redact import Redactor
from tollway.providers.registry import Provider
from tollway.providers.upstream_errors import (
    UpstreamError,
    hung_up,
    malformed_answer,
    status_error,
    too_large,
    too_long,
    translated,
)

log = logging.getLogger("tollway.upstream")

# The longest SSE line accepted: some upstreams send a whole long reply as one event.
# (aiohttp's own line reader stops at 512 KiB.) Only the line being read is held.
MAX_EVENT_BYTES = 16 * 1024 * 1024

# Defaults of the caps on what an upstream may send (settings `upstream_max_body_bytes`,
# `upstream_max_stream_s`): a whole answer's size, and a stream's total duration — an
# upstream that drips a byte inside the idle timeout would otherwise hold a connection and a
# reservation forever.
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_STREAM_S = 1800.0


async def read_capped(response: Response, provider: Provider, cap: int) -> bytes:
    """The whole body, refused (502) as soon as it is known to exceed `cap` bytes — by its
    Content-Length, or while reading — so no more than `cap` bytes are ever held."""
    length = response.get_header("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise too_large(provider, cap)
    reader = response.body_reader
    first = await reader.read_chunk()
    if first is None:
        return b""
    if len(first) > cap:
        raise too_large(provider, cap)
    second = await reader.read_chunk()
    if second is None:  # the common case: the whole answer in one chunk
        return bytes(first)
    body = bytearray(first)
    chunk: Any = second
    while chunk is not None:
        body += chunk
        if len(body) > cap:
            raise too_large(provider, cap)
        chunk = await reader.read_chunk()
    return bytes(body)


@dataclass(slots=True)
class _Open:
    """A request sent and its answer's head read; `close()` ends it (the connection goes back
    to the pool once the body was read whole, and is closed otherwise)."""

    request: StreamRequest
    response: Response
    closing: set[asyncio.Task[None]]

    def close(self) -> None:
        """Ends the request without waiting (callable where awaiting is not possible, as in
        a cancelled task): the close runs in a task the client keeps until it is done."""
        task = asyncio.get_running_loop().create_task(self.aclose())
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def aclose(self) -> None:
        try:
            await self.request.__aexit__(None, None, None)
        except Exception:  # noqa: S110 (closing a request that failed already: nothing to do)
            pass


@dataclass(slots=True)
class UpstreamStream:
    """An open streaming response: iterate SSE ``data:`` payloads; always ``close()``.
    Read errors are translated like every other upstream failure; a stream still running
    `max_s` after it was opened is cut (`UpstreamTimeout` naming the cap)."""

    opened: _Open
    provider: Provider
    redactor: Redactor
    max_s: float = MAX_STREAM_S
    opened_at: float = 0.0  # the event loop's clock
    _closed: bool = field(default=False, init=False)

    async def _chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = (self.opened_at or loop.time()) + self.max_s
        reader = self.opened.response.body_reader
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise too_long(self.provider, self.max_s)
            try:
                async with asyncio.timeout(remaining):
                    chunk = await reader.read_chunk()
            except TimeoutError as exc:
                if loop.time() >= deadline and not isinstance(exc, rq.RequestTimeoutError):
                    raise too_long(self.provider, self.max_s) from None
                raise  # the idle timeout: translated as "timed out"
            if chunk is None:
                return
            yield bytes(chunk)

    async def events(self) -> AsyncIterator[bytes]:
        """Each event's payload, the gateway's secrets masked (`providers/redact.py`)."""
        secrets_out = self.redactor.secrets_out
        pending = bytearray()
        with translated(self.provider, self.redactor):
            async for chunk in self._chunks():
                start, search = 0, len(pending)  # only new bytes can hold a new line end
                pending += chunk
                while (end := pending.find(b"\n", search)) != -1:
                    data = _data(pending[start:end])
                    start = search = end + 1
                    if data is not None:
                        yield secrets_out(data)
                del pending[:start]
                if len(pending) > MAX_EVENT_BYTES:
                    raise malformed_answer(self.provider, "an event longer than 16 MiB")
            data = _data(pending)
            if data is not None:
                yield secrets_out(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.opened.close()


def _data(line: bytearray) -> bytes | None:
    """The payload of an SSE ``data:`` line, else None (comments, other fields, blanks)."""
    stripped = bytes(line).strip()
    return stripped[5:].lstrip() if stripped.startswith(b"data:") else None


class UpstreamClient:
    """One pooled pyreqwest client per provider (its timeouts are the provider's), made at
    its first request. Everything the upstreams say passes through `redactor` here, before
    any client or log sees it."""

    def __init__(
        self,
        *,
        limit_per_host: int,
        redactor: Redactor,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_stream_s: float = MAX_STREAM_S,
    ) -> None:
        self._redactor = redactor
        self._limit_per_host = limit_per_host
        self._max_body_bytes = max_body_bytes
        self._max_stream_s = max_stream_s
        self._targets: dict[str, _Target] = {}
        self._closing: set[asyncio.Task[None]] = set()  # requests being closed (`_Open`)

    async def close(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for target in self._targets.values():
            await target.client.close()
        self._targets.clear()

    def _target(self, provider: Provider) -> _Target:
        target = self._targets.get(provider.slug)
        if target is None:
            headers = {"content-type": "application/json"}
            if provider.api_key:
                headers["authorization"] = f"Bearer {provider.api_key}"
            client = (
                ClientBuilder()
                .max_connections(self._limit_per_host)
                .connect_timeout(timedelta(seconds=provider.connect_timeout_s))
                # Between two reads: a stream's idle bound (a whole answer has its total too).
                .read_timeout(timedelta(seconds=provider.timeout_s))
                .pool_idle_timeout(timedelta(seconds=30))
                .no_proxy()  # as before: the environment's proxies are not the providers'
                .http1_only()
                .build()
            )
            target = _Target(
                client=client,
                base_url=provider.base_url.rstrip("/"),
                headers=headers,
                total=timedelta(seconds=provider.timeout_s),
            )
            self._targets[provider.slug] = target
        return target

    async def post_json(self, provider: Provider, path: str, body: bytes) -> dict[str, Any]:
        """POST and return the JSON object of a 2xx answer; anything else raises
        UpstreamError."""
        target = self._target(provider)
        with translated(provider, self._redactor):
            opened = await self._post(provider, target, path, body, stream=False)
            try:
                payload = await read_capped(opened.response, provider, self._max_body_bytes)
            finally:
                await opened.aclose()
            if opened.response.status >= 300:
                raise status_error(provider, opened.response.status, payload, self._redactor)
        payload = self._redactor.secrets_out(payload)
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise malformed_answer(provider, "not JSON") from None
        if not isinstance(answer, dict):
            raise malformed_answer(provider, "not a JSON object")
        return answer

    async def open_stream(self, provider: Provider, path: str, body: bytes) -> UpstreamStream:
        """Open a streaming POST; errors before the body starts raise UpstreamError. The
        caller owns the returned stream and must ``close()`` it."""
        target = self._target(provider)
        opened_at = asyncio.get_running_loop().time()
        with translated(provider, self._redactor):
            opened = await self._post(provider, target, path, body, stream=True)
        status = opened.response.status
        if status >= 300:
            try:
                payload = await asyncio.wait_for(
                    read_capped(opened.response, provider, self._max_body_bytes),
                    provider.timeout_s,
                )
            except (TimeoutError, rq.PyreqwestError, UpstreamError):
                payload = b""
            finally:
                await opened.aclose()
            raise status_error(provider, status, payload, self._redactor)
        return UpstreamStream(
            opened, provider, self._redactor, max_s=self._max_stream_s, opened_at=opened_at
        )

    async def _post(
        self, provider: Provider, target: _Target, path: str, body: bytes, *, stream: bool
    ) -> _Open:
        """POST, up to the answer's head. A provider closes an idle kept-alive connection
        after a while (uvicorn, and so vLLM, after 5 s); the pool may hand that connection
        out just as the provider closes it, and the request sent on it meets a hang-up
        before any byte of an answer. Such a request is sent once more, on another
        connection; once only, so a provider that hangs up on every request sees it twice at
        the most."""
        try:
            return await self._send(target, path, body, stream=stream)
        except rq.PyreqwestError as exc:
            # Refused, DNS, TLS, timeouts: not a closed connection.
            if isinstance(exc, TimeoutError) or not hung_up(exc):
                raise
            reason = self._redactor.text(f"{exc.__class__.__name__}: {exc}")
            log.info(
                "upstream %s: hung up before answering (%s); sent again", provider.slug, reason
            )
            return await self._send(target, path, body, stream=stream)

    async def _send(self, target: _Target, path: str, body: bytes, *, stream: bool) -> _Open:
        builder = target.client.post(target.base_url + path).headers(target.headers)
        builder = builder.body_bytes(body)
        if stream:
            # Hand each chunk over as it arrives: by default the head is returned only once
            # 64 KiB of body (or its end) has been read ahead, which would hold back a
            # stream's first events.
            builder = builder.streamed_read_buffer_limit(0)
        else:
            builder = builder.timeout(target.total)  # the body read ahead with the head
        request = builder.build_streamed()
        response = await request.__aenter__()
        return _Open(request, response, self._closing)


@frozen
class _Target:
    """One provider's client and what a request to it needs, built once per provider."""

    client: Client
    base_url: str
    headers: dict[str, str]
    total: timedelta  # a whole answer's bound
