"""The stage results of one inference request, kept as they arrive, and the `RequestRecord`
the HTTP edge assembles from them once, at the end (it alone knows the status it sent)."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.billing.records import UsageRecord
from tollway.frozen import frozen
from tollway.gateway.auth import Principal
from tollway.gateway.metadata import Trace, summarize
from tollway.observe.record import Attempt, RequestRecord, Translation, outcome_of

_MAX_MODEL = 128
_MAX_ERROR = 500

# How a stream's relay names its end → the record's status.
_STREAM_OUTCOMES = {
    "success": "success",
    "client_disconnected": "client_disconnected",
    "error": "upstream_error",
}


@frozen
class Settled:
    """Stage result: what was served and charged — the usage as billed and the credits (the
    meter's own figure, or until it lands the estimate, which a later result replaces)."""

    usage: UsageRecord
    charged: int


@dataclass(slots=True)
class Tally:
    """The stage results of one inference request, kept as they arrive: the request as the
    edge parsed it, the plan (its `Trace`, which records the attempts), the settlement
    (`Settled`) and a stream's first byte. A stream settles after the edge has been handed
    its relay, so the results land here rather than being returned; the edge assembles the
    request's `RequestRecord` from them once, at the end (`record`)."""

    request_id: str
    endpoint: str  # chat.completions | embeddings | messages | responses
    model: str = ""  # as requested ("" when the body could not be read)
    stream: bool = False
    translation: Translation | None = None  # a dialect's request: what it translated
    trace: Trace | None = None
    settled: Settled | None = None
    first_byte_at: float | None = None  # time.perf_counter() of a stream's first chunk

    def record(
        self,
        principal: Principal,
        *,
        client_request_id: str | None,
        created_at_ms: int,
        started: float,
        ended: float,
        http_status: int,
        error: str | None,
        routing: bool = True,
    ) -> RequestRecord:
        """The request's record; its routing summary only with `routing` (when the request
        log will store the record)."""
        trace, settled = self.trace, self.settled
        usage = settled.usage if settled is not None else None
        attempts = tuple(
            Attempt(ep.provider.slug, ep.model.id, "failed" if err else "success", err)
            for ep, err in (trace.attempts if trace is not None else ())
        )
        stream_outcome = None
        if self.stream and usage is not None:
            stream_outcome = _STREAM_OUTCOMES.get(usage.status, "upstream_error")
        if error is None and stream_outcome == "upstream_error" and attempts:
            error = "stream broken by the upstream"
        return RequestRecord(
            request_id=self.request_id,
            client_request_id=client_request_id,
            created_at_ms=created_at_ms,
            user_id=principal.user_id,
            project_id=principal.project_id,
            key_id=principal.key_id,
            key_name=principal.key_name,
            endpoint=self.endpoint,
            model=self.model[:_MAX_MODEL],
            served_model=None if usage is None else usage.model,
            provider=None if usage is None else usage.provider,
            status=outcome_of(http_status, stream_outcome, attempts),
            http_status=http_status,
            stream=self.stream,
            prompt_tokens=0 if usage is None else usage.prompt_tokens,
            completion_tokens=0 if usage is None else usage.completion_tokens,
            cost_credits=0 if settled is None else settled.charged,
            latency_ms=int((ended - started) * 1000),
            ttft_ms=(
                None if self.first_byte_at is None else int((self.first_byte_at - started) * 1000)
            ),
            usage_source=None if usage is None else usage.usage_source,
            error=None if error is None else error[:_MAX_ERROR],
            attempts=attempts,
            routing=summarize(trace) if routing and trace is not None else None,
            cached_prompt_tokens=0 if usage is None else usage.cached_prompt_tokens,
            cache_write_tokens=0 if usage is None else usage.cache_write_tokens,
            reasoning_tokens=0 if usage is None else usage.reasoning_tokens,
            translation=self.translation or None,
        )
