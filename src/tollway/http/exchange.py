"""Every HTTP exchange gets a request id (`x-request-id` on the response) and leaves one log
line; an inference request that got past authentication also leaves its record in the
request log. The `Exchange` is made and finished by the edge middleware (`http/edge.py`),
once the response has ended (a stream: however it ended).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from tollway.gateway.auth import Principal
from tollway.gateway.tally import Tally
from tollway.observe.logs import FIELDS
from tollway.observe.record import RequestRecord
from tollway.state import AppState

log = logging.getLogger("tollway.request")


@dataclass(slots=True)
class Exchange:
    request_id: str  # the gateway's own, unique: the id of the ledger and the request log
    client_request_id: str | None  # a sane x-request-id the client sent
    method: str
    path: str
    started: float  # time.perf_counter()
    created_at_ms: int
    status: int = 0
    principal: Principal | None = None
    tally: Tally | None = None
    error: str | None = None
    body_refused: bool = False  # its declared body is over the limit: answered 413 unread

    def inference(self, principal: Principal, endpoint: str) -> Tally:
        """An authenticated inference request begins: what it does is tallied from here."""
        self.principal = principal
        self.tally = Tally(self.request_id, endpoint)
        return self.tally


def finish(state: AppState, exchange: Exchange) -> None:
    """The end of an exchange: its record (inference) to the writer, its line to the log."""
    ended = time.perf_counter()
    record: RequestRecord | None = None
    if exchange.tally is not None and exchange.principal is not None:
        record = exchange.tally.record(
            exchange.principal,
            client_request_id=exchange.client_request_id,
            created_at_ms=exchange.created_at_ms,
            started=exchange.started,
            ended=ended,
            http_status=exchange.status or 500,
            error=exchange.error,
            routing=state.request_log_writer.accepting,  # built only to be stored
        )
        state.request_log_writer.submit(record)
    level = logging.WARNING if exchange.status >= 500 or not exchange.status else logging.INFO
    if log.isEnabledFor(level):
        # makeRecord + handle: what log.log does, minus the caller lookup (a stack walk
        # per request, for a file and line number the line does not print).
        fields = line_fields(exchange, record, ended)
        log.handle(
            log.makeRecord(
                log.name, level, __file__, 0, "request", (), None, None, {FIELDS: fields}
            )
        )


def line_fields(exchange: Exchange, record: RequestRecord | None, ended: float) -> dict[str, Any]:
    """The fields of one request line (never a secret, a body, or a query string)."""
    fields: dict[str, Any] = {
        "request_id": exchange.request_id,
        "client_request_id": exchange.client_request_id,
        "method": exchange.method,
        "path": exchange.path,
        "status": exchange.status,
        "latency_ms": int((ended - exchange.started) * 1000),
    }
    principal = exchange.principal
    if principal is not None:
        fields.update(
            # A console SSO session has no key: its line names the user and says so.
            key_id=None if principal.session else principal.key_id,
            key_name=None if principal.session else principal.key_name,
            user_id=principal.user_id,
            project_id=principal.project_id,
        )
        if principal.session:
            fields["auth"] = "session"
    if record is not None:
        failed = [f"{a.provider}/{a.model}: {a.error}" for a in record.attempts if a.error]
        fields.update(
            outcome=record.status,
            model=record.model or None,
            served_model=record.served_model,
            provider=record.provider,
            stream=record.stream,
            attempts=len(record.attempts),
            fallbacks=record.fallbacks,
            failed_attempts="; ".join(failed) or None,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cached_prompt_tokens=record.cached_prompt_tokens,
            cache_write_tokens=record.cache_write_tokens,
            reasoning_tokens=record.reasoning_tokens,
            credits=record.cost_credits,
            usage_source=record.usage_source,
            ttft_ms=record.ttft_ms,
        )
        if record.translation:  # names only (never a value)
            fields["translated"] = ", ".join(record.translation.translated) or None
            fields["dropped"] = ", ".join(record.translation.dropped) or None
    fields["error"] = exchange.error
    return fields
