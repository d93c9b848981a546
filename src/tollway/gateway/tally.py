"""What one inference request did, filled in by the gateway as it goes and turned into its
`RequestRecord` once, at the end, by the HTTP edge (which alone knows the status it sent)."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.billing.records import UsageRecord
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


@dataclass(slots=True)
class Tally:
    request_id: str
    endpoint: str  # chat.completions | embeddings | messages | responses
    model: str = ""  # as requested ("" when the body could not be read)
    stream: bool = False
    trace: Trace | None = None
    served_model: str | None = None
    provider: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    charged_credits: int = 0
    usage_source: str | None = None
    first_byte_at: float | None = None  # time.perf_counter() of a stream's first chunk
    stream_outcome: str | None = None
    translation: Translation | None = None  # a dialect's request: what it translated

    def settled(self, usage: UsageRecord, charged: int) -> None:
        """What was served and charged (called where the reservation is settled; a later call
        with the meter's own figure replaces an earlier estimate)."""
        self.served_model = usage.model
        self.provider = usage.provider
        self.prompt_tokens = usage.prompt_tokens
        self.completion_tokens = usage.completion_tokens
        self.cached_prompt_tokens = usage.cached_prompt_tokens
        self.cache_write_tokens = usage.cache_write_tokens
        self.reasoning_tokens = usage.reasoning_tokens
        self.charged_credits = charged
        self.usage_source = usage.usage_source
        if self.stream:
            self.stream_outcome = _STREAM_OUTCOMES.get(usage.status, "upstream_error")

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
        trace = self.trace
        attempts = tuple(
            Attempt(ep.provider.slug, ep.model.id, "failed" if err else "success", err)
            for ep, err in (trace.attempts if trace is not None else ())
        )
        if error is None and self.stream_outcome == "upstream_error" and attempts:
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
            served_model=self.served_model,
            provider=self.provider,
            status=outcome_of(http_status, self.stream_outcome, attempts),
            http_status=http_status,
            stream=self.stream,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_credits=self.charged_credits,
            latency_ms=int((ended - started) * 1000),
            ttft_ms=(
                None if self.first_byte_at is None else int((self.first_byte_at - started) * 1000)
            ),
            usage_source=self.usage_source,
            error=None if error is None else error[:_MAX_ERROR],
            attempts=attempts,
            routing=summarize(trace) if routing and trace is not None else None,
            cached_prompt_tokens=self.cached_prompt_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
            translation=self.translation or None,
        )
