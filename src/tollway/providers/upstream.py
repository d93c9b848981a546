"""The pooled HTTP client to upstream providers. Foreign exceptions are translated here, at
the seam, into one small tree the router understands (retriable or not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import orjson

from tollway.providers.registry import Provider


class UpstreamError(Exception):
    """An attempt at one endpoint failed."""

    retriable = True
    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamUnavailable(UpstreamError):
    """Connection refused or reset: nothing was received."""

    status = 503


# The client's own request was invalid: returned as is, trying elsewhere would not help.
# Every other error status (401/403: our credentials; 404: the upstream model id; 408, 429,
# 5xx) is the provider's problem, so the next candidate is tried.
VALIDATION_STATUSES = frozenset({400, 413, 415, 422})


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status."""

    def __init__(self, status: int, body: bytes, provider: str) -> None:
        self.upstream_status = status
        self.body = body
        if status in (401, 403):
            # Never relay what a provider says about our credentials (it may echo the key).
            detail = "the provider rejected the gateway's credentials"
        else:
            detail = _error_message(body)
        super().__init__(f"{provider}: upstream answered {status}: {detail}")
        self.retriable = status not in VALIDATION_STATUSES
        self.status = status if status >= 500 else 502


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return body[:200].decode("utf-8", "replace")


@dataclass(slots=True)
class UpstreamStream:
    """An open streaming response: iterate SSE ``data:`` payloads; always ``close()``."""

    response: aiohttp.ClientResponse

    async def events(self) -> AsyncIterator[bytes]:
        async for raw in self.response.content:
            line = raw.strip()
            if line.startswith(b"data:"):
                yield line[5:].lstrip()

    def close(self) -> None:
        self.response.close()


class UpstreamClient:
    """One pooled aiohttp session per process, shared by every provider."""

    def __init__(self, *, limit_per_host: int) -> None:
        self._connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=limit_per_host, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            json_serialize=lambda v: orjson.dumps(v).decode(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        self._targets: dict[str, _Target] = {}

    async def close(self) -> None:
        await self._session.close()

    def _target(self, provider: Provider) -> _Target:
        target = self._targets.get(provider.slug)
        if target is None:
            headers = {"content-type": "application/json"}
            if provider.api_key:
                headers["authorization"] = f"Bearer {provider.api_key}"
            target = _Target(
                base_url=provider.base_url.rstrip("/"),
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=provider.timeout_s, sock_connect=provider.connect_timeout_s
                ),
                stream_timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=provider.connect_timeout_s,
                    sock_read=provider.timeout_s,
                ),
            )
            self._targets[provider.slug] = target
        return target

    async def post_json(self, provider: Provider, path: str, body: bytes) -> bytes:
        """POST and return the body of a 2xx answer; anything else raises UpstreamError."""
        target = self._target(provider)
        with _translated(provider):
            async with self._session.post(
                target.base_url + path, data=body, headers=target.headers, timeout=target.timeout
            ) as response:
                payload = await response.read()
                if response.status >= 300:
                    raise UpstreamStatusError(response.status, payload, provider.slug)
                return payload

    async def open_stream(self, provider: Provider, path: str, body: bytes) -> UpstreamStream:
        """Open a streaming POST; errors before the body starts raise UpstreamError. The
        caller owns the returned stream and must ``close()`` it."""
        target = self._target(provider)
        with _translated(provider):
            response = await self._session.post(
                target.base_url + path,
                data=body,
                headers=target.headers,
                timeout=target.stream_timeout,
            )
        if response.status >= 300:
            try:
                payload = await asyncio.wait_for(response.read(), provider.timeout_s)
            except (TimeoutError, aiohttp.ClientError):
                payload = b""
            finally:
                response.close()
            raise UpstreamStatusError(response.status, payload, provider.slug)
        return UpstreamStream(response)


@dataclass(frozen=True, slots=True)
class _Target:
    """What a request to one provider needs, built once per provider."""

    base_url: str
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout
    stream_timeout: aiohttp.ClientTimeout


@contextmanager
def _translated(provider: Provider) -> Iterator[None]:
    """Translate aiohttp's exceptions into the UpstreamError tree, naming the provider."""
    try:
        yield
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{provider.slug}: timed out") from exc
    except aiohttp.ClientConnectionError as exc:
        raise UpstreamUnavailable(f"{provider.slug}: {exc.__class__.__name__}: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"{provider.slug}: {exc.__class__.__name__}: {exc}") from exc


def is_stream_failure(exc: BaseException) -> bool:
    """Errors raised while reading an open stream."""
    return isinstance(exc, (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError))
