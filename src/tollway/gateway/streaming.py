"""Relay an upstream SSE stream chunk by chunk, never buffered whole, and settle once when it
ends — completed, broken upstream, or the client gone (the tokens that streamed are charged,
counted by the gateway itself when the upstream sent no usage)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from tollway.billing.records import UsageSource, UsageStatus
from tollway.gateway.metadata import build_metadata
from tollway.gateway.settlement import Call, Settler, usage_or_counted
from tollway.providers.registry import ResolvedEndpoint
from tollway.providers.tokens import count_tokens
from tollway.providers.upstream import UpstreamStream
from tollway.providers.upstream_errors import UpstreamError, ended_early, malformed_answer
from tollway.providers.usage import TokenUsage

DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class StreamRelay:
    def __init__(
        self,
        settler: Settler,
        call: Call,
        endpoint: ResolvedEndpoint,
        stream: UpstreamStream,
        attempt_started: float,
    ) -> None:
        self._settler = settler
        self._call = call
        self._endpoint = endpoint
        self._stream = stream
        self._events = stream.events()
        self._attempt_started = attempt_started
        self._first: bytes | None = None
        self._ttft_ms = 0.0
        # What streamed, per (choice, -1 for the content | tool call index), for counting.
        self._pieces: dict[tuple[int, int], list[str]] = {}
        self._usage: dict[str, Any] | None = None
        self._settled = False
        self._chunk_id = ""
        self._created = 0
        self._counted_open = False

    async def prime(self) -> None:
        """Read the first event, so a stream broken before its first byte can fall back."""
        try:
            self._first = await anext(self._events)
        except StopAsyncIteration:
            self._stream.close()
            raise malformed_answer(self._endpoint.provider, "stream had no data") from None
        except BaseException:  # read errors arrive translated (UpstreamError), or cancellation
            self._stream.close()
            raise
        first_byte_at = self._call.tally.first_byte_at = time.perf_counter()
        self._ttft_ms = (first_byte_at - self._attempt_started) * 1000
        metrics = self._settler.metrics
        metrics.ttft.labels(self._endpoint.model.id, self._endpoint.provider.slug).observe(
            self._ttft_ms / 1000
        )
        metrics.open_streams.inc()
        self._counted_open = True

    async def iterate(self) -> AsyncGenerator[bytes]:
        status: UsageStatus = "client_disconnected"
        try:
            event = self._first
            finished = False
            while event is not None:
                if event == b"[DONE]":
                    finished = True
                    break
                out = self._relay(event)
                if out is not None:
                    yield out
                try:
                    event = await anext(self._events)
                except StopAsyncIteration:
                    event = None
            if not finished:
                status = "error"
                yield sse(_stream_error(ended_early(self._endpoint.provider).message))
                return
            for tail in await self._complete():
                yield tail
            status = "success"
        except UpstreamError as exc:  # a read error, translated at the seam (and logged there)
            status = "error"
            yield sse(_stream_error(exc.message))
        finally:
            self.finalize(status)

    def _relay(self, event: bytes) -> bytes | None:
        try:
            chunk = orjson.loads(event)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        self._chunk_id = chunk.get("id", self._chunk_id)
        self._created = chunk.get("created", self._created)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = chunk.get("choices") or []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                self._collect(choice.get("index", 0), delta)
        if not choices and usage is not None:
            return None  # the usage chunk is sent (or not) by _complete
        chunk["model"] = self._endpoint.model.id
        chunk["provider"] = self._endpoint.provider.slug
        # The gateway sends its own usage chunk at the end (when asked): never a second one.
        chunk.pop("usage", None)
        return sse(chunk)

    def _collect(self, index: object, delta: dict[str, Any]) -> None:
        choice = index if isinstance(index, int) else 0
        if isinstance(delta.get("content"), str):
            self._pieces.setdefault((choice, -1), []).append(delta["content"])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                slot = call.get("index", 0)
                key = (choice, slot if isinstance(slot, int) else 0)
                self._pieces.setdefault(key, []).append(arguments)

    def _counts(self) -> tuple[TokenUsage, UsageSource]:
        return usage_or_counted(self._call.request, self._usage, self._streamed_tokens)

    def _streamed_tokens(self) -> int:
        return sum(count_tokens("".join(pieces)) for pieces in self._pieces.values())

    async def _complete(self) -> list[bytes]:
        """Settle, then the closing chunks: usage (if asked), metadata (if asked), [DONE]."""
        tokens, source = self._counts()
        total_ms = (time.perf_counter() - self._attempt_started) * 1000
        # Settled exactly once: once the settlement task exists it owns the reservation
        # (retried until it lands), so a client leaving now must not make `finalize` settle
        # it as disconnected.
        record, charged = await self._settler.succeeded(
            self._call,
            self._endpoint,
            tokens=tokens,
            source=source,
            total_ms=total_ms,
            ttft_ms=self._ttft_ms,
            owned=self._owned,
        )
        base = {
            "id": self._chunk_id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._endpoint.model.id,
            "provider": self._endpoint.provider.slug,
            "choices": [],
        }
        tail: list[bytes] = []
        if self._call.request.include_usage:
            tail.append(sse({**base, "usage": tokens.chat()}))
        if self._call.policy.include_metadata:
            metadata = build_metadata(
                self._call.trace,
                self._endpoint,
                tokens=tokens,
                charged_credits=charged,
                latency_ms=record.latency_ms,
                usage_source=source,
            )
            tail.append(sse({**base, "metadata": metadata}))
        tail.append(DONE)
        return tail

    def _owned(self) -> None:
        self._settled = True

    def finalize(self, status: UsageStatus = "client_disconnected") -> None:
        """Close the upstream and, unless settled already, settle in a tracked task (this may
        run inside a cancelled task, where awaiting is not possible)."""
        self._stream.close()
        if self._counted_open:
            self._counted_open = False
            self._settler.metrics.open_streams.dec()
        if self._settled:
            return
        self._settled = True
        tokens, source = self._counts()
        record, _ = self._settler.settle_served(
            self._call, self._endpoint, tokens=tokens, status=status, source=source
        )
        self._settler.record_served(record)


def _stream_error(message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "server_error",
            "code": "upstream_error",
            "param": None,
        }
    }
