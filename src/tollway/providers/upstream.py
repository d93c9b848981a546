"""The pooled HTTP client to upstream providers: pyreqwest (Rust's reqwest and hyper; the
HTTP work runs off the event loop and the GIL), one client and pool per provider. Chosen by
measurement over aiohttp (bench/README.md, "The upstream client"). Foreign exceptions are
translated here, at the seam, into one small tree the router understands (retriable or not,
and the status the client gets). Client-facing messages name the provider's slug and what
happened, never an address or an exception class; the full reason is logged (logger
``tollway.upstream``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from tollway.providers.redact import Redactor
from tollway.providers.registry import Provider

log = logging.getLogger("tollway.upstream")

# What an upstream failure becomes for the client (docs/gateway.md, "Upstream errors"):
# nothing reached the provider → 503; the provider took too long → 504; the provider was
# reached but its answer was broken, an error or unusable → 502.
LOGGED_BODY_BYTES = 500


class UpstreamError(Exception):
    """An attempt at one endpoint failed; ``message`` is safe to show a client."""

    retriable = True
    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamUnavailable(UpstreamError):
    """No connection could be made (refused, DNS, TLS handshake): nothing was sent."""

    status = 503


class UpstreamDisconnected(UpstreamError):
    """The connection was reset or closed before the answer was complete."""

    status = 502


# The client's own request was invalid: returned as is, trying elsewhere would not help.
# Every other error status (401/403: our credentials; 404: the upstream model id; 408, 429,
# 5xx) is the provider's problem, so the next candidate is tried.
VALIDATION_STATUSES = frozenset({400, 413, 415, 422})


def client_status(upstream_status: int) -> int:
    """The status a client gets when an upstream's error status was the last failure:
    overloaded or unavailable → 503, timed out → 504, anything else → 502 (a provider's 500
    is not the gateway's)."""
    if upstream_status in (429, 503):
        return 503
    if upstream_status in (408, 504):
        return 504
    return 502


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status. `body` is already redacted (it may be
    relayed to the client as is)."""

    def __init__(self, status: int, body: bytes, provider: str) -> None:
        self.upstream_status = status
        self.body = body
        self.retriable = status not in VALIDATION_STATUSES
        if status in (401, 403):
            # Never relay what a provider says about our credentials (it may echo the key).
            message = f"{provider}: the provider rejected the gateway's credentials"
        elif not self.retriable:
            # The client's own mistake: the upstream's words are what the client needs
            # (redacted with the body: a provider that echoes the request echoes our key).
            message = f"{provider}: upstream answered {status}: {_error_message(body)}"
        elif status == 429:
            message = f"{provider}: upstream answered 429 (rate limited)"
        else:
            # The detail of a provider's own failure (stack traces, internal hosts) is logged.
            message = f"{provider}: upstream answered {status}"
        super().__init__(message)
        self.status = status if not self.retriable else client_status(status)


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:200]
        if isinstance(err, str):
            return err[:200]
    return body[:200].decode("utf-8", "replace")


def _status_error(
    provider: Provider, status: int, body: bytes, redactor: Redactor
) -> UpstreamStatusError:
    body = redactor.error_body(body)
    error = UpstreamStatusError(status, body, provider.slug)
    if status in (401, 403):
        detail = "(body not logged: it may echo the credentials)"
    else:
        detail = body[:LOGGED_BODY_BYTES].decode("utf-8", "replace")
    level = logging.INFO if not error.retriable else logging.WARNING
    log.log(level, "upstream %s answered %d: %s", provider.slug, status, detail)
    return error


def malformed_answer(provider: Provider, reason: str) -> UpstreamError:
    """A 2xx answer the gateway cannot use (not JSON, no data, …): logged, 502."""
    log.warning("upstream %s: malformed answer: %s", provider.slug, reason)
    return UpstreamError(f"{provider.slug}: malformed answer: {reason}")


# The longest SSE line accepted: some upstreams send a whole long reply as one event.
# (aiohttp's own line reader stops at 512 KiB.) Only the line being read is held.
MAX_EVENT_BYTES = 16 * 1024 * 1024


def ended_early(provider: Provider) -> UpstreamError:
    """A stream that closed cleanly before ``[DONE]``: logged, 502."""
    log.warning("upstream %s: the stream closed before [DONE]", provider.slug)
    return UpstreamDisconnected(f"{provider.slug}: stream ended early")


# Defaults of the caps on what an upstream may send (settings `upstream_max_body_bytes`,
# `upstream_max_stream_s`): a whole answer's size, and a stream's total duration — an
# upstream that drips a byte inside the idle timeout would otherwise hold a connection and a
# reservation forever.
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_STREAM_S = 1800.0


def too_long(provider: Provider, max_s: float) -> UpstreamError:
    log.warning("upstream %s: the stream ran past the %g s cap; cut", provider.slug, max_s)
    return UpstreamTimeout(f"{provider.slug}: stream exceeded the {max_s:g} s duration cap")


class UpstreamTooLarge(UpstreamError):
    """The answer is larger than the cap (possibly what the request asked for)."""


def too_large(provider: Provider, max_bytes: int) -> UpstreamError:
    log.warning("upstream %s: an answer larger than %d bytes; refused", provider.slug, max_bytes)
    return UpstreamTooLarge(f"{provider.slug}: answer larger than the {max_bytes}-byte cap")


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
        with _translated(self.provider, self.redactor):
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
        with _translated(provider, self._redactor):
            opened = await self._post(provider, target, path, body, stream=False)
            try:
                payload = await read_capped(opened.response, provider, self._max_body_bytes)
            finally:
                await opened.aclose()
            if opened.response.status >= 300:
                raise _status_error(provider, opened.response.status, payload, self._redactor)
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
        with _translated(provider, self._redactor):
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
            raise _status_error(provider, status, payload, self._redactor)
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
            if isinstance(exc, TimeoutError) or not _hung_up(exc):
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


# How hyper words a connection that ended early (pyreqwest's exceptions carry hyper's causes;
# it files some of them under ConnectError). Before any byte of an answer:
_BEFORE_ANSWER = ("connection closed before message completed", "connection reset", "broken pipe")
# ... and anywhere, the body included:
_LOST = (
    *_BEFORE_ANSWER,
    "error reading a body from connection",
    "end of file before message length reached",
    "unexpected eof",
)


def _hung_up(exc: BaseException) -> bool:
    """Whether the connection closed before any byte of an answer: the request may be sent
    again (the provider cannot have answered it)."""
    text = str(exc).lower()
    return "body from connection" not in text and any(w in text for w in _BEFORE_ANSWER)


def _lost(exc: BaseException) -> bool:
    """Whether the connection closed before the answer was complete."""
    text = str(exc).lower()
    return any(words in text for words in _LOST)


@dataclass(frozen=True, slots=True)
class _Target:
    """One provider's client and what a request to it needs, built once per provider."""

    client: Client
    base_url: str
    headers: dict[str, str]
    total: timedelta  # a whole answer's bound


@contextmanager
def _translated(provider: Provider, redactor: Redactor) -> Iterator[None]:
    """Translate pyreqwest's exceptions into the UpstreamError tree: the client's message
    says what happened; the log line says how (the exception, with the address)."""
    try:
        yield
    except TimeoutError as exc:  # pyreqwest's timeouts (connect, read, total) included
        raise _logged(UpstreamTimeout, provider, "timed out", exc, redactor) from exc
    except rq.PyreqwestError as exc:
        network = isinstance(exc, rq.NetworkError)
        if _lost(exc) or (network and not isinstance(exc, rq.ConnectError)):
            lost = "connection lost before the answer was complete"
            raise _logged(UpstreamDisconnected, provider, lost, exc, redactor) from exc
        if network:  # a ConnectError that lost nothing: refused, DNS, TLS; nothing was sent
            raise _logged(UpstreamUnavailable, provider, "cannot connect", exc, redactor) from exc
        # e.g. an invalid HTTP answer, or a body that does not decode
        raise _logged(UpstreamError, provider, "malformed answer", exc, redactor) from exc


def _logged(
    kind: type[UpstreamError],
    provider: Provider,
    what: str,
    exc: BaseException,
    redactor: Redactor,
) -> UpstreamError:
    # An invalid answer's text may quote what the upstream sent: redacted like its bodies.
    reason = redactor.text(f"{exc.__class__.__name__}: {exc}")
    log.warning("upstream %s: %s: %s", provider.slug, what, reason)
    return kind(f"{provider.slug}: {what}")
